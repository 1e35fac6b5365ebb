// Tests for learner/length_shaping.h against values computed by hand from
// docs/ALGORITHMS.md §4.2–§4.9, and CAMPO's loop finder against a brute-force reference.
#include "learner/length_shaping.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

namespace chainrl::learner {
namespace {

TEST(LengthShapingTest, KimiByHand) {
  const std::vector<int64_t> len = {10, 20, 30};
  const std::vector<uint8_t> cor = {1, 0, 1};
  // λ = 0.5, 0, −0.5; wrong samples get min(0, λ).
  auto r = KimiLengthReward(len, cor, KimiLengthOptions().set_weight(1.0));
  EXPECT_EQ(r, std::vector<double>({0.5, 0.0, -0.5}));
  r = KimiLengthReward(len, std::vector<uint8_t>{0, 0, 0});
  EXPECT_NEAR(r[0], 0.0, 0);       // min(0, 0.5)·0.4
  EXPECT_NEAR(r[2], -0.2, 1e-15);  // −0.5·0.4
  // max = min, and a group of one: 0.
  for (double v : KimiLengthReward(std::vector<int64_t>{7, 7}, std::vector<uint8_t>{1, 0}))
    EXPECT_EQ(v, 0.0);
  EXPECT_EQ(KimiLengthReward(std::vector<int64_t>{7}, std::vector<uint8_t>{1})[0], 0.0);
}

TEST(LengthShapingTest, DapoOverlongByHand) {
  const auto o = OverlongOptions().set_max_response_length(20).set_overlong_buffer_len(4);
  EXPECT_TRUE(ValidateOverlongOptions(o).ok());
  EXPECT_EQ(OverlongPenalty(16, o), 0.0);
  EXPECT_EQ(OverlongPenalty(17, o), -0.25);
  EXPECT_EQ(OverlongPenalty(19, o), -0.75);
  EXPECT_EQ(OverlongPenalty(20, o), -1.0);
  EXPECT_EQ(OverlongPenalty(25, o), -1.0);
  EXPECT_EQ(OverlongPenalty(17, OverlongOptions(o).set_overlong_penalty_factor(2)), -0.5);
  EXPECT_FALSE(ValidateOverlongOptions(OverlongOptions(o).set_overlong_buffer_len(30)).ok());
}

TEST(LengthShapingTest, DlerTruncationAndBatchWhitening) {
  EXPECT_EQ(DlerReward(true, false), 1.0);
  EXPECT_EQ(DlerReward(true, true), 0.0);  // truncation is the penalty
  EXPECT_EQ(DlerReward(false, false), 0.0);
  // Group 0 centred: ±0.5; group 1 all correct: 0. Six 1-token samples: μ = 0, σ² = 1/5.
  const std::vector<double> r = {1, 0, 0, 1, 1, 1};
  const std::vector<int64_t> g = {0, 0, 0, 0, 1, 1};
  const std::vector<int64_t> len = {1, 1, 1, 1, 1, 1};
  const auto a = DlerAdvantages(r, g, len);
  const double s = std::sqrt(0.2 + 1e-8);
  EXPECT_NEAR(a[0], 0.5 / s, 1e-14);
  EXPECT_NEAR(a[1], -0.5 / s, 1e-14);
  EXPECT_EQ(a[4], 0.0);
}

TEST(LengthShapingTest, LaserRewardsByHand) {
  const LaserOptions step;
  EXPECT_EQ(LaserReward({.correct = true, .formatted = true, .length = 100}, 100, step), 1.5);
  EXPECT_EQ(LaserReward({.correct = true, .formatted = true, .length = 101}, 100, step), 1.0);
  EXPECT_EQ(LaserReward({.correct = false, .formatted = true, .length = 10}, 100, step), -0.5);
  EXPECT_EQ(LaserReward({.correct = false, .formatted = false, .length = 10}, 100, step), -1.0);
  const auto pen = LaserOptions().set_mode(LaserMode::kPenalty);
  EXPECT_EQ(LaserReward({.correct = true, .length = 101}, 100, pen), 0.5);
  EXPECT_EQ(LaserReward({.correct = true, .length = 99}, 100, pen), 1.0);
  const auto hyb = LaserOptions().set_mode(LaserMode::kHybrid);
  EXPECT_EQ(LaserReward({.correct = true, .length = 99}, 100, hyb), 1.5);
  EXPECT_EQ(LaserReward({.correct = true, .length = 101}, 100, hyb), 0.5);
  const auto de = LaserOptions().set_exploration(true);
  EXPECT_EQ(LaserReward({.correct = false, .formatted = true, .length = 101}, 100, de), 0.0);
  EXPECT_EQ(
      LaserReward({.correct = false, .formatted = true, .looping = true, .length = 101}, 100, de),
      -0.5);
  EXPECT_EQ(LaserReward({.correct = false, .formatted = true, .length = 99}, 100, de), -0.5);
  EXPECT_EQ(LaserReward({.correct = false, .formatted = false, .length = 101}, 100, de), -1.0);
  EXPECT_EQ(*ParseLaserMode("hybrid"), LaserMode::kHybrid);
  EXPECT_FALSE(ParseLaserMode("soft").ok());
}

TEST(LengthShapingTest, LaserBuckets) {
  EXPECT_EQ(LaserBucket(1.0), DifficultyBucket::kHigh);
  EXPECT_EQ(LaserBucket(2.0 / 3.0), DifficultyBucket::kHigh);
  EXPECT_EQ(LaserBucket(6.0 / 9.0), DifficultyBucket::kHigh);
  EXPECT_EQ(LaserBucket(0.5), DifficultyBucket::kMedium);
  EXPECT_EQ(LaserBucket(1.0 / 3.0), DifficultyBucket::kMedium);
  EXPECT_EQ(LaserBucket(0.25), DifficultyBucket::kLow);
  EXPECT_EQ(LaserBucket(0.0), DifficultyBucket::kLow);
  // The monitor convention: ≤ 1/3 low, ≤ 2/3 medium.
  const auto m = LaserBucketBins::kMonitor;
  EXPECT_EQ(LaserBucket(1.0 / 3.0, m), DifficultyBucket::kLow);
  EXPECT_EQ(LaserBucket(2.0 / 3.0, m), DifficultyBucket::kMedium);
  EXPECT_EQ(LaserBucket(0.7, m), DifficultyBucket::kHigh);
  EXPECT_EQ(*ParseLaserBucketBins("monitor"), m);
  EXPECT_FALSE(ParseLaserBucketBins("both").ok());
}

TEST(LengthShapingTest, LaserDAdaptiveTargetsByHand) {
  const auto o = LaserDOptions()
                     .set_group_size(8)
                     .set_target_length(3000)
                     .set_lower_bound(1024)
                     .set_upper_bound(4096)
                     .set_threshold_step(1024)
                     .set_update_every(20);
  ASSERT_TRUE(ValidateLaserDOptions(o).ok());
  LaserDTargets t(o);
  EXPECT_EQ(t.Target(DifficultyBucket::kLow), 3000);  // before the first monitor pass
  EXPECT_TRUE(t.UpdateDue(0));
  EXPECT_FALSE(t.UpdateDue(19));
  EXPECT_TRUE(t.UpdateDue(40));
  // n_b = 5 (high), 2 (medium), 1 (low).
  const std::vector<LaserDTargets::MonitorGroup> monitor = {
      {1.0, {500, 1500, 2500, 3500, 4500}},  // high: cov(1024) = 1/5, ⌊1/5·5⌋ = 1 → 1024
      {0.5, {1000, 2000, 3000, 5000}},       // medium: cov(2048) = 2/4, ⌊½·2⌋ = 1 → 2048
      {0.0, {1000, 5000}},                   // low: needs cov = 1; none ≤ 4096 → longest 5000
  };
  t.Update(monitor);
  EXPECT_EQ(t.Target(DifficultyBucket::kHigh), 1024);
  EXPECT_EQ(t.Target(DifficultyBucket::kMedium), 2048);
  EXPECT_EQ(t.Target(DifficultyBucket::kLow), 5000);
  EXPECT_EQ(t.TargetFor(0.5), 2048);
  // A bucket without monitor responses keeps its target.
  const std::vector<LaserDTargets::MonitorGroup> only_high = {{0.9, {2000, 2000, 2000}}};
  // Round trip through JSON, then the same update on both gives the same targets.
  LaserDTargets restored(LaserDOptions{});
  ASSERT_TRUE(restored.LoadJson(t.ToJson()).ok());
  t.Update(only_high);
  restored.Update(only_high);
  for (auto b : {DifficultyBucket::kHigh, DifficultyBucket::kMedium, DifficultyBucket::kLow})
    EXPECT_EQ(t.Target(b), restored.Target(b));
  EXPECT_EQ(t.Target(DifficultyBucket::kHigh), 2048);
  EXPECT_EQ(t.Target(DifficultyBucket::kMedium), 2048);
  EXPECT_EQ(t.ToJson(), restored.ToJson());
  auto bad = restored.LoadJson(nlohmann::json{{"targets", {1, 2}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("targets"), std::string::npos);
}

TEST(LengthShapingTest, GrpoLambdaPenalisesOnlyTopGroups) {
  // Groups: 0 (ratio 1), 1 (ratio ½), 2 (ratio 0). ⌈0.34·3⌉ = 2 groups are penalised.
  const std::vector<uint8_t> cor = {1, 1, 1, 0, 0, 0};
  const std::vector<int64_t> len = {10, 30, 10, 20, 5, 50};
  const std::vector<int64_t> gid = {0, 0, 1, 1, 2, 2};
  const auto o =
      GrpoLambdaOptions().set_top_fraction(0.34).set_kimi(KimiLengthOptions().set_weight(1));
  EXPECT_EQ(GrpoLambdaRewards(cor, len, gid, o),
            std::vector<double>({1.5, 0.5, 1.5, -0.5, 0.0, 0.0}));
  // λ = 0: plain 0/1.
  EXPECT_EQ(GrpoLambdaRewards(cor, len, gid, GrpoLambdaOptions(o).set_top_fraction(0)),
            std::vector<double>({1, 1, 1, 0, 0, 0}));
}

int64_t BruteLoopStart(const std::vector<int32_t>& t) {
  const int64_t n = t.size();
  for (int64_t p = n / 2; p >= 1; --p) {
    if (!std::equal(t.end() - p, t.end(), t.end() - 2 * p)) continue;
    int64_t k = 2;
    while ((k + 1) * p <= n && std::equal(t.end() - p, t.end(), t.end() - (k + 1) * p)) ++k;
    return n - k * p;
  }
  return n;
}

TEST(LengthShapingTest, CampoLoopFinder) {
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7};
  EXPECT_EQ(FindLoopStart(a), 3);
  const std::vector<int32_t> b = {9, 1, 2, 1, 2, 1, 2};
  EXPECT_EQ(FindLoopStart(b), 1);
  EXPECT_EQ(FindLoopStart(std::vector<int32_t>{1, 2, 3}), 3);
  EXPECT_EQ(FindLoopStart(std::vector<int32_t>{4, 4}), 0);
  EXPECT_EQ(FindLoopStart(std::vector<int32_t>{}), 0);
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> t(rng() % 20);
    for (auto& x : t) x = rng() % 3;
    EXPECT_EQ(FindLoopStart(t), BruteLoopStart(t)) << trial;
  }
  EXPECT_EQ(RepetitionPenalty(a, /*hit_max_length=*/true), -0.1);
  EXPECT_EQ(RepetitionPenalty(a, /*hit_max_length=*/false), 0.0);
  EXPECT_EQ(RepetitionPenalty(std::vector<int32_t>{1, 2, 3}, true), 0.0);
  EXPECT_EQ(RepetitionPenalty(a, true, RepetitionPenaltyOptions().set_repetition_penalty(0.2)),
            -0.2);
}

}  // namespace
}  // namespace chainrl::learner
