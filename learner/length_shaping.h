// Length rewards and penalties on per-sample rewards: Kimi k1.5, DAPO overlong, DLER, LASER /
// LASER-D / LASER-DE, GRPO-λ, CAMPO repetition (docs/ALGORITHMS.md §4.2–§4.9; papers: Kimi k1.5
// arXiv 2501.12599 §2.3.3, DAPO arXiv 2503.14476 §3.4, DLER arXiv 2510.15110, LASER arXiv
// 2505.15612, GRPO-λ arXiv 2505.18086, MiroMind-M1 arXiv 2507.14683). Pure functions over one group
// (or one batch of groups) of samples, plus LASER-D's adaptive targets with serialisable state.
// DRPO's length-weighted objective is a loss over sequence scores: see preference.h (DrpoLoss).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace chainrl::learner {

// ---- Kimi k1.5 ---------------------------------------------------------------------------------
// Length reward of one prompt's samples: λ_i = 0.5 − (len_i − min)/(max − min), reward λ_i if
// correct and min(0, λ_i) if not, times `weight`. max = min (including a group of one) gives 0.
// [U] the report gives no weight; default 0.4 as LASER's re-implementation uses.
struct KimiLengthOptions {
  double weight = 0.4;  // kimi_length_weight
  KimiLengthOptions& set_weight(double v) {
    weight = v;
    return *this;
  }
};
std::vector<double> KimiLengthReward(std::span<const int64_t> lengths,
                                     std::span<const uint8_t> correct,
                                     const KimiLengthOptions& options = {});

// ---- DAPO soft overlong punishment -------------------------------------------------------------
// Added to the reward: 0 for |y| ≤ L_max − L_cache; ((L_max − L_cache) − |y|)/L_cache·factor up
// to L_max; −factor beyond L_max.
struct OverlongOptions {
  int64_t max_response_length = 20480;  // L_max
  int64_t overlong_buffer_len = 4096;   // L_cache
  double overlong_penalty_factor = 1.0;
  OverlongOptions& set_max_response_length(int64_t v) {
    max_response_length = v;
    return *this;
  }
  OverlongOptions& set_overlong_buffer_len(int64_t v) {
    overlong_buffer_len = v;
    return *this;
  }
  OverlongOptions& set_overlong_penalty_factor(double v) {
    overlong_penalty_factor = v;
    return *this;
  }
};
Status ValidateOverlongOptions(const OverlongOptions& options);
double OverlongPenalty(int64_t length, const OverlongOptions& options);

// ---- DLER
// ---------------------------------------------------------------------------------------- Reward
// 1[correct ∧ not truncated]; advantages are group mean-centred then whitened over all valid tokens
// of the batch (BatchWhitenAdvantages in advantages.h).
inline double DlerReward(bool correct, bool truncated) { return correct && !truncated ? 1.0 : 0.0; }
std::vector<double> DlerAdvantages(std::span<const double> rewards,
                                   std::span<const int64_t> group_ids,
                                   std::span<const int64_t> lengths, double eps = 1e-8);

// ---- LASER / LASER-D / LASER-DE ----------------------------------------------------------------
enum class LaserMode { kStep, kPenalty, kHybrid };  // "step" | "penalty" | "hybrid"
Result<LaserMode> ParseLaserMode(std::string_view name);
struct LaserOptions {
  double alpha = 0.5;  // laser_alpha
  LaserMode mode = LaserMode::kStep;
  bool exploration = false;  // LASER-DE: +α for long wrong-but-formatted, loop-free answers
  LaserOptions& set_alpha(double v) {
    alpha = v;
    return *this;
  }
  LaserOptions& set_mode(LaserMode v) {
    mode = v;
    return *this;
  }
  LaserOptions& set_exploration(bool v) {
    exploration = v;
    return *this;
  }
};
struct LaserSample {
  bool correct = false;
  bool formatted = false;  // a boxed answer and <think> delimiters are present
  bool looping = false;    // the 4-gram loop detector fired (LASER-DE only)
  int64_t length = 0;
};
// Base reward +1 / −0.5 (wrong, formatted) / −1 (unformatted), plus the length term against the
// target L_T (step: +α if correct and L ≤ L_T; penalty: −α if correct and L > L_T; hybrid: ±α).
double LaserReward(const LaserSample& sample, int64_t target_length, const LaserOptions& options);

// LASER-D difficulty buckets by group accuracy.
// [U] LASER's monitor bins (low: acc ≤ 1/3, medium: ≤ 2/3, high: above) differ from its reward
// bins (high: acc ≥ 2/3, medium: 1/3 ≤ acc < 2/3, low: below). chainrl uses ONE convention for
// both the monitor pass and the reward, by default the reward bins ("reward"), so a prompt is
// scored against the target computed from prompts binned the same way; "monitor" selects the
// other one (laser_bucket_bins).
enum class DifficultyBucket { kHigh = 0, kMedium = 1, kLow = 2 };
enum class LaserBucketBins { kReward, kMonitor };
Result<LaserBucketBins> ParseLaserBucketBins(std::string_view name);  // "reward" | "monitor"
DifficultyBucket LaserBucket(double group_accuracy,
                             LaserBucketBins bins = LaserBucketBins::kReward);

struct LaserDOptions {
  int64_t group_size = 8;         // G: sets n_b = ⌊2G/3⌋, ⌊G/3⌋, 1
  int64_t target_length = 4096;   // every bucket's target before the first monitor pass
  int64_t lower_bound = 1024;     // smallest candidate threshold
  int64_t upper_bound = 16384;    // largest candidate threshold
  int64_t threshold_step = 1024;  // candidate spacing
  int64_t update_every = 20;      // monitor pass every this many steps
  LaserBucketBins bucket_bins = LaserBucketBins::kReward;  // laser_bucket_bins
  LaserDOptions& set_bucket_bins(LaserBucketBins v) {
    bucket_bins = v;
    return *this;
  }
  LaserDOptions& set_group_size(int64_t v) {
    group_size = v;
    return *this;
  }
  LaserDOptions& set_target_length(int64_t v) {
    target_length = v;
    return *this;
  }
  LaserDOptions& set_lower_bound(int64_t v) {
    lower_bound = v;
    return *this;
  }
  LaserDOptions& set_upper_bound(int64_t v) {
    upper_bound = v;
    return *this;
  }
  LaserDOptions& set_threshold_step(int64_t v) {
    threshold_step = v;
    return *this;
  }
  LaserDOptions& set_update_every(int64_t v) {
    update_every = v;
    return *this;
  }
};
Status ValidateLaserDOptions(const LaserDOptions& options);

// Adaptive per-bucket target lengths. State: the three targets and the number of updates.
// Thread-compatible. Serialises to JSON for checkpoints; a restored object behaves identically.
class LaserDTargets {
 public:
  struct MonitorGroup {
    double accuracy = 0;           // the prompt's group accuracy on the monitor set
    std::vector<int64_t> lengths;  // every response's length
  };
  explicit LaserDTargets(LaserDOptions options);

  int64_t Target(DifficultyBucket b) const { return targets_[static_cast<int>(b)]; }
  // The target for a prompt of this group accuracy, binned with options.bucket_bins.
  int64_t TargetFor(double group_accuracy) const {
    return Target(LaserBucket(group_accuracy, options_.bucket_bins));
  }
  // Whether a monitor pass is due at this (0-based) training step: step % update_every == 0.
  bool UpdateDue(int64_t step) const;
  // For each bucket b: L_b = smallest L in {lower_bound, +step, ..., ≤ upper_bound} with
  // ⌊cov_b(L)·n_b⌋ ≥ 1, cov_b(L) = fraction of b's monitor responses of length ≤ L. If none
  // qualifies: the longest monitor response. [U] a bucket with no monitor response keeps its
  // target.
  void Update(const std::vector<MonitorGroup>& monitor);

  nlohmann::json ToJson() const;
  // Corrupt naming the missing or ill-typed key on bad input.
  Status LoadJson(const nlohmann::json& j);

 private:
  LaserDOptions options_;
  std::array<int64_t, 3> targets_;
  int64_t num_updates_ = 0;
};

// ---- GRPO-λ ----------------------------------------------------------------------------------
// Within a batch, groups are ranked by correctness ratio; the top fraction get Kimi length
// rewards added to their 0/1 rewards, the rest keep plain 0/1. [U] no code is published:
// the selected count is ⌈λ·num_groups⌉, ties broken by batch order (stable), λ default 0.2.
struct GrpoLambdaOptions {
  double top_fraction = 0.2;  // grpo_lambda
  KimiLengthOptions kimi;     // the length reward applied to selected groups
  GrpoLambdaOptions& set_top_fraction(double v) {
    top_fraction = v;
    return *this;
  }
  GrpoLambdaOptions& set_kimi(KimiLengthOptions v) {
    kimi = v;
    return *this;
  }
};
// Rewards per sample; samples with equal group_ids form a group.
std::vector<double> GrpoLambdaRewards(std::span<const uint8_t> correct,
                                      std::span<const int64_t> lengths,
                                      std::span<const int64_t> group_ids,
                                      const GrpoLambdaOptions& options = {});

// ---- CAMPO repetition penalty ------------------------------------------------------------------
// The longest period p whose last block repeats contiguously at least twice at the end of
// `tokens`; loop_start = n − k·p with k the number of whole contiguous repeats (k ≥ 2). Returns n
// when there is no such p. O(n) (Z-function over the reversed sequence).
int64_t FindLoopStart(std::span<const int32_t> tokens);
struct RepetitionPenaltyOptions {
  double repetition_penalty = 0.1;  // the function default the released CAMPO run used
  RepetitionPenaltyOptions& set_repetition_penalty(double v) {
    repetition_penalty = v;
    return *this;
  }
};
// −penalty if the response filled the maximum length and ratio = (n − loop_start)/n > 0, else 0.
double RepetitionPenalty(std::span<const int32_t> tokens, bool hit_max_length,
                         const RepetitionPenaltyOptions& options = {});

}  // namespace chainrl::learner
