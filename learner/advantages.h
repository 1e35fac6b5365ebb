// Outcome advantages from per-sample rewards (GRPO, Dr.GRPO, DLER batch whitening) and DAPO's
// dynamic-sampling keep rule (the learner process does the over-generation). No LibTorch.
// docs/ALGORITHMS.md §1.1, §1.3, §1.10, §4.5, §5.3; papers: DeepSeekMath arXiv 2402.03300
// §4.1.2, Dr.GRPO arXiv 2503.20783, DAPO arXiv 2503.14476 §3.2, DLER arXiv 2510.15110.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace chainrl::learner {

// "grpo": (R − mean)/(std + ε) with Bessel std; "dr_grpo": R − mean (no std).
enum class AdvantageEstimator { kGrpo, kDrGrpo };
Result<AdvantageEstimator> ParseAdvantageEstimator(std::string_view name);
const char* AdvantageEstimatorName(AdvantageEstimator e);

// What a group of one sample gets. verl uses mean 0 / std 1, i.e. Â = R ("raw"); chainrl takes
// Â = 0 ("zero"), the default: a lone sample has no baseline (docs/ALGORITHMS.md §1.10).
enum class SingletonGroupPolicy { kZero, kRaw };
Result<SingletonGroupPolicy> ParseSingletonGroupPolicy(std::string_view name);  // "zero" | "raw"

struct GroupAdvantageOptions {
  AdvantageEstimator estimator = AdvantageEstimator::kGrpo;  // adv_estimator
  double epsilon = 1e-6;                                     // ε_A (verl)
  SingletonGroupPolicy singleton_group = SingletonGroupPolicy::kZero;
  GroupAdvantageOptions& set_estimator(AdvantageEstimator v) {
    estimator = v;
    return *this;
  }
  GroupAdvantageOptions& set_epsilon(double v) {
    epsilon = v;
    return *this;
  }
  GroupAdvantageOptions& set_singleton_group(SingletonGroupPolicy v) {
    singleton_group = v;
    return *this;
  }
};

// Per-sample advantages Â_i from rewards R_i; samples with equal group_ids form a group (any
// order). All-equal rewards give exactly 0. REQUIRES: rewards.size() == group_ids.size().
std::vector<double> GroupAdvantages(std::span<const double> rewards,
                                    std::span<const int64_t> group_ids,
                                    const GroupAdvantageOptions& options = {});

// Batch-wise whitening over all valid tokens (verl masked_whiten, used by DLER): every token of
// sample i carries A_i, so μ = Σ|o_i|A_i / Σ|o_i|, σ² = unbiased token variance, and
// Â_i = (A_i − μ)/sqrt(σ² + eps). Samples with |o_i| = 0 get 0. Fewer than 2 tokens: returns A − μ.
std::vector<double> BatchWhitenAdvantages(std::span<const double> advantages,
                                          std::span<const int64_t> lengths, double eps = 1e-8);

// DAPO dynamic sampling: keep a group iff the metric's std > 0 or the group has one sample.
bool KeepGroupForDynamicSampling(std::span<const double> group_metric);

}  // namespace chainrl::learner
