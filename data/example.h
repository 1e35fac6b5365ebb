// A dataset example as every part of chainrl sees it: prompt (or chat messages), reference answer,
// metadata for verifiers, optional reference solution for SFT, difficulty bucket.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace chainrl::data {

struct Example {
  std::string id;           // unique within its dataset
  std::string prompt;       // the user turn's text; empty when `messages` is used
  nlohmann::json messages;  // chat messages [{"role":..,"content":..}], or null
  nlohmann::json answer;    // the reference answer (any JSON value), null if none
  nlohmann::json metadata;  // an object; built-in tasks put {"task": NAME, ...} here
  std::string solution;     // a reference response (for SFT), empty if none
  std::string difficulty;   // difficulty bucket name, empty if none
  std::string source;       // where it came from: "file.jsonl:12" or "task:arithmetic"
  // Precomputed prompt embeddings, "FILE.safetensors#TENSOR" (a relative FILE is resolved against
  // the JSONL file's directory when loaded), spliced at the run's placeholder token; empty if none.
  std::string embeddings;
};

// An offline preference example (DPO family): one chosen and one or more rejected responses.
struct PreferenceExample {
  std::string id;
  std::string prompt;
  nlohmann::json messages;
  std::string chosen;
  std::vector<std::string> rejected;  // LOGO uses several
  std::string source;
};

}  // namespace chainrl::data
