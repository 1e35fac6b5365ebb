// Final-answer extraction and numeric comparison (see math_answer.h).
#include "rewards/math_answer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <nlohmann/json.hpp>

namespace chainrl::rewards {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsSpace(s[b])) ++b;
  while (e > b && IsSpace(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// Index of the '}' matching the '{' at `open`, or npos when unbalanced.
size_t MatchBrace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
      ++i;  // escaped brace: literal
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s->find(from, pos)) != std::string::npos) {
    s->replace(pos, from.size(), to);
    pos += to.size();
  }
}

// Removes `\cmd{X}` wrappers keeping X.
void Unwrap(std::string* s, std::string_view cmd) {
  size_t pos;
  while ((pos = s->find(cmd)) != std::string::npos) {
    size_t open = pos + cmd.size();
    if (open >= s->size() || (*s)[open] != '{') {
      s->erase(pos, cmd.size());
      continue;
    }
    size_t close = MatchBrace(*s, open);
    if (close == std::string::npos) {
      s->erase(pos, cmd.size());
      continue;
    }
    std::string inner = s->substr(open + 1, close - open - 1);
    s->replace(pos, close + 1 - pos, inner);
  }
}

std::optional<std::string> LastBoxed(std::string_view s) {
  std::optional<std::string> best;
  size_t best_pos = 0;
  for (std::string_view cmd : {std::string_view("\\boxed"), std::string_view("\\fbox")}) {
    size_t pos = 0;
    while ((pos = s.find(cmd, pos)) != std::string_view::npos) {
      size_t i = pos + cmd.size();
      while (i < s.size() && IsSpace(s[i])) ++i;
      std::optional<std::string> content;
      if (i < s.size() && s[i] == '{') {
        size_t close = MatchBrace(s, i);
        if (close != std::string_view::npos) content = Trim(s.substr(i + 1, close - i - 1));
      } else if (i > pos + cmd.size()) {
        // "\boxed 5": one token after the space.
        size_t e = i;
        while (e < s.size() && !IsSpace(s[e]) && s[e] != '$') ++e;
        if (e > i) content = std::string(s.substr(i, e - i));
      }
      if (content && (!best || pos >= best_pos)) {
        best = content;
        best_pos = pos;
      }
      pos += cmd.size();
    }
  }
  return best;
}

std::optional<std::string> AfterAnswerIs(std::string_view s) {
  std::string lower(s);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t pos = lower.rfind("answer is");
  if (pos == std::string::npos) return std::nullopt;
  size_t i = pos + 9;
  while (i < s.size() && (IsSpace(s[i]) || s[i] == ':')) ++i;
  size_t e = i;
  bool in_math = false;
  while (e < s.size() && s[e] != '\n') {
    if (s[e] == '$') in_math = !in_math;
    // A sentence ends at ". " / "." at the end, unless it is a decimal point or inside $...$.
    if (!in_math && s[e] == '.' && (e + 1 == s.size() || !IsDigit(s[e + 1]))) break;
    ++e;
  }
  std::string text = Trim(s.substr(i, e - i));
  while (!text.empty() && (text.back() == ',' || text.back() == ';' || text.back() == '!'))
    text.pop_back();
  if (text.empty()) return std::nullopt;
  // "$\frac{1}{2}$" -> inner math; "\boxed{..}" inside is handled by LastBoxed first.
  if (text.size() >= 2 && text.front() == '$' && text.back() == '$') {
    text = Trim(std::string_view(text).substr(1, text.size() - 2));
    while (!text.empty() && text.front() == '$') text.erase(0, 1);
    while (!text.empty() && text.back() == '$') text.pop_back();
  }
  return text;
}

std::optional<std::string> LastNumber(std::string_view s) {
  std::optional<std::string> last;
  size_t i = 0;
  while (i < s.size()) {
    if (!IsDigit(s[i]) || (i > 0 && (IsDigit(s[i - 1]) || s[i - 1] == '.'))) {
      ++i;
      continue;
    }
    size_t start = i;
    if (i > 0 && s[i - 1] == '-' && (i < 2 || !std::isalnum(static_cast<unsigned char>(s[i - 2]))))
      start = i - 1;
    size_t j = i;
    while (j < s.size() && IsDigit(s[j])) ++j;
    // thousands groups: ",ddd" not followed by another digit
    if (j - i <= 3) {
      while (j + 3 < s.size() + 0 && s[j] == ',' && IsDigit(s[j + 1]) && IsDigit(s[j + 2]) &&
             IsDigit(s[j + 3]) && (j + 4 >= s.size() || !IsDigit(s[j + 4])))
        j += 4;
    }
    if (j + 1 < s.size() && s[j] == '.' && IsDigit(s[j + 1])) {
      ++j;
      while (j < s.size() && IsDigit(s[j])) ++j;
    } else if (j + 1 < s.size() && s[j] == '/' && IsDigit(s[j + 1])) {
      ++j;
      while (j < s.size() && IsDigit(s[j])) ++j;
    }
    last = std::string(s.substr(start, j - start));
    i = j;
  }
  return last;
}

// Parses an unsigned plain decimal ("12", "1,234", "3.25"); false on anything else.
bool ParsePlain(std::string_view t, ParsedNumber* out) {
  if (t.empty()) return false;
  std::string digits;
  bool dot = false;
  size_t int_len = 0;
  std::vector<size_t> commas;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (IsDigit(c)) {
      digits.push_back(c);
      if (!dot) ++int_len;
    } else if (c == '.' && !dot && i + 1 < t.size()) {
      dot = true;
      digits.push_back('.');
    } else if (c == ',' && !dot) {
      commas.push_back(int_len);
    } else {
      return false;
    }
  }
  if (digits.empty() || digits[0] == '.') return false;
  if (!commas.empty()) {  // well-formed groups: first 1-3 digits, then groups of exactly 3
    if (commas[0] == 0 || commas[0] > 3) return false;
    for (size_t k = 0; k < commas.size(); ++k) {
      size_t next = k + 1 < commas.size() ? commas[k + 1] : int_len;
      if (next - commas[k] != 3) return false;
    }
  }
  out->value = std::strtod(digits.c_str(), nullptr);
  out->exact_integer = !dot && int_len <= 18;
  out->integer = out->exact_integer ? std::strtoll(digits.c_str(), nullptr, 10) : 0;
  return true;
}

std::optional<ParsedNumber> ParseNormalized(std::string t);

// "\frac{A}{B}" or "\fracAB" (single characters) at the start of t, all of t.
std::optional<ParsedNumber> ParseFrac(const std::string& t) {
  if (t.rfind("\\frac", 0) != 0) return std::nullopt;
  size_t i = 5;
  auto arg = [&](std::string* out) -> bool {
    if (i >= t.size()) return false;
    if (t[i] == '{') {
      size_t close = MatchBrace(t, i);
      if (close == std::string::npos) return false;
      *out = t.substr(i + 1, close - i - 1);
      i = close + 1;
    } else {
      *out = t.substr(i, 1);
      ++i;
    }
    return true;
  };
  std::string a, b;
  if (!arg(&a) || !arg(&b) || i != t.size()) return std::nullopt;
  auto na = ParseNormalized(a), nb = ParseNormalized(b);
  if (!na || !nb || nb->value == 0) return std::nullopt;
  ParsedNumber r;
  r.value = na->value / nb->value;
  if (na->exact_integer && nb->exact_integer && nb->integer != 0 &&
      na->integer % nb->integer == 0) {
    r.exact_integer = true;
    r.integer = na->integer / nb->integer;
  }
  return r;
}

std::optional<ParsedNumber> ParseNormalized(std::string t) {
  if (t.empty()) return std::nullopt;
  // x=5 -> 5
  size_t eq = t.rfind('=');
  if (eq != std::string::npos) t = t.substr(eq + 1);
  while (t.size() >= 2 && t.front() == '{' && MatchBrace(t, 0) == t.size() - 1)
    t = t.substr(1, t.size() - 2);
  if (t.size() >= 2 && t.compare(t.size() - 2, 2, "\\%") == 0)
    t.resize(t.size() - 2);
  else if (!t.empty() && t.back() == '%')
    t.pop_back();
  bool neg = false;
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) {
    neg = t[0] == '-';
    t.erase(0, 1);
  }
  if (t.empty() || t[0] == '-' || t[0] == '+') return std::nullopt;
  std::optional<ParsedNumber> r;
  if (t.rfind("\\frac", 0) == 0) {
    r = ParseFrac(t);
  } else if (size_t slash = t.find('/'); slash != std::string::npos) {
    ParsedNumber a, b;
    if (ParsePlain(t.substr(0, slash), &a) && ParsePlain(t.substr(slash + 1), &b) && b.value != 0) {
      r = ParsedNumber{a.value / b.value, false, 0};
      if (a.exact_integer && b.exact_integer && a.integer % b.integer == 0) {
        r->exact_integer = true;
        r->integer = a.integer / b.integer;
      }
    }
  } else {
    ParsedNumber p;
    if (ParsePlain(t, &p)) r = p;
  }
  if (r && neg) {
    r->value = -r->value;
    r->integer = -r->integer;
  }
  return r;
}

}  // namespace

ExtractedAnswer ExtractFinalAnswer(std::string_view response) {
  if (auto b = LastBoxed(response); b && !b->empty()) return {true, *b, "boxed"};
  if (auto a = AfterAnswerIs(response)) return {true, *a, "answer_is"};
  if (auto n = LastNumber(response)) return {true, *n, "last_number"};
  return {};
}

std::string NormalizeAnswer(std::string_view text) {
  std::string s(text);
  ReplaceAll(&s, "\\dfrac", "\\frac");
  ReplaceAll(&s, "\\tfrac", "\\frac");
  for (std::string_view drop : {"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "^{\\circ}",
                                "^\\circ", "\\displaystyle", "$"})
    ReplaceAll(&s, drop, "");
  ReplaceAll(&s, "{,}", ",");
  Unwrap(&s, "\\text");
  Unwrap(&s, "\\mathrm");
  Unwrap(&s, "\\mathbf");
  std::string out;
  for (char c : s)
    if (!IsSpace(c)) out.push_back(c);
  while (!out.empty() && out.back() == '.') out.pop_back();
  if (out.size() >= 2 && out.front() == '{' && MatchBrace(out, 0) == out.size() - 1)
    out = out.substr(1, out.size() - 2);
  return out;
}

std::optional<ParsedNumber> ParseNumber(std::string_view text) {
  return ParseNormalized(NormalizeAnswer(text));
}

bool AnswersMatch(std::string_view predicted, std::string_view reference,
                  double relative_tolerance) {
  auto a = ParseNumber(predicted), b = ParseNumber(reference);
  if (a && b) {
    if (a->exact_integer && b->exact_integer) return a->integer == b->integer;
    double scale = std::max({1.0, std::fabs(a->value), std::fabs(b->value)});
    return std::fabs(a->value - b->value) <= relative_tolerance * scale;
  }
  if (a || b) return false;
  std::string na = NormalizeAnswer(predicted), nb = NormalizeAnswer(reference);
  return !na.empty() && na == nb;
}

std::optional<std::string> ReferenceAnswerFromJson(std::string_view answer_json) {
  nlohmann::json j = nlohmann::json::parse(answer_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_string()) {
    std::string s = j.get<std::string>();
    size_t hashes = s.rfind("####");
    if (hashes != std::string::npos) s = s.substr(hashes + 4);
    return Trim(s);
  }
  if (j.is_number_integer()) return std::to_string(j.get<long long>());
  if (j.is_number_unsigned()) return std::to_string(j.get<unsigned long long>());
  if (j.is_number_float()) return j.dump();
  return std::nullopt;
}

}  // namespace chainrl::rewards
