// Sampling: top-k/top-p distributions against their definition on fixed logits, empirical
// frequencies, per-sample seeds independent of batch neighbours, and behaviour logprobs equal to
// the learner's recomputation.
#include "rollout/sampling.h"

#include <gtest/gtest.h>

#include <cmath>

namespace chainrl::rollout {
namespace {

std::vector<double> Softmax(const std::vector<double>& z) {
  double m = *std::max_element(z.begin(), z.end()), s = 0;
  std::vector<double> p(z.size());
  for (size_t i = 0; i < z.size(); ++i) s += (p[i] = std::exp(z[i] - m));
  for (auto& x : p) x /= s;
  return p;
}

torch::Tensor Row(const std::vector<float>& v) {
  return torch::tensor(v, torch::kFloat32).unsqueeze(0);
}

TEST(SamplingTest, DistributionMatchesDefinition) {
  const std::vector<float> logits = {0.0f, 2.0f, -1.0f, 1.0f, 2.0f};
  // Plain temperature 0.5.
  SamplingParams t;
  t.temperature = 0.5;
  auto p = SamplingDistribution(Row(logits), {t});
  auto want = Softmax({0, 4, -2, 2, 4});
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(p[0][i].item<float>(), want[i], 1e-6);
  // top-k = 3 at T = 1: tokens 1, 4 (tie, by id) and 3.
  SamplingParams k;
  k.top_k = 3;
  p = SamplingDistribution(Row(logits), {k});
  auto s = Softmax({0, 2, -1, 1, 2});
  double z = s[1] + s[4] + s[3];
  EXPECT_NEAR(p[0][1].item<float>(), s[1] / z, 1e-6);
  EXPECT_NEAR(p[0][4].item<float>(), s[4] / z, 1e-6);
  EXPECT_NEAR(p[0][3].item<float>(), s[3] / z, 1e-6);
  EXPECT_EQ(p[0][0].item<float>(), 0.f);
  EXPECT_EQ(p[0][2].item<float>(), 0.f);
  // top-p = 0.7: sorted masses s1 = s4 ~ 0.3995, s3 ~ 0.147; token 1 (before 0) and token 4
  // (before ~0.40 < 0.7) are kept, token 3 (before ~0.80) is not.
  SamplingParams tp;
  tp.top_p = 0.7;
  p = SamplingDistribution(Row(logits), {tp});
  EXPECT_NEAR(p[0][1].item<float>(), 0.5, 1e-6);
  EXPECT_NEAR(p[0][4].item<float>(), 0.5, 1e-6);
  EXPECT_EQ(p[0][3].item<float>(), 0.f);
  // top-p applies to the top-k-renormalised mass: with k = 3 the mass before token 3 is
  // (s1 + s4) / (s1 + s4 + s3) ~ 0.845, so p = 0.8 drops token 3 (on the raw mass, ~0.80, it would
  // be a coin toss).
  SamplingParams kp;
  kp.top_k = 3;
  kp.top_p = 0.8;
  p = SamplingDistribution(Row(logits), {kp});
  double before3 = (s[1] + s[4]) / z;  // renormalised mass before token 3
  ASSERT_GT(before3, 0.8);
  EXPECT_NEAR(p[0][1].item<float>(), 0.5, 1e-6);
  EXPECT_EQ(p[0][3].item<float>(), 0.f);
  // Greedy: all mass on the first maximum.
  SamplingParams g;
  g.temperature = 0;
  p = SamplingDistribution(Row(logits), {g});
  EXPECT_EQ(p[0][1].item<float>(), 1.f);
  EXPECT_EQ(p.sum().item<float>(), 1.f);
}

TEST(SamplingTest, EmpiricalFrequenciesMatchDistribution) {
  torch::manual_seed(0);
  auto logits = torch::randn({1, 12}) * 1.5;
  for (auto params : {SamplingParams{1.0, 0, 1.0, 5}, SamplingParams{0.7, 5, 1.0, 6},
                      SamplingParams{1.3, 0, 0.8, 7}, SamplingParams{1.0, 4, 0.9, 8}}) {
    auto dist = SamplingDistribution(logits, {params});
    const int n = 20000;
    std::vector<int> counts(12);
    auto rows = logits.expand({n, 12}).contiguous();
    std::vector<SamplingParams> ps(n, params);
    std::vector<int64_t> counters(n);
    for (int i = 0; i < n; ++i) counters[i] = i;
    auto out = SampleTokens(rows, ps, counters);
    for (int i = 0; i < n; ++i) counts[out.tokens[i].item<int64_t>()]++;
    for (int v = 0; v < 12; ++v) {
      double q = dist[0][v].item<float>();
      if (q == 0) {
        EXPECT_EQ(counts[v], 0) << "filtered token " << v << " was sampled";
        continue;
      }
      double sigma = std::sqrt(n * q * (1 - q));
      EXPECT_NEAR(counts[v], n * q, 5 * sigma + 1) << "token " << v;
    }
  }
}

TEST(SamplingTest, SeedsAreIndependentOfBatchNeighbours) {
  torch::manual_seed(1);
  auto logits = torch::randn({6, 50});
  std::vector<SamplingParams> params = {{1.0, 0, 1.0, 11}, {0.8, 10, 0.9, 12}, {1.2, 0, 0.5, 13},
                                        {0.0, 0, 1.0, 14}, {1.0, 3, 1.0, 15},  {0.5, 0, 1.0, 16}};
  std::vector<int64_t> counters = {0, 5, 9, 2, 100, 7};
  auto batch = SampleTokens(logits, params, counters);
  for (int64_t b = 0; b < 6; ++b) {
    auto alone = SampleTokens(logits.slice(0, b, b + 1), {params[b]}, {counters[b]});
    EXPECT_EQ(alone.tokens[0].item<int64_t>(), batch.tokens[b].item<int64_t>()) << b;
    EXPECT_FLOAT_EQ(alone.logprobs[0].item<float>(), batch.logprobs[b].item<float>()) << b;
    // Reordered batch: the same row lands elsewhere, same draw.
    auto reversed = SampleTokens(logits.flip(0), {params.rbegin(), params.rend()},
                                 {counters.rbegin(), counters.rend()});
    EXPECT_EQ(reversed.tokens[5 - b].item<int64_t>(), batch.tokens[b].item<int64_t>()) << b;
  }
}

TEST(SamplingTest, LogprobsAndEntropyMatchLearnerRecomputation) {
  torch::manual_seed(2);
  auto logits = torch::randn({8, 100}) * 3;
  std::vector<SamplingParams> params(8);
  std::vector<int64_t> counters(8);
  for (int i = 0; i < 8; ++i) {
    params[i] = {0.3 + 0.2 * i, i % 3 == 0 ? 0 : 7, i % 2 ? 0.9 : 1.0, static_cast<uint64_t>(i)};
    counters[i] = i * 13;
  }
  params[3].temperature = 0;  // greedy
  auto out = SampleTokens(logits, params, counters, /*want_entropy=*/true);
  for (int64_t b = 0; b < 8; ++b) {
    double t = params[b].temperature > 0 ? params[b].temperature : 1.0;
    auto logp = torch::log_softmax(logits[b].to(torch::kFloat64) / t, -1);
    int64_t tok = out.tokens[b].item<int64_t>();
    EXPECT_NEAR(out.logprobs[b].item<float>(), logp[tok].item<double>(), 1e-5);
    double h = -(logp.exp() * logp).sum().item<double>();
    EXPECT_NEAR(out.entropy[b].item<float>(), h, 1e-4);
  }
  EXPECT_EQ(out.tokens[3].item<int64_t>(), logits[3].argmax().item<int64_t>());
}

TEST(SamplingTest, UniformsAreWellSpread) {
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    double u = SampleUniform(42, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NE(SampleUniform(1, 0), SampleUniform(2, 0));
  EXPECT_EQ(SampleUniform(1, 0), SampleUniform(1, 0));
}

}  // namespace
}  // namespace chainrl::rollout
