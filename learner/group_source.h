// Where the learner's prompt groups come from: the training examples in a seeded order per epoch,
// or drawn by weight from difficulty buckets (docs/ALGORITHMS.md §5.5), and the held-out examples.
// Group g always maps to the same example, so a group handed out again (a revoked lease, a
// resumed run) is the same prompt. No LibTorch.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"
#include "data/jsonl.h"
#include "learner/curriculum.h"

namespace chainrl::learner {

// splitmix64: the mixing function every seeded choice of the learner goes through.
uint64_t SplitMix64(uint64_t x);

// A permutation of [0, n) per epoch: element k is position k % n of epoch k / n's order. The order
// of epoch e is std::shuffle of 0..n-1 with std::mt19937_64(SplitMix64(seed ^ SplitMix64(e +
// epoch_salt))), or the identity without shuffling. Checkpoints rely on this being stable across
// versions: a resumed run must see the same order. Not thread-safe (it caches one epoch's order).
class EpochOrder {
 public:
  // REQUIRES: n > 0.
  EpochOrder(uint64_t n, uint64_t seed, bool shuffle, uint64_t epoch_salt);
  size_t At(uint64_t k);

 private:
  uint64_t n_, seed_, salt_;
  bool shuffle_;
  uint64_t epoch_ = ~0ull;
  std::vector<size_t> order_;
};

// data.* keys that decide the order of groups.
struct GroupOrderOptions {
  uint64_t seed = 0;                            // run.seed
  bool shuffle = true;                          // data.shuffle
  std::vector<std::string> difficulty_buckets;  // data.difficulty_buckets; empty: epoch order
  std::vector<double> bucket_weights;           // data.bucket_weights; empty: all 1
};
GroupOrderOptions GroupOrderOptionsFromConfig(const Config& c);

// The SFT warm-up's order over the training examples: one seeded shuffle for the whole warm-up
// (std::shuffle of 0..n-1 with std::mt19937_64(SplitMix64(seed ^ 0x5f7))); step s's batch of b is
// positions s·b .. s·b + b − 1 of it, wrapping around. Thread-compatible.
class SftOrder {
 public:
  // REQUIRES: examples > 0.
  SftOrder(size_t examples, uint64_t seed);
  // The example indices of step `step`'s batch of `batch_size`.
  std::vector<size_t> Batch(int64_t step, int64_t batch_size) const;

 private:
  std::vector<size_t> order_;
};

// Logs how many malformed lines of `file` were skipped (data.on_bad_line = "skip") and the first
// few of them ("FILE:LINE: reason"); nothing when none was.
void LogSkippedLines(const std::string& file, const data::JsonlStats& stats);

// The response an example teaches in the SFT warm-up: its solution, else its answer when that is a
// string; empty when it has neither.
std::string SftResponse(const data::Example& e);

class GroupSource {
 public:
  GroupSource() = default;  // no examples: for processes that train from other data
  // The data.* sources of the config: a built-in task, or JSONL files (malformed lines per
  // data.on_bad_line, reported in the log). InvalidArgument naming the key or file when there is
  // no training example, or an example's difficulty is not one of data.difficulty_buckets.
  static Result<GroupSource> Load(const Config& c);
  // The same from examples in hand.
  static Result<GroupSource> Create(std::vector<data::Example> train,
                                    std::vector<data::Example> eval, GroupOrderOptions o);

  // The training example of group g, and its index in train(). REQUIRES: !train().empty().
  const data::Example& ForGroup(uint64_t g);
  size_t IndexForGroup(uint64_t g);

  // With difficulty buckets: new weights for the groups not drawn yet (a curriculum stage's
  // data.bucket_weights); same validation as at the start. Without buckets: nothing.
  Status SetBucketWeights(std::vector<double> weights);
  Status SetBucketWeights(const Config& c);

  bool has_buckets() const { return sampler_.has_value(); }
  // The bucket sampler's state and the groups drawn so far (null without buckets), for
  // checkpoints; LoadBucketState restores it into a source built from the same data and options,
  // Corrupt naming what does not match.
  nlohmann::json BucketState() const;
  Status LoadBucketState(const nlohmann::json& j);

  // The first example (training, then held-out) with precomputed prompt embeddings, or null when
  // none has any. InvalidArgument naming the example's source and the file when an embeddings file
  // does not exist (each file is checked once: many examples share one).
  Result<const data::Example*> CheckEmbeddingFiles() const;

  const std::vector<data::Example>& train() const { return train_; }
  const std::vector<data::Example>& eval() const { return eval_; }
  // Malformed JSONL lines skipped while loading (data.on_bad_line = "skip").
  int64_t lines_skipped() const { return lines_skipped_; }

 private:
  static Result<std::vector<double>> BucketWeights(size_t buckets, std::vector<double> w);

  std::vector<data::Example> train_, eval_;
  std::vector<std::string> bucket_names_;
  std::optional<EpochOrder> order_;
  std::optional<DifficultyBucketSampler> sampler_;
  std::vector<int64_t> drawn_;  // example index of group g, with difficulty buckets
  int64_t lines_skipped_ = 0;
};

}  // namespace chainrl::learner
