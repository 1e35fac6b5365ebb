// Reading user datasets from JSONL files: one JSON object per line, field names configurable. A
// malformed line is an error naming file:line, or is skipped and counted; nothing is dropped
// silently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"

namespace chainrl::data {

// Field names; one-to-one with the config keys data.prompt_field, data.messages_field, ...
struct JsonlFields {
  std::string prompt = "prompt";
  std::string messages = "messages";
  std::string answer = "answer";
  std::string id = "id";
  std::string difficulty = "difficulty";
  std::string chosen = "chosen";
  std::string rejected = "rejected";
  std::string embeddings = "embeddings";  // "FILE.safetensors#TENSOR" (Example::embeddings)
};

enum class BadLinePolicy { kError, kSkip };

struct JsonlStats {
  int64_t lines = 0;                        // non-empty lines read
  int64_t examples = 0;                     // examples returned
  int64_t skipped = 0;                      // malformed lines skipped (kSkip)
  std::vector<std::string> first_problems;  // up to 10 "file:line: reason" of skipped lines
};

// Reads RL/SFT examples. A line must be an object with a non-empty string `prompt` or a
// `messages` array of {"role": string, "content": string}; `answer` may be any JSON value
// (null when absent); `id` a string or integer (default "FILE:LINE"); `difficulty` a string; a
// string field `solution` is kept for SFT. Every other field goes into metadata. Errors:
// NotFound/IoError naming the file; InvalidArgument "FILE:LINE: reason" for the first bad line
// under kError.
Result<std::vector<Example>> LoadExamplesJsonl(const std::string& path, const JsonlFields& fields,
                                               BadLinePolicy policy, JsonlStats* stats = nullptr);
// The same from `text`, the contents of a JSONL file: `source` stands for its path in messages
// and in default ids, and relative embeddings paths are resolved against its folder.
Result<std::vector<Example>> ParseExamplesJsonl(std::string_view text, const std::string& source,
                                                const JsonlFields& fields, BadLinePolicy policy,
                                                JsonlStats* stats = nullptr);

// The field names and bad-line policy of a run's JSONL data: data.prompt_field,
// data.messages_field, data.answer_field, data.id_field, data.chosen_field, data.rejected_field
// and data.on_bad_line.
JsonlFields JsonlFieldsFromConfig(const Config& config);
BadLinePolicy BadLinePolicyFromConfig(const Config& config);

// Reads preference examples: prompt or messages as above, `chosen` a non-empty string, `rejected`
// a non-empty string or a non-empty array of non-empty strings.
Result<std::vector<PreferenceExample>> LoadPreferencesJsonl(const std::string& path,
                                                            const JsonlFields& fields,
                                                            BadLinePolicy policy,
                                                            JsonlStats* stats = nullptr);
// The same from `text` (see ParseExamplesJsonl).
Result<std::vector<PreferenceExample>> ParsePreferencesJsonl(std::string_view text,
                                                             const std::string& source,
                                                             const JsonlFields& fields,
                                                             BadLinePolicy policy,
                                                             JsonlStats* stats = nullptr);

}  // namespace chainrl::data
