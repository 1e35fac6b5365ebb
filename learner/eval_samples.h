// Sample generations of the held-out evaluations, kept for people to read: at each evaluation the
// learner appends one "eval_samples" event to RUN_DIR/events.jsonl with the first few held-out
// examples (prompt, response, reference answer, verdict); the run report shows them. No LibTorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "data/example.h"

namespace chainrl::learner {

// The event's name in RUN_DIR/events.jsonl.
inline constexpr const char* kEvalSamplesEvent = "eval_samples";
// Examples kept per evaluation: the first ones of the held-out set, so that every evaluation of a
// run shows the same prompts.
inline constexpr size_t kEvalSamplesPerEval = 4;
// Longest prompt, response or reference kept, in bytes; a longer text is cut (CutText).
inline constexpr size_t kMaxEvalSampleTextBytes = 4000;

// One held-out example as the evaluation answered it. As JSON (ToJson):
// {"id", "prompt", "response", "reference", "correct", "reward", "tokens", "finish"}.
struct EvalSample {
  std::string id;
  std::string prompt;     // the example's prompt; chat messages as "role: content" lines
  std::string response;   // the decoded response
  std::string reference;  // the reference answer (its JSON text when not a string); "" if none
  bool correct = false;   // the evaluation's verdict (rollout::EvalRecord::correct)
  double reward = 0;
  int64_t tokens = 0;  // generated tokens
  std::string finish;  // "stop", "length", "repetition", ...

  // `example` answered by `response`: prompt, reference and response cut by CutText.
  static EvalSample Of(const data::Example& example, const std::string& response, bool correct,
                       double reward, int64_t tokens, const std::string& finish);

  nlohmann::json ToJson() const;
  // InvalidArgument naming the key when a present key has the wrong type; absent keys keep their
  // defaults.
  static Result<EvalSample> FromJson(const nlohmann::json& j);
};

// The event's fields: {"label", "step", "samples": [EvalSample...]}.
nlohmann::json EvalSamplesRecord(const std::string& label, int64_t step,
                                 const std::vector<EvalSample>& samples);

// `text` when at most `max_bytes` long; else its first bytes up to a UTF-8 character boundary at
// or below `max_bytes`, followed by "\n[... N more bytes]" where N counts the bytes left out.
std::string CutText(const std::string& text, size_t max_bytes = kMaxEvalSampleTextBytes);

}  // namespace chainrl::learner
