// The DPO family trained offline (algorithm.preference_source = "offline"): prompt / chosen /
// rejected pairs from data.train_files, each tokenized once through the chat template, served
// rollout.prompts_per_step per update in a seeded order per epoch (docs/ALGORITHMS.md §3.5).
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"
#include "learner/group_source.h"
#include "learner/rl_step.h"
#include "rollout/prompting.h"

namespace chainrl::learner {

// Not thread-safe (it caches tokenized pairs).
class OfflinePreferences {
 public:
  // data.train_files (data.source = "jsonl"), bad lines per data.on_bad_line; the order from
  // run.seed and data.shuffle. InvalidArgument naming the keys when the source is not JSONL files,
  // or there is no pair.
  static Result<OfflinePreferences> Load(const Config& c);
  // The same from pairs in hand. REQUIRES: !pairs.empty().
  OfflinePreferences(std::vector<data::PreferenceExample> pairs, uint64_t seed, bool shuffle);

  size_t size() const { return data_.size(); }
  // Malformed JSONL lines skipped while loading (data.on_bad_line = "skip").
  int64_t lines_skipped() const { return lines_skipped_; }

  // The pairs of update `step`: positions step·per_step .. step·per_step + per_step − 1 of the
  // order (epochs follow one another), rendered through `prompts`, with every rejected response
  // when `all_rejected` (LOGO) and the first otherwise. A pair without a chosen or rejected
  // response is left out, and so is one with fewer rejected responses than the batch's first
  // pair (more are cut to that number): every pair of a batch has the same M.
  Result<std::vector<PreferencePairData>> Batch(int64_t step, uint64_t per_step,
                                                const rollout::PromptRenderer& prompts,
                                                bool all_rejected);

 private:
  Result<PreferencePairData> Pair(size_t index, const rollout::PromptRenderer& prompts,
                                  bool all_rejected);

  std::vector<data::PreferenceExample> data_;
  EpochOrder order_;
  int64_t lines_skipped_ = 0;
  std::unordered_map<size_t, PreferencePairData> cache_;
};

}  // namespace chainrl::learner
