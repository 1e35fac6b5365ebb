// Train/inference mismatch at equal weights and per-token staleness, by hand
// (docs/ALGORITHMS.md §2.2).
#include "learner/policy_mismatch.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace chainrl::learner {
namespace {

const MismatchBounds kBounds{/*is_cap=*/1.5, /*mask_low=*/0.9, /*mask_high=*/1.1};

// Row A: 4 tokens all sampled by version 7 (the learner's), x = learner − behaviour =
// {0.1, −0.2, 0, 0.5}. Row B: 3 tokens, the first 2 from version 5 (2 behind), the last from 7,
// x of the last = −0.05.
PolicyMismatch TwoRows() {
  PolicyMismatch m;
  const std::vector<float> la = {-1.0f, -2.2f, -0.5f, -1.5f}, ba = {-1.1f, -2.0f, -0.5f, -2.0f};
  m.AddRow(la, ba, {{7, 4}}, 7, kBounds);
  const std::vector<float> lb = {-3.0f, -3.0f, -1.05f}, bb = {-1.0f, -1.0f, -1.0f};
  m.AddRow(lb, bb, {{5, 2}, {7, 1}}, 7, kBounds);
  return m;
}

TEST(PolicyMismatchTest, FiguresAtEqualWeightsByHand) {
  const PolicyMismatch m = TwoRows();
  // Equal-weight tokens: A's 4 and B's last; B's first two (x = −2) are stale and not measured.
  const std::vector<double> x = {0.1, -0.2, 0.0, 0.5, -0.05};
  double k1 = 0, k3 = 0, abs = 0, mx = 0;
  for (double v : x) {
    k1 += -v;
    k3 += std::exp(v) - 1 - v;
    abs += std::fabs(v);
    mx = std::max(mx, std::fabs(v));
  }
  EXPECT_EQ(m.tokens(), 5);
  EXPECT_NEAR(m.k1(), k1 / 5, 1e-6);
  EXPECT_NEAR(m.k3(), k3 / 5, 1e-6);
  EXPECT_NEAR(m.abs_mean(), abs / 5, 1e-6);
  EXPECT_NEAR(m.abs_max(), 0.5, 1e-6);
  // ρ = exp(x): 1.105, 0.819, 1, 1.649, 0.951. Above C = 1.5: one (1.649). Outside [0.9, 1.1]:
  // 1.105, 0.819, 1.649 = three.
  EXPECT_DOUBLE_EQ(m.token_is_cap(), 1.0 / 5);
  EXPECT_DOUBLE_EQ(m.token_mask(), 3.0 / 5);
  // Only row A is wholly at equal weights: Σx = 0.4, Πρ = 1.49 (not above 1.5, outside
  // [0.9, 1.1]); mean x = 0.1, exp = 1.105 (outside).
  EXPECT_EQ(m.sequences(), 1);
  EXPECT_DOUBLE_EQ(m.sequence_is_cap(), 0.0);
  EXPECT_DOUBLE_EQ(m.sequence_mask(), 1.0);
  EXPECT_DOUBLE_EQ(m.geometric_mask(), 1.0);
  // Staleness over all 7 tokens: lags 0,0,0,0, 2,2, 0.
  EXPECT_EQ(m.stale_tokens(), 7);
  EXPECT_NEAR(m.staleness_mean(), 4.0 / 7, 1e-12);
  EXPECT_EQ(m.staleness_max(), 2);
  EXPECT_NEAR(m.equal_weight_fraction(), 5.0 / 7, 1e-12);
}

TEST(PolicyMismatchTest, QuantilesWithinOneBinOfTheExactOnes) {
  // 1000 tokens at equal weights with x = (i − 500)·1e-4: ρ from e^−0.05 to e^0.0499.
  PolicyMismatch m;
  std::vector<float> l(1000), b(1000, -1.0f);
  for (int i = 0; i < 1000; ++i) l[i] = static_cast<float>(-1.0 + (i - 500) * 1e-4);
  m.AddRow(l, b, {{3, 1000}}, 3, kBounds);
  for (double q : kMismatchQuantiles) {
    const double exact_x = (q * 1000 - 500) * 1e-4;
    const double got_x = std::log(m.RatioQuantile(q));
    // A bin spans 12% of |x| (20 per decade); float32 logprobs round x by ~1e-7.
    EXPECT_NEAR(got_x, exact_x, 0.13 * std::fabs(exact_x) + 2e-4) << "q " << q;
  }
  EXPECT_NEAR(m.RatioQuantile(0.5), 1.0, 2e-4);
  EXPECT_LT(m.RatioQuantile(0.01), m.RatioQuantile(0.1));
  EXPECT_LT(m.RatioQuantile(0.9), m.RatioQuantile(0.99));
  // No token at equal weights: the ratio is 1, every figure 0.
  PolicyMismatch none;
  none.AddRow(l, b, {{2, 1000}}, 3, kBounds);
  EXPECT_EQ(none.tokens(), 0);
  EXPECT_EQ(none.RatioQuantile(0.99), 1.0);
  EXPECT_EQ(none.k3(), 0.0);
  EXPECT_EQ(none.staleness_mean(), 1.0);
}

TEST(PolicyMismatchTest, BinsCoverEveryLogRatioInOrder) {
  double prev_hi = -1e300;
  for (int bin = 0; bin < PolicyMismatch::kBins; ++bin) {
    double lo, hi;
    PolicyMismatch::BinRange(bin, &lo, &hi);
    EXPECT_LE(lo, hi) << bin;
    if (bin > 0) {
      EXPECT_NEAR(lo, prev_hi, 1e-12 * std::fabs(lo)) << bin;
    }
    prev_hi = hi;
  }
  for (double x : {-50.0, -1.0, -3e-4, -1e-8, 0.0, 2e-8, 1e-7, 4e-3, 0.7, 99.0, 1e5}) {
    double lo, hi;
    const int bin = PolicyMismatch::Bin(x);
    PolicyMismatch::BinRange(bin, &lo, &hi);
    if (std::fabs(x) < 100) {
      EXPECT_LE(lo, x) << x;
      EXPECT_LE(x, hi) << x;
    } else {
      EXPECT_EQ(bin, PolicyMismatch::kBins - 1);
    }
  }
}

TEST(PolicyMismatchTest, MergeAndReducedSumsEqualOneMeasurementOfEveryRow) {
  const PolicyMismatch whole = TwoRows();
  PolicyMismatch a, b;
  const std::vector<float> la = {-1.0f, -2.2f, -0.5f, -1.5f}, ba = {-1.1f, -2.0f, -0.5f, -2.0f};
  a.AddRow(la, ba, {{7, 4}}, 7, kBounds);
  const std::vector<float> lb = {-3.0f, -3.0f, -1.05f}, bb = {-1.0f, -1.0f, -1.0f};
  b.AddRow(lb, bb, {{5, 2}, {7, 1}}, 7, kBounds);
  PolicyMismatch merged = a;
  merged.Merge(b);
  EXPECT_EQ(merged.ToJson().dump(), whole.ToJson().dump());
  // As an all-reduce does it: sums added, maxima taken.
  std::vector<double> s = a.Sums(), sb = b.Sums(), mx = a.Maxima(), mb = b.Maxima();
  for (size_t i = 0; i < s.size(); ++i) s[i] += sb[i];
  for (size_t i = 0; i < mx.size(); ++i) mx[i] = std::max(mx[i], mb[i]);
  PolicyMismatch reduced;
  reduced.FromReduced(s, mx);
  EXPECT_EQ(reduced.ToJson().dump(), whole.ToJson().dump());
  EXPECT_EQ(reduced.staleness_max(), 2);
}

TEST(PolicyMismatchTest, UnknownVersionsAndNoRecomputationCountOnlyWhatIsKnown) {
  PolicyMismatch m;
  const std::vector<float> l = {-1.0f, -1.0f}, b = {-1.5f, -1.5f};
  m.AddRow(l, b, {}, 4, kBounds);        // versions unknown: skipped
  m.AddRow(l, b, {{4, 1}}, 4, kBounds);  // runs cover 1 of 2 tokens: skipped
  EXPECT_EQ(m.stale_tokens(), 0);
  m.AddRow({}, b, {{3, 2}}, 4, kBounds);  // no learner logprobs: staleness only
  EXPECT_EQ(m.stale_tokens(), 2);
  EXPECT_EQ(m.tokens(), 0);
  EXPECT_EQ(m.staleness_max(), 1);
  // x beyond ±20 is clamped in k3 only: no overflow.
  PolicyMismatch big;
  const std::vector<float> hi = {0.0f}, lo = {-800.0f};
  big.AddRow(hi, lo, {{1, 1}}, 1, kBounds);
  EXPECT_TRUE(std::isfinite(big.k3()));
  EXPECT_NEAR(big.k3(), std::exp(20.0) - 21.0, 1.0);
  EXPECT_EQ(big.abs_max(), 800);
  EXPECT_EQ(big.token_is_cap(), 1.0);
}

}  // namespace
}  // namespace chainrl::learner
