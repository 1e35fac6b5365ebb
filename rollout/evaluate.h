// Held-out evaluation: generates responses to a dataset's prompts with the rollout engine and
// scores them with the configured rewards (accuracy, mean reward, response length, truncation).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "data/example.h"
#include "rewards/reward_pool.h"
#include "rollout/prompting.h"

namespace chainrl::model {
class DecoderModel;
}

namespace chainrl::rollout {

class EmbeddingCache;

struct EvalOptions {
  int64_t max_new_tokens = 512;  // response cap per sample
  double temperature = 0.0;      // 0 = greedy
  int64_t max_batch = 64;        // sequences decoded together (continuous batching)
  uint64_t seed = 0;             // sample s of example i uses seed + i * samples_per_prompt + s
  int samples_per_prompt = 1;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;  // in addition to prompts.stop_token_ids()
  int64_t top_k = 0;                    // 0 disables
  double top_p = 1.0;                   // 1 disables
  // For examples that carry prompt embeddings (data::Example::embeddings): where they are looked
  // up, and the token they are spliced at. Such an example without a cache is an error.
  std::shared_ptr<EmbeddingCache> embedding_cache;
  int32_t placeholder_token_id = -1;
};

struct EvalRecord {
  std::string example_id;
  std::string response;            // decoded text, cut before a stop string, special tokens dropped
  int64_t tokens = 0;              // generated tokens (a final stop token included)
  std::vector<int32_t> token_ids;  // the generated ids
  double reward = 0;               // the pool's weighted total
  bool correct = false;            // the first reward scored >= 1 without error
  std::string finish;              // FinishReasonName: "stop", "length", "repetition", ...
};

struct EvalResult {
  int64_t examples = 0;
  int64_t samples = 0;              // examples * samples_per_prompt
  double accuracy = 0;              // correct samples / samples
  double mean_reward = 0;           // mean of record.reward
  double mean_length = 0;           // mean of record.tokens
  double truncated_fraction = 0;    // samples that hit max_new_tokens (finish "length")
  double seconds = 0;               // wall time of generation + scoring
  std::vector<EvalRecord> records;  // example order, samples of one example together
};

// Generates samples_per_prompt responses per example with the RolloutEngine (continuous batching,
// greedy by default; stop at prompts.stop_token_ids() and options.stop_strings) and scores them
// with `rewards`. A sample is correct when the FIRST reward of the pool scored >= 1 (its
// unweighted score, without error); the built-in task/math/exact_match rewards give 1 for a
// correct answer, so put the correctness reward first. The reward sees the rendered prompt text,
// the decoded response, the generated ids, the finish reason, the example's answer and metadata.
// The model is used on its own device and dtype and must not be used elsewhere meanwhile.
// InvalidArgument for an empty example list, bad options or an example that does not render
// (naming its id); the engine's and the pool's errors otherwise.
Result<EvalResult> Evaluate(model::DecoderModel& model, const PromptRenderer& prompts,
                            rewards::RewardPool& rewards,
                            const std::vector<data::Example>& examples, const EvalOptions& options);

}  // namespace chainrl::rollout
