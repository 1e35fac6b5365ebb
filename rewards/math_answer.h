// Final-answer extraction and comparison for math-style responses: \boxed{...}, "the answer is
// ...", or the last number; numeric comparison of integers, decimals, fractions and simple LaTeX.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace chainrl::rewards {

struct ExtractedAnswer {
  bool found = false;
  std::string text;    // the answer as written, e.g. "\frac{1}{2}"
  std::string method;  // "boxed", "answer_is" or "last_number"; empty when not found
};

// Finds the final answer in `response`, trying in order: the content of the last \boxed{...} (or
// \fbox{...}, braces balanced, nesting allowed), the text after the last "answer is" (case-
// insensitive, up to the end of its sentence or line, "$...$" unwrapped), then the last number
// (integer, decimal, "1,000", "a/b", with sign). Never fails; found=false when nothing matches.
ExtractedAnswer ExtractFinalAnswer(std::string_view response);

// A parsed number. `exact_integer` is set when the text was an integer (no fraction or decimal
// point) that fits in int64, so huge integers compare exactly.
struct ParsedNumber {
  double value = 0;
  bool exact_integer = false;
  long long integer = 0;
};

// Parses a numeric answer after NormalizeAnswer: integers, "-3", decimals, "1,000" (well-formed
// thousands groups only), "3/4", "\frac{3}{4}", "\dfrac", "\tfrac", "\frac34", "-\frac{1}{2}",
// "x = 5" (right side), "{42}", "50\%" (= 50). nullopt when the text is not such a number.
std::optional<ParsedNumber> ParseNumber(std::string_view text);

// Canonical text form used for non-numeric comparison: drops "$", whitespace, "\left", "\right",
// "\!", "\,", "\;", "\text{..}"/"\mathrm{..}" wrappers (keeping their content), "^\circ", a
// trailing "." and one pair of enclosing braces; "\dfrac"/"\tfrac" become "\frac".
std::string NormalizeAnswer(std::string_view text);

// True when both parse as numbers and are equal (exactly for integers, else within
// relative_tolerance * max(1, |a|, |b|)), or when neither is a number and their normalized texts
// are equal.
bool AnswersMatch(std::string_view predicted, std::string_view reference,
                  double relative_tolerance = 1e-9);

// The reference answer as text from an example's answer JSON: a string as is (after "####" if it
// contains one, GSM8K style), a number printed exactly, nullopt for null or anything else.
std::optional<std::string> ReferenceAnswerFromJson(std::string_view answer_json);

}  // namespace chainrl::rewards
