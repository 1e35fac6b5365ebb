// The LibTorch binding of the CUDA kernels: on the CPU it serves nothing (the LibTorch paths
// run); with a CUDA device, per-token statistics equal the learner's TokenLogprobs/TokenEntropy
// and sampling picks rollout's SampleTokens tokens (skipped with a message without one).
#include "kernels/torch_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "learner/objectives.h"
#include "rollout/sampling.h"

namespace chainrl::kernels {
namespace {

TEST(TorchOpsTest, ServesNothingOnTheCpu) {
  EXPECT_FALSE(CudaKernelsServe(torch::zeros({2, 3})));
  EXPECT_FALSE(CudaKernelsServe(torch::Tensor()));
}

TEST(TorchOpsCudaTest, StatisticsAndSamplingEqualTheLibTorchPaths) {
  if (!torch::cuda::is_available() || !CudaKernelsServe(torch::zeros({1}, torch::kCUDA)))
    GTEST_SKIP() << "no CUDA device (or kernels not compiled): the binding is not run here";
  torch::manual_seed(3);
  const torch::Tensor logits = torch::randn({3, 17, 1000}) * 3;
  torch::Tensor targets = torch::randint(0, 1000, {3, 17}, torch::kInt64);
  targets[1][4] = -100;  // an ignored label reads as 0, as TokenLogprobs reads it
  auto [lp, ent] = CudaTokenStats(logits.to(torch::kCUDA), targets.to(torch::kCUDA), 0.7);
  const torch::Tensor want_lp = learner::TokenLogprobs(logits, targets, 0.7);
  const torch::Tensor want_ent = learner::TokenEntropy(logits, 0.7);
  EXPECT_LT((lp.cpu() - want_lp).abs().max().item<double>(), 2e-4);
  EXPECT_LT((ent.cpu() - want_ent).abs().max().item<double>(), 2e-4);

  const int64_t b = 64;
  const torch::Tensor x = torch::randn({b, 5000}) * 2;
  std::vector<rollout::SamplingParams> params(b);
  std::vector<int64_t> counters(b);
  for (int64_t i = 0; i < b; ++i) {
    params[i].seed = 77 + static_cast<uint64_t>(i);
    params[i].temperature = i % 4 == 0 ? 0.0 : 0.8;
    params[i].top_k = i % 4 == 1 ? 40 : 0;
    params[i].top_p = i % 4 == 2 ? 0.9 : 1.0;
    counters[i] = i;
  }
  const rollout::SampledTokens want = rollout::SampleTokens(x, params, counters);
  const rollout::SampledTokens got = rollout::SampleTokens(x.to(torch::kCUDA), params, counters);
  ASSERT_TRUE(got.tokens.is_cuda()) << "the kernel path served the CUDA logits";
  const int64_t same = (got.tokens.cpu() == want.tokens).sum().item<int64_t>();
  EXPECT_GE(same, b - 1) << same << " of " << b << " rows";
}

}  // namespace
}  // namespace chainrl::kernels
