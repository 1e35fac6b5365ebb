// The keys of [rollout]: sampling, batching, segments and truncation of generation.
#include "rollout/config_keys.h"

#include "core/config_keys.h"

namespace chainrl {

void AddRolloutKeys(ConfigSchema* schema) {
  AddSection(schema, "rollout",
             "Generation by the actors: sampling, batching, segments and truncation.");
  auto& k = schema->keys;
  k.push_back(Int("rollout.group_size", 8, 1, 1024, "Samples per prompt (G)."));
  k.push_back(Int("rollout.prompts_per_step", 16, 1, 1 << 20, "Prompt groups trained per step."));
  k.push_back(Int("rollout.max_new_tokens", 512, 1, 1 << 24,
                  "Upper bound of a response's length (the curriculum's budget can lower it)."));
  k.push_back(Float("rollout.temperature", 1.0, 0.0, 10.0, "Sampling temperature; 0 is greedy."));
  k.push_back(Int("rollout.top_k", 0, 0, std::nullopt, "Top-k sampling; 0 disables."));
  k.push_back(Float("rollout.top_p", 1.0, 0.0, 1.0, "Nucleus sampling mass; 1 disables.", true));
  k.push_back(
      StrList("rollout.stop_strings", {}, "Strings that end a response (matched across tokens)."));
  k.push_back(IntList("rollout.stop_token_ids", {}, 0, std::nullopt,
                      "Token ids that end a response, in addition to the tokenizer's EOS."));
  k.push_back(Int("rollout.max_batch_size", 64, 1, 1 << 16, "Sequences decoded together."));
  k.push_back(Int("rollout.segment_tokens", 0, 0, 1 << 24,
                  "Segment rollout: new tokens per sample per lease; a sample still going "
                  "comes back unfinished and the learner carries it into a later lease, "
                  "preferably to the same actor, which resumes it from the KV it kept unless "
                  "new weights arrived meanwhile. 0 decodes to the end."));
  k.push_back(Float("rollout.segment_min_occupancy", 0.0, 0.0, 1.0,
                    "Segment rollout: an actor's generation ends once nothing waits and fewer "
                    "sequences are busy than this fraction of the most at once, instead of idling "
                    "the freed slots while the rest finish their segments; those come back "
                    "unfinished with fewer new tokens and are carried into a later lease. 0 runs "
                    "every sample to its segment end."));
  k.push_back(Bool("rollout.repetition_detection", true,
                   "End a sample that loops (flagged for the repetition penalty)."));
  k.push_back(Int("rollout.repetition_min_repeats", 8, 2, 1 << 20,
                  "Repeats of a trailing block that count as a loop."));
  k.push_back(Refusing(
      Bool("rollout.compute_entropy", false,
           "Per-token entropy of the sampling distribution, computed by the actors' engine. Only "
           "false is accepted: the trajectories sent to the learner have no field for it, so "
           "true is refused (not implemented yet). The learner's entropy of the policy is the "
           "chainrl_entropy metric."),
      true,
      "per-token sample entropy is not implemented yet (the trajectories sent to the learner "
      "have no field for it)"));
  k.push_back(Int("rollout.embedding_cache_bytes", 256ll << 20, 1, std::nullopt,
                  "Bound of the prompt-embedding cache (LRU)."));
  k.push_back(Int("rollout.prompt_hold_bytes", 256ll << 20, 0, std::nullopt,
                  "Bound of the prompt KV an actor holds for group members that start after "
                  "the first (more samples than free slots), so that a group's prompt is "
                  "prefilled once; 0 prefills it again for each batch of them."));
}

}  // namespace chainrl
