// Group-normalised advantages, batch whitening and DAPO dynamic sampling
// (docs/ALGORITHMS.md §1.1, §1.3, §1.10, §4.5, §5.3).
#include "learner/advantages.h"

#include <cmath>
#include <map>
#include <string>

#include "core/check.h"

namespace chainrl::learner {

Result<AdvantageEstimator> ParseAdvantageEstimator(std::string_view name) {
  if (name == "grpo") return AdvantageEstimator::kGrpo;
  if (name == "dr_grpo") return AdvantageEstimator::kDrGrpo;
  return InvalidArgument("adv_estimator: unknown value \"" + std::string(name) +
                         "\"; valid values: grpo, dr_grpo");
}

const char* AdvantageEstimatorName(AdvantageEstimator e) {
  return e == AdvantageEstimator::kDrGrpo ? "dr_grpo" : "grpo";
}

Result<SingletonGroupPolicy> ParseSingletonGroupPolicy(std::string_view name) {
  if (name == "zero") return SingletonGroupPolicy::kZero;
  if (name == "raw") return SingletonGroupPolicy::kRaw;
  return InvalidArgument("singleton_group: unknown value \"" + std::string(name) +
                         "\"; valid values: zero, raw");
}

std::vector<double> GroupAdvantages(std::span<const double> rewards,
                                    std::span<const int64_t> group_ids,
                                    const GroupAdvantageOptions& options) {
  CHAINRL_CHECK(rewards.size() == group_ids.size(),
                rewards.size() << " rewards vs " << group_ids.size() << " group ids");
  std::map<int64_t, std::vector<size_t>> groups;
  for (size_t i = 0; i < rewards.size(); ++i) groups[group_ids[i]].push_back(i);
  std::vector<double> adv(rewards.size(), 0.0);
  for (const auto& [id, members] : groups) {
    const double n = static_cast<double>(members.size());
    if (members.size() == 1) {
      adv[members[0]] =
          options.singleton_group == SingletonGroupPolicy::kRaw ? rewards[members[0]] : 0.0;
      continue;
    }
    double mean = 0;
    for (size_t i : members) mean += rewards[i];
    mean /= n;
    double ss = 0;
    for (size_t i : members) ss += (rewards[i] - mean) * (rewards[i] - mean);
    const double std = std::sqrt(ss / (n - 1.0));  // Bessel-corrected
    for (size_t i : members) {
      const double centred = rewards[i] - mean;
      adv[i] = options.estimator == AdvantageEstimator::kGrpo ? centred / (std + options.epsilon)
                                                              : centred;
    }
  }
  return adv;
}

std::vector<double> BatchWhitenAdvantages(std::span<const double> advantages,
                                          std::span<const int64_t> lengths, double eps) {
  CHAINRL_CHECK(advantages.size() == lengths.size(), "advantages vs lengths");
  double tokens = 0, sum = 0;
  for (size_t i = 0; i < advantages.size(); ++i) {
    tokens += static_cast<double>(lengths[i]);
    sum += static_cast<double>(lengths[i]) * advantages[i];
  }
  std::vector<double> out(advantages.size(), 0.0);
  if (tokens <= 0) return out;
  const double mean = sum / tokens;
  double ss = 0;
  for (size_t i = 0; i < advantages.size(); ++i)
    ss += static_cast<double>(lengths[i]) * (advantages[i] - mean) * (advantages[i] - mean);
  const bool whiten = tokens >= 2;
  const double scale = whiten ? 1.0 / std::sqrt(ss / (tokens - 1.0) + eps) : 1.0;
  for (size_t i = 0; i < advantages.size(); ++i)
    out[i] = lengths[i] > 0 ? (advantages[i] - mean) * scale : 0.0;
  return out;
}

bool KeepGroupForDynamicSampling(std::span<const double> metric) {
  if (metric.size() == 1) return true;
  for (double v : metric)
    if (v != metric[0]) return true;  // std > 0 iff not all equal
  return false;
}

}  // namespace chainrl::learner
