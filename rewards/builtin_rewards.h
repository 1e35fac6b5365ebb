// Built-in rewards (ours, run in-process): math answer correctness, exact match, regex match,
// format (required tags), length, and the verifiers of the built-in synthetic tasks.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards {

// One built-in reward instance. Score never throws; a sample it cannot score (e.g. the example has
// no reference answer) comes back with error = kPluginError and a message. Immutable after
// construction, so Score may be called from several threads.
class BuiltinReward {
 public:
  virtual ~BuiltinReward() = default;
  virtual RewardOutcome Score(const RewardInput& input) const = 0;
};

// The kinds MakeBuiltinReward knows, and their options (TOML keys, defaults):
//   "math": 1 if the final answer (ExtractFinalAnswer) equals the reference answer (AnswersMatch)
//           else 0; no answer found scores 0 with a diagnostic. relative_tolerance = 1e-9.
//   "exact_match": 1 if the text equals the reference string. extract = true (compare the final
//           answer, else the whole trimmed response), case_sensitive = true.
//   "regex": 1 if `pattern` (required; PCRE2 syntax) matches the response. full_match = false.
//   "format": 1 if every tag of `tags` (default ["think"]) appears once as <tag>...</tag>, in the
//           listed order, else 0; component "format/<tag>" per tag. strict = false (when true,
//           nothing but whitespace may precede the first tag).
//   "length": 1 at or under target_tokens (required), falling linearly to 0 at max_tokens
//           (default 2 * target_tokens); 0 when finish_reason is "length" if
//           zero_when_truncated = true (default).
//   "task": the verifier of the built-in synthetic task named by the example's metadata "task"
//           (or `default_task` when absent): "arithmetic", "countdown", "sort", "reverse",
//           "copy" (see VerifyTask).
bool IsBuiltinRewardKind(std::string_view kind);

// Builds the built-in `kind` from its options TOML. InvalidArgument naming the reward, the key and
// what was expected when the options are wrong (unknown keys included) or the kind is unknown.
Result<std::unique_ptr<BuiltinReward>> MakeBuiltinReward(const std::string& reward_name,
                                                         const std::string& kind,
                                                         const std::string& options_toml);

// A synthetic task verifier's verdict.
struct TaskVerdict {
  double score = 0;
  std::string message;  // why it failed, empty on success
  bool error = false;   // the example itself is malformed (missing fields), not the response
};

// Verifies `response` for the synthetic task `task` given the example's answer and metadata JSON.
// The response's final answer is the content of the last <answer>...</answer> if any, else
// ExtractFinalAnswer's text, else the last non-empty line.
//   arithmetic: the answer is a number equal (AnswersMatch) to the reference `answer`.
//   countdown:  metadata {"numbers": [ints], "target": int}; the answer is an expression over
//               + - * / and parentheses using each given number at most once (all of them when
//               metadata "use_all" is true, the default) whose exact rational value is target.
//               An "= target" suffix is allowed.
//   sort:       `answer` is the sorted list; the answer is the same integers in the same order,
//               separated by commas and/or spaces, brackets optional.
//   reverse, copy: the answer string equals `answer` exactly (surrounding whitespace ignored).
TaskVerdict VerifyTask(std::string_view task, std::string_view response,
                       std::string_view answer_json, std::string_view metadata_json);

// Exact value of an arithmetic expression over integers with + - * / (true division) and
// parentheses, as numerator/denominator in lowest terms (denominator > 0), plus the integer
// literals it uses in order. InvalidArgument on a syntax error, division by zero or overflow.
struct ExpressionValue {
  long long numerator = 0, denominator = 1;
  std::vector<long long> literals;
};
Result<ExpressionValue> EvaluateExpression(std::string_view expression);

}  // namespace chainrl::rewards
