// Per-token logprob/entropy/lse: the CPU reference against closed forms and a direct softmax, and
// the CUDA kernel against the reference when a GPU is present (skipped with a message otherwise).
#include "kernels/token_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/cuda_test_util.h"

#ifdef CHAINRL_KERNELS_CUDA
#include "kernels/token_stats_cuda.h"
#endif

namespace chainrl::kernels {
namespace {

TEST(TokenStatsReferenceTest, UniformLogitsHaveClosedForm) {
  const int64_t vocab = 50;
  std::vector<float> logits(2 * vocab, 3.0f);
  std::vector<int64_t> targets = {7, 49};
  std::vector<float> lp(2), ent(2), lse(2);
  TokenStatsReference(logits.data(), 2, vocab, targets.data(), 0.5f, lp.data(), ent.data(),
                      lse.data());
  for (int r = 0; r < 2; ++r) {
    EXPECT_NEAR(lp[r], -std::log(50.0), 1e-5);
    EXPECT_NEAR(ent[r], std::log(50.0), 1e-5);
    EXPECT_NEAR(lse[r], 6.0 + std::log(50.0), 1e-5);
  }
}

TEST(TokenStatsReferenceTest, MatchesDirectSoftmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.f, 4.f);
  const int64_t rows = 5, vocab = 1000;
  std::vector<float> logits(rows * vocab);
  for (auto& x : logits) x = n(rng);
  std::vector<int64_t> targets = {0, 999, 500, 17, -1};
  std::vector<float> lp(rows), ent(rows);
  const float t = 0.7f;
  TokenStatsReference(logits.data(), rows, vocab, targets.data(), t, lp.data(), ent.data(),
                      nullptr);
  for (int64_t r = 0; r < rows; ++r) {
    double z_max = -1e300, sum = 0;
    for (int64_t j = 0; j < vocab; ++j) z_max = std::max(z_max, logits[r * vocab + j] / (double)t);
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(logits[r * vocab + j] / (double)t - z_max);
    double h = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      double p = std::exp(logits[r * vocab + j] / (double)t - z_max) / sum;
      if (p > 0) h -= p * std::log(p);
    }
    EXPECT_NEAR(ent[r], h, 1e-4 * std::max(1.0, h)) << r;
    if (targets[r] >= 0) {
      double want = logits[r * vocab + targets[r]] / (double)t - z_max - std::log(sum);
      EXPECT_NEAR(lp[r], want, 1e-4) << r;
    } else {
      EXPECT_TRUE(std::isnan(lp[r]));
    }
  }
}

#ifdef CHAINRL_KERNELS_CUDA
TEST(TokenStatsCudaTest, MatchesReferenceOnRandomInputs) {
  CHAINRL_SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0.f, 3.f);
  for (int64_t vocab : {1, 31, 256, 1000, 151936}) {
    const int64_t rows = 37;
    std::vector<float> logits(rows * vocab);
    for (auto& x : logits) x = n(rng);
    std::vector<int64_t> targets(rows);
    for (int64_t r = 0; r < rows; ++r) targets[r] = (r * 7919) % vocab;
    std::vector<float> lp(rows), ent(rows), lse(rows);
    TokenStatsReference(logits.data(), rows, vocab, targets.data(), 0.9f, lp.data(), ent.data(),
                        lse.data());
    float *d_logits, *d_out;
    int64_t* d_targets;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_logits), logits.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_out), 3 * rows * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_targets), rows * 8), cudaSuccess);
    cudaMemcpy(d_logits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_targets, targets.data(), rows * 8, cudaMemcpyHostToDevice);
    ASSERT_EQ(TokenStatsCudaF32(d_logits, rows, vocab, d_targets, 0.9f, d_out, d_out + rows,
                                d_out + 2 * rows, nullptr),
              cudaSuccess);
    std::vector<float> out(3 * rows);
    ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_NEAR(out[r], lp[r], 2e-4) << "vocab " << vocab << " row " << r;
      EXPECT_NEAR(out[rows + r], ent[r], 2e-4) << "vocab " << vocab << " row " << r;
      EXPECT_NEAR(out[2 * rows + r], lse[r], 2e-4) << "vocab " << vocab << " row " << r;
    }
    cudaFree(d_logits);
    cudaFree(d_out);
    cudaFree(d_targets);
  }
}
#endif

}  // namespace
}  // namespace chainrl::kernels
