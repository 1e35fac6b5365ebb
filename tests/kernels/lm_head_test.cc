// The LM head statistics from hidden states: the CPU reference equals LibTorch's log_softmax and
// autograd (forward values, gradients of hidden and weight), and the CUDA version (cuBLAS per
// vocabulary chunk) equals the reference in float32 and bfloat16 when a GPU is present (skipped
// with a message otherwise).
#include "kernels/lm_head.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/cuda_test_util.h"

#ifdef CHAINRL_KERNELS_CUDA
#include <cuda_bf16.h>

#include "kernels/lm_head_cuda.h"
#endif

namespace chainrl::kernels {
namespace {

std::vector<float> Random(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(LmHeadReferenceTest, ForwardAndBackwardEqualLogSoftmaxAndAutograd) {
  const int64_t rows = 7, dim = 16, vocab = 300;
  const float temperature = 0.8f;
  const std::vector<float> h = Random(rows * dim, 1.f, 1), w = Random(vocab * dim, 0.5f, 2);
  const std::vector<int64_t> targets = {0, 299, 17, -1, 150, 3, 42};
  const std::vector<float> g_lp = Random(rows, 1.f, 3), g_ent = Random(rows, 1.f, 4);
  std::vector<float> lp(rows), ent(rows), lse(rows);
  LmHeadForwardReference(h.data(), w.data(), rows, dim, vocab, targets.data(), temperature,
                         lp.data(), ent.data(), lse.data());
  std::vector<float> gh(rows * dim, 0.f), gw(vocab * dim, 0.f);
  LmHeadBackwardReference(h.data(), w.data(), rows, dim, vocab, targets.data(), temperature,
                          lse.data(), ent.data(), g_lp.data(), g_ent.data(), gh.data(), gw.data());

  auto H = torch::tensor(h, torch::kDouble).reshape({rows, dim}).set_requires_grad(true);
  auto W = torch::tensor(w, torch::kDouble).reshape({vocab, dim}).set_requires_grad(true);
  auto lsm = torch::log_softmax(torch::matmul(H, W.t()) / temperature, -1);
  auto want_ent = -(lsm.exp() * lsm).sum(-1);
  auto want_lse = torch::logsumexp(torch::matmul(H, W.t()) / temperature, -1);
  torch::Tensor loss = (want_ent * torch::tensor(g_ent, torch::kDouble)).sum();
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_NEAR(ent[r], want_ent[r].item<double>(), 1e-5) << r;
    EXPECT_NEAR(lse[r], want_lse[r].item<double>(), 1e-5) << r;
    if (targets[r] < 0) {
      EXPECT_TRUE(std::isnan(lp[r]));
      continue;
    }
    EXPECT_NEAR(lp[r], lsm[r][targets[r]].item<double>(), 1e-5) << r;
    loss = loss + g_lp[r] * lsm[r][targets[r]];
  }
  loss.backward();
  const std::vector<float> want_gh = ToVector(H.grad()), want_gw = ToVector(W.grad());
  double worst_h = 0, worst_w = 0, scale = 0;
  for (size_t i = 0; i < gh.size(); ++i) {
    worst_h = std::max(worst_h, static_cast<double>(std::abs(gh[i] - want_gh[i])));
    scale = std::max(scale, static_cast<double>(std::abs(want_gh[i])));
  }
  for (size_t i = 0; i < gw.size(); ++i)
    worst_w = std::max(worst_w, static_cast<double>(std::abs(gw[i] - want_gw[i])));
  EXPECT_GT(scale, 1e-2);
  EXPECT_LE(worst_h, 1e-5);
  EXPECT_LE(worst_w, 1e-5);
  // Gradients are added to what is there: a second call doubles them.
  LmHeadBackwardReference(h.data(), w.data(), rows, dim, vocab, targets.data(), temperature,
                          lse.data(), ent.data(), g_lp.data(), g_ent.data(), gh.data(), gw.data());
  EXPECT_NEAR(gh[5], 2 * want_gh[5], 1e-5);
}

#ifdef CHAINRL_KERNELS_CUDA
// bfloat16 bits of x (round to nearest even) and back.
uint16_t Bf16Bits(float x) { return __bfloat16_as_ushort(__float2bfloat16(x)); }
float Bf16Round(float x) { return __bfloat162float(__ushort_as_bfloat16(Bf16Bits(x))); }

TEST(LmHeadCudaTest, MatchesReferenceInFloat32AndBfloat16) {
  CHAINRL_SKIP_WITHOUT_GPU();
  using testing::DeviceBuffer;
  cublasHandle_t handle;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const int64_t rows = 33, dim = 64, vocab = 5003, chunk = 1024;  // the last chunk is partial
  const float temperature = 0.9f;
  for (bool bf16 : {false, true}) {
    std::vector<float> h = Random(rows * dim, 1.f, 5), w = Random(vocab * dim, 0.3f, 6);
    if (bf16) {
      for (auto& x : h) x = Bf16Round(x);
      for (auto& x : w) x = Bf16Round(x);
    }
    std::vector<int64_t> targets(rows);
    for (int64_t r = 0; r < rows; ++r) targets[r] = (r * 7919) % vocab;
    targets[3] = -1;
    const std::vector<float> g_lp = Random(rows, 1.f, 7), g_ent = Random(rows, 1.f, 8);
    std::vector<float> lp(rows), ent(rows), lse(rows), gh(rows * dim, 0.f), gw(vocab * dim, 0.f);
    LmHeadForwardReference(h.data(), w.data(), rows, dim, vocab, targets.data(), temperature,
                           lp.data(), ent.data(), lse.data());
    LmHeadBackwardReference(h.data(), w.data(), rows, dim, vocab, targets.data(), temperature,
                            lse.data(), ent.data(), g_lp.data(), g_ent.data(), gh.data(),
                            gw.data());
    std::vector<uint16_t> hb(h.size()), wb(w.size());
    for (size_t i = 0; i < h.size(); ++i) hb[i] = Bf16Bits(h[i]);
    for (size_t i = 0; i < w.size(); ++i) wb[i] = Bf16Bits(w[i]);
    DeviceBuffer<float> d_h(h), d_w(w), d_out(3 * rows), d_glp(g_lp), d_gent(g_ent),
        d_gh(rows * dim), d_gw(vocab * dim);
    DeviceBuffer<uint16_t> d_hb(hb), d_wb(wb);
    DeviceBuffer<int64_t> d_t(targets);
    DeviceBuffer<char> ws(LmHeadWorkspaceBytes(rows, chunk));
    LmHeadArgs a;
    a.cublas = handle;
    a.dtype = bf16 ? LmHeadDtype::kBFloat16 : LmHeadDtype::kFloat32;
    a.hidden = bf16 ? static_cast<const void*>(d_hb.get()) : d_h.get();
    a.weight = bf16 ? static_cast<const void*>(d_wb.get()) : d_w.get();
    a.rows = rows;
    a.dim = dim;
    a.vocab = vocab;
    a.targets = d_t.get();
    a.temperature = temperature;
    a.chunk = chunk;
    a.workspace = ws.get();
    a.workspace_bytes = LmHeadWorkspaceBytes(rows, chunk);
    float* out = d_out.get();
    ASSERT_EQ(LmHeadForwardCuda(a, out, out + rows, out + 2 * rows), cudaSuccess);
    ASSERT_EQ(LmHeadBackwardCuda(a, out + 2 * rows, out + rows, d_glp.get(), d_gent.get(),
                                 d_gh.get(), d_gw.get()),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto o = d_out.Read();
    for (int64_t r = 0; r < rows; ++r) {
      if (targets[r] < 0) {
        EXPECT_TRUE(std::isnan(o[r]));
      } else {
        EXPECT_NEAR(o[r], lp[r], 2e-4) << "bf16 " << bf16 << " row " << r;
      }
      EXPECT_NEAR(o[rows + r], ent[r], 2e-4) << "bf16 " << bf16 << " row " << r;
      EXPECT_NEAR(o[2 * rows + r], lse[r], 2e-4) << "bf16 " << bf16 << " row " << r;
    }
    // Gradients: float32 GEMMs agree closely; bfloat16 rounds ∂L/∂logits to 8 bits of mantissa.
    const double tol = bf16 ? 2e-2 : 1e-4;
    for (const auto& [got, want] : {std::pair{d_gh.Read(), gh}, std::pair{d_gw.Read(), gw}}) {
      double worst = 0, scale = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        worst = std::max(worst, static_cast<double>(std::abs(got[i] - want[i])));
        scale = std::max(scale, static_cast<double>(std::abs(want[i])));
      }
      EXPECT_LE(worst, tol * scale) << "bf16 " << bf16;
    }
  }
  // A workspace smaller than LmHeadWorkspaceBytes is refused, not overrun.
  LmHeadArgs small;
  small.cublas = handle;
  small.hidden = small.weight = small.workspace = &small;
  small.rows = small.dim = small.vocab = 8;
  small.workspace_bytes = 1;
  EXPECT_EQ(LmHeadForwardCuda(small, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
  cublasDestroy(handle);
}
#endif

}  // namespace
}  // namespace chainrl::kernels
