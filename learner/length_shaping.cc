// Length rewards and penalties (docs/ALGORITHMS.md §4.2–§4.9).
#include "learner/length_shaping.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "core/check.h"
#include "learner/advantages.h"

namespace chainrl::learner {

std::vector<double> KimiLengthReward(std::span<const int64_t> lengths,
                                     std::span<const uint8_t> correct,
                                     const KimiLengthOptions& options) {
  CHAINRL_CHECK(lengths.size() == correct.size(), "lengths vs correct");
  std::vector<double> out(lengths.size(), 0.0);
  if (lengths.empty()) return out;
  const auto [mn, mx] = std::minmax_element(lengths.begin(), lengths.end());
  if (*mx == *mn) return out;
  const double range = static_cast<double>(*mx - *mn);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const double lambda = 0.5 - static_cast<double>(lengths[i] - *mn) / range;
    out[i] = options.weight * (correct[i] ? lambda : std::min(0.0, lambda));
  }
  return out;
}

Status ValidateOverlongOptions(const OverlongOptions& o) {
  if (o.max_response_length <= 0)
    return InvalidArgument("max_response_length = " + std::to_string(o.max_response_length) +
                           ": must be > 0");
  if (o.overlong_buffer_len <= 0 || o.overlong_buffer_len > o.max_response_length)
    return InvalidArgument("overlong_buffer_len = " + std::to_string(o.overlong_buffer_len) +
                           ": must be in (0, max_response_length]");
  return Status::Ok();
}

double OverlongPenalty(int64_t length, const OverlongOptions& o) {
  const int64_t expected = o.max_response_length - o.overlong_buffer_len;
  if (length <= expected) return 0.0;
  if (length > o.max_response_length) return -o.overlong_penalty_factor;
  return static_cast<double>(expected - length) / static_cast<double>(o.overlong_buffer_len) *
         o.overlong_penalty_factor;
}

std::vector<double> DlerAdvantages(std::span<const double> rewards,
                                   std::span<const int64_t> group_ids,
                                   std::span<const int64_t> lengths, double eps) {
  const std::vector<double> centred = GroupAdvantages(
      rewards, group_ids, GroupAdvantageOptions().set_estimator(AdvantageEstimator::kDrGrpo));
  return BatchWhitenAdvantages(centred, lengths, eps);
}

Result<LaserMode> ParseLaserMode(std::string_view name) {
  if (name == "step") return LaserMode::kStep;
  if (name == "penalty") return LaserMode::kPenalty;
  if (name == "hybrid") return LaserMode::kHybrid;
  return InvalidArgument("laser_mode: unknown value \"" + std::string(name) +
                         "\"; valid values: step, penalty, hybrid");
}

double LaserReward(const LaserSample& s, int64_t target, const LaserOptions& o) {
  double r = s.correct ? 1.0 : (s.formatted ? -0.5 : -1.0);
  const bool within = s.length <= target;
  if (s.correct) {
    if (within && (o.mode == LaserMode::kStep || o.mode == LaserMode::kHybrid)) r += o.alpha;
    if (!within && (o.mode == LaserMode::kPenalty || o.mode == LaserMode::kHybrid)) r -= o.alpha;
  } else if (o.exploration && s.formatted && !within && !s.looping) {
    r += o.alpha;  // LASER-DE: reward exploring longer on a wrong but well-formed answer
  }
  return r;
}

Result<LaserBucketBins> ParseLaserBucketBins(std::string_view name) {
  if (name == "reward") return LaserBucketBins::kReward;
  if (name == "monitor") return LaserBucketBins::kMonitor;
  return InvalidArgument("laser_bucket_bins: unknown value \"" + std::string(name) +
                         "\"; valid values: reward, monitor");
}

DifficultyBucket LaserBucket(double acc, LaserBucketBins bins) {
  // Compare in thirds: acc ≥ 2/3 ⇔ 3·acc ≥ 2, with a tolerance for acc = k/G in floating point.
  const double a3 = 3.0 * acc, tol = 1e-12;
  if (bins == LaserBucketBins::kMonitor) {
    if (a3 <= 1.0 + tol) return DifficultyBucket::kLow;
    if (a3 <= 2.0 + tol) return DifficultyBucket::kMedium;
    return DifficultyBucket::kHigh;
  }
  if (a3 >= 2.0 - tol) return DifficultyBucket::kHigh;
  if (a3 >= 1.0 - tol) return DifficultyBucket::kMedium;
  return DifficultyBucket::kLow;
}

Status ValidateLaserDOptions(const LaserDOptions& o) {
  if (o.group_size < 1) return InvalidArgument("group_size must be >= 1");
  if (o.threshold_step < 1) return InvalidArgument("threshold_step must be >= 1");
  if (o.lower_bound < 1 || o.lower_bound > o.upper_bound)
    return InvalidArgument("lower_bound must be in [1, upper_bound]");
  if (o.update_every < 1) return InvalidArgument("update_every must be >= 1");
  if (o.target_length < 1) return InvalidArgument("target_length must be >= 1");
  return Status::Ok();
}

LaserDTargets::LaserDTargets(LaserDOptions options) : options_(options) {
  targets_.fill(options_.target_length);
}

bool LaserDTargets::UpdateDue(int64_t step) const { return step % options_.update_every == 0; }

void LaserDTargets::Update(const std::vector<MonitorGroup>& monitor) {
  const int64_t g = options_.group_size;
  const std::array<int64_t, 3> need = {std::max<int64_t>(1, 2 * g / 3), std::max<int64_t>(1, g / 3),
                                       1};
  std::array<std::vector<int64_t>, 3> by_bucket;
  int64_t longest = 0;
  for (const MonitorGroup& m : monitor) {
    auto& v = by_bucket[static_cast<int>(LaserBucket(m.accuracy, options_.bucket_bins))];
    v.insert(v.end(), m.lengths.begin(), m.lengths.end());
    for (int64_t l : m.lengths) longest = std::max(longest, l);
  }
  for (int b = 0; b < 3; ++b) {
    auto& v = by_bucket[b];
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    const int64_t total = static_cast<int64_t>(v.size());
    int64_t chosen = longest;
    for (int64_t L = options_.lower_bound; L <= options_.upper_bound;
         L += options_.threshold_step) {
      const int64_t covered = std::upper_bound(v.begin(), v.end(), L) - v.begin();
      // ⌊cov·n_b⌋ ≥ 1 ⇔ covered·n_b ≥ total, in exact integer arithmetic.
      if (covered * need[b] >= total) {
        chosen = L;
        break;
      }
    }
    targets_[b] = chosen;
  }
  ++num_updates_;
}

nlohmann::json LaserDTargets::ToJson() const {
  return nlohmann::json{{"targets", {targets_[0], targets_[1], targets_[2]}},
                        {"num_updates", num_updates_}};
}

Status LaserDTargets::LoadJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("targets") || !j["targets"].is_array() ||
      j["targets"].size() != 3)
    return Corrupt("laser_d: \"targets\" must be an array of 3 integers");
  if (!j.contains("num_updates") || !j["num_updates"].is_number_integer())
    return Corrupt("laser_d: \"num_updates\" must be an integer");
  for (int b = 0; b < 3; ++b) {
    if (!j["targets"][b].is_number_integer())
      return Corrupt("laser_d: targets[" + std::to_string(b) + "] is not an integer");
  }
  for (int b = 0; b < 3; ++b) targets_[b] = j["targets"][b].get<int64_t>();
  num_updates_ = j["num_updates"].get<int64_t>();
  return Status::Ok();
}

std::vector<double> GrpoLambdaRewards(std::span<const uint8_t> correct,
                                      std::span<const int64_t> lengths,
                                      std::span<const int64_t> group_ids,
                                      const GrpoLambdaOptions& options) {
  CHAINRL_CHECK(correct.size() == lengths.size() && correct.size() == group_ids.size(),
                "correct, lengths and group_ids must have one entry per sample");
  std::vector<int64_t> order;  // group ids in first-appearance (batch) order
  std::map<int64_t, std::vector<size_t>> members;
  for (size_t i = 0; i < group_ids.size(); ++i) {
    auto [it, inserted] = members.try_emplace(group_ids[i]);
    if (inserted) order.push_back(group_ids[i]);
    it->second.push_back(i);
  }
  std::vector<double> ratio(order.size());
  for (size_t g = 0; g < order.size(); ++g) {
    const auto& m = members[order[g]];
    double c = 0;
    for (size_t i : m) c += correct[i] ? 1.0 : 0.0;
    ratio[g] = c / static_cast<double>(m.size());
  }
  std::vector<size_t> rank(order.size());
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(),
                   [&](size_t a, size_t b) { return ratio[a] > ratio[b]; });
  const size_t selected = static_cast<size_t>(
      std::ceil(options.top_fraction * static_cast<double>(order.size()) - 1e-9));
  std::vector<double> out(correct.size());
  for (size_t i = 0; i < correct.size(); ++i) out[i] = correct[i] ? 1.0 : 0.0;
  for (size_t k = 0; k < std::min(selected, rank.size()); ++k) {
    const auto& m = members[order[rank[k]]];
    std::vector<int64_t> len;
    std::vector<uint8_t> cor;
    for (size_t i : m) {
      len.push_back(lengths[i]);
      cor.push_back(correct[i]);
    }
    const std::vector<double> lr = KimiLengthReward(len, cor, options.kimi);
    for (size_t j = 0; j < m.size(); ++j) out[m[j]] += lr[j];
  }
  return out;
}

int64_t FindLoopStart(std::span<const int32_t> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) return n;
  // r = reversed tokens; the block of length p at the end repeats just before itself iff
  // r[0,p) == r[p,2p) iff z[p] ≥ p. The whole repeats count k = ⌊(z[p] + p)/p⌋.
  std::vector<int32_t> r(tokens.rbegin(), tokens.rend());
  std::vector<int64_t> z(n, 0);
  for (int64_t i = 1, l = 0, rr = 0; i < n; ++i) {
    if (i < rr) z[i] = std::min(rr - i, z[i - l]);
    while (i + z[i] < n && r[z[i]] == r[i + z[i]]) ++z[i];
    if (i + z[i] > rr) {
      l = i;
      rr = i + z[i];
    }
  }
  for (int64_t p = n / 2; p >= 1; --p) {
    if (z[p] >= p) {
      const int64_t k = (z[p] + p) / p;
      return n - k * p;
    }
  }
  return n;
}

double RepetitionPenalty(std::span<const int32_t> tokens, bool hit_max_length,
                         const RepetitionPenaltyOptions& options) {
  if (!hit_max_length || tokens.empty()) return 0.0;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const double ratio = static_cast<double>(n - FindLoopStart(tokens)) / static_cast<double>(n);
  return ratio > 0 ? -options.repetition_penalty : 0.0;
}

}  // namespace chainrl::learner
