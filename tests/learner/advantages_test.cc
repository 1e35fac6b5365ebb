// Tests for learner/advantages.h: GRPO / Dr.GRPO advantages, batch whitening and DAPO's dynamic
// sampling bookkeeping, against hand-computed values and the edge cases of
// docs/ALGORITHMS.md §1.10.
#include "learner/advantages.h"

#include <gtest/gtest.h>

#include <cmath>

namespace chainrl::learner {
namespace {

TEST(AdvantagesTest, GrpoUsesBesselStdAndEpsilon) {
  // Group 7: rewards 1, 0, 0, 1 (interleaved with group 3): mean ½, Bessel std √(1/3).
  const std::vector<double> r = {1, 5, 0, 0, 1};
  const std::vector<int64_t> g = {7, 3, 7, 7, 7};
  const auto a = GroupAdvantages(r, g);
  const double s = std::sqrt(1.0 / 3.0) + 1e-6;
  EXPECT_NEAR(a[0], 0.5 / s, 1e-15);
  EXPECT_NEAR(a[2], -0.5 / s, 1e-15);
  EXPECT_NEAR(a[4], 0.5 / s, 1e-15);
  EXPECT_EQ(a[1], 0.0);  // group of one → 0 by default
  const auto raw = GroupAdvantages(
      r, g, GroupAdvantageOptions().set_singleton_group(SingletonGroupPolicy::kRaw));
  EXPECT_EQ(raw[1], 5.0);  // verl: mean 0, std 1
  const auto dr =
      GroupAdvantages(r, g, GroupAdvantageOptions().set_estimator(AdvantageEstimator::kDrGrpo));
  EXPECT_EQ(dr[0], 0.5);
  EXPECT_EQ(dr[3], -0.5);
}

TEST(AdvantagesTest, AllEqualRewardsGiveExactlyZero) {
  const std::vector<double> r = {0.3, 0.3, 0.3};
  const std::vector<int64_t> g = {1, 1, 1};
  for (auto e : {AdvantageEstimator::kGrpo, AdvantageEstimator::kDrGrpo})
    for (double v : GroupAdvantages(r, g, GroupAdvantageOptions().set_estimator(e)))
      EXPECT_EQ(v, 0.0);
}

TEST(AdvantagesTest, ParseNames) {
  EXPECT_EQ(*ParseAdvantageEstimator("dr_grpo"), AdvantageEstimator::kDrGrpo);
  auto bad = ParseAdvantageEstimator("rloo");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("grpo, dr_grpo"), std::string::npos);
  EXPECT_EQ(*ParseSingletonGroupPolicy("raw"), SingletonGroupPolicy::kRaw);
  EXPECT_FALSE(ParseSingletonGroupPolicy("drop").ok());
}

TEST(AdvantagesTest, BatchWhiteningOverTokensByHand) {
  // A = [1, −1, 7] with lengths [1, 3, 0]: 4 tokens, μ = −½, unbiased σ² = (2.25 + 0.75)/3 = 1.
  const std::vector<double> a = {1, -1, 7};
  const std::vector<int64_t> len = {1, 3, 0};
  const auto w = BatchWhitenAdvantages(a, len);
  EXPECT_NEAR(w[0], 1.5 / std::sqrt(1 + 1e-8), 1e-15);
  EXPECT_NEAR(w[1], -0.5 / std::sqrt(1 + 1e-8), 1e-15);
  EXPECT_EQ(w[2], 0.0);  // empty response: no tokens, no advantage
  // Token-weighted mean of the result is 0.
  EXPECT_NEAR(w[0] * 1 + w[1] * 3, 0.0, 1e-14);
  // No tokens at all.
  for (double v : BatchWhitenAdvantages(a, std::vector<int64_t>{0, 0, 0})) EXPECT_EQ(v, 0.0);
}

TEST(AdvantagesTest, DynamicSamplingKeepRule) {
  EXPECT_FALSE(KeepGroupForDynamicSampling(std::vector<double>{1, 1, 1}));
  EXPECT_FALSE(KeepGroupForDynamicSampling(std::vector<double>{0, 0}));
  EXPECT_TRUE(KeepGroupForDynamicSampling(std::vector<double>{0, 1, 0}));
  EXPECT_TRUE(KeepGroupForDynamicSampling(std::vector<double>{0}));  // a single sample is kept
}

}  // namespace
}  // namespace chainrl::learner
