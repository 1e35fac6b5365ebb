// Batch sampling: the CPU reference picks the token rollout's SampleTokens picks at the same
// uniform (greedy, plain, top-k, top-p, both, tied logits), with the same behaviour logprob, and
// the CUDA kernel picks the reference's tokens when a GPU is present (skipped otherwise).
#include "kernels/sampling.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>
#include <vector>

#include "rollout/sampling.h"
#include "tests/kernels/cuda_test_util.h"

#ifdef CHAINRL_KERNELS_CUDA
#include "kernels/sampling_cuda.h"
#endif

namespace chainrl::kernels {
namespace {

struct Batch {
  int64_t rows = 0, vocab = 0;
  std::vector<float> logits, temperature, top_p, uniform;
  std::vector<int64_t> top_k;
  std::vector<rollout::SamplingParams> params;
  std::vector<int64_t> counters;
};

// Rows cycle through greedy, plain, top-k, top-p and both; every fifth row has tied logits (few
// distinct values), so the sort's tie order matters.
Batch MakeBatch(int64_t rows, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 2.f);
  std::uniform_int_distribution<int> level(0, 3);
  Batch b;
  b.rows = rows;
  b.vocab = vocab;
  for (int64_t r = 0; r < rows; ++r) {
    const bool ties = r % 5 == 4;
    for (int64_t j = 0; j < vocab; ++j)
      b.logits.push_back(ties ? static_cast<float>(level(rng)) : n(rng));
    rollout::SamplingParams p;
    p.seed = 1000 + static_cast<uint64_t>(r);
    switch (r % 6) {
      case 0:
        p.temperature = 0;
        break;
      case 1:
        p.temperature = 0.7;
        break;
      case 2:
        p.temperature = 1.0, p.top_k = 1 + r % 13;
        break;
      case 3:
        p.temperature = 1.3, p.top_p = 0.05 + 0.9 * (r % 7) / 7.0;
        break;
      case 4:
        p.temperature = 0.9, p.top_k = 5 + r % 20, p.top_p = 0.6;
        break;
      default:
        p.temperature = 1.0, p.top_k = vocab + 5, p.top_p = 1.0;
        break;  // both off
    }
    b.params.push_back(p);
    b.counters.push_back(r * 3 + 1);
    b.temperature.push_back(static_cast<float>(p.temperature));
    b.top_k.push_back(p.top_k);
    b.top_p.push_back(static_cast<float>(p.top_p));
    b.uniform.push_back(static_cast<float>(rollout::SampleUniform(p.seed, b.counters.back())));
  }
  return b;
}

TEST(SampleReferenceTest, PicksRolloutsTokenAtTheSameUniform) {
  const Batch b = MakeBatch(600, 97, 3);
  std::vector<int64_t> tokens(b.rows);
  std::vector<float> logprobs(b.rows);
  SampleReference(b.logits.data(), b.rows, b.vocab, b.temperature.data(), b.top_k.data(),
                  b.top_p.data(), b.uniform.data(), tokens.data(), logprobs.data());
  const torch::Tensor logits =
      torch::from_blob(const_cast<float*>(b.logits.data()), {b.rows, b.vocab}, torch::kFloat);
  const rollout::SampledTokens want = rollout::SampleTokens(logits, b.params, b.counters);
  int64_t same = 0;
  for (int64_t r = 0; r < b.rows; ++r) {
    if (tokens[r] != want.tokens[r].item<int64_t>()) continue;
    ++same;
    EXPECT_NEAR(logprobs[r], want.logprobs[r].item<float>(), 1e-5) << "row " << r;
  }
  // float32 cumulative sums (rollout) and float64 ones (here) may put a uniform on different
  // sides of a CDF step only when it falls within rounding of one: essentially never.
  EXPECT_GE(same, b.rows - 1) << same << " of " << b.rows << " rows agree";
  // Kept sets are respected: a top-k row's token is among its k most likely.
  for (int64_t r = 2; r < b.rows; r += 6) {
    const torch::Tensor row = logits[r];
    const int64_t rank = (row > row[tokens[r]]).sum().item<int64_t>();
    EXPECT_LT(rank, b.top_k[r]) << "row " << r;
  }
}

#ifdef CHAINRL_KERNELS_CUDA
TEST(SampleCudaTest, PicksTheReferencesTokens) {
  CHAINRL_SKIP_WITHOUT_GPU();
  using testing::DeviceBuffer;
  for (int64_t vocab : {2, 97, 1000, 151936}) {
    const Batch b = MakeBatch(vocab > 10000 ? 24 : 300, vocab, 17);
    std::vector<int64_t> tokens(b.rows);
    std::vector<float> logprobs(b.rows);
    SampleReference(b.logits.data(), b.rows, b.vocab, b.temperature.data(), b.top_k.data(),
                    b.top_p.data(), b.uniform.data(), tokens.data(), logprobs.data());
    DeviceBuffer<float> logits(b.logits), temperature(b.temperature), top_p(b.top_p),
        uniform(b.uniform), d_lp(b.rows);
    DeviceBuffer<int64_t> top_k(b.top_k), d_tok(b.rows);
    const size_t bytes = SampleWorkspaceBytes(b.rows, b.vocab);
    DeviceBuffer<char> ws(bytes);
    ASSERT_EQ(SampleCuda(logits.get(), b.rows, b.vocab, temperature.get(), top_k.get(), top_p.get(),
                         uniform.get(), true, d_tok.get(), d_lp.get(), ws.get(), bytes, nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto got = d_tok.Read();
    const auto got_lp = d_lp.Read();
    int64_t same = 0;
    for (int64_t r = 0; r < b.rows; ++r) {
      if (got[r] != tokens[r]) continue;
      ++same;
      EXPECT_NEAR(got_lp[r], logprobs[r], 1e-4) << "vocab " << vocab << " row " << r;
    }
    // float32 sums in another order than the reference's: a boundary case at most now and then.
    EXPECT_GE(same, b.rows - 1) << "vocab " << vocab << ": " << same << " of " << b.rows;
  }
  EXPECT_EQ(SampleCuda(nullptr, 4, 8, nullptr, nullptr, nullptr, nullptr, false, nullptr, nullptr,
                       nullptr, 0, nullptr),
            cudaErrorInvalidValue);
}
#endif

}  // namespace
}  // namespace chainrl::kernels
