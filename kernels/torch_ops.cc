// LibTorch binding of the CUDA kernels (see torch_ops.h). Kernels run on the device of the
// tensors, on the default stream (chainrl sets no other current stream).
#include "kernels/torch_ops.h"

#include <torch/torch.h>

#ifdef CHAINRL_KERNELS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/sampling_cuda.h"
#include "kernels/token_stats_cuda.h"
#endif

namespace chainrl::kernels {
namespace {

#ifdef CHAINRL_KERNELS_CUDA
// Makes `device` current for one scope and restores the previous device.
class DeviceScope {
 public:
  explicit DeviceScope(const torch::Device& device) {
    cudaGetDevice(&previous_);
    cudaSetDevice(device.has_index() ? device.index() : 0);
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

void Check(cudaError_t e, const char* what) {
  TORCH_CHECK(e == cudaSuccess, what, ": ", cudaGetErrorString(e));
}
#endif

}  // namespace

bool CudaKernelsServe(const torch::Tensor& t) {
#ifdef CHAINRL_KERNELS_CUDA
  return t.defined() && t.is_cuda();
#else
  (void)t;
  return false;
#endif
}

std::pair<torch::Tensor, torch::Tensor> CudaTokenStats(const torch::Tensor& logits,
                                                       const torch::Tensor& targets,
                                                       double temperature) {
  TORCH_CHECK(CudaKernelsServe(logits), "CudaTokenStats needs CUDA logits and the kernels");
  TORCH_CHECK(logits.dim() == targets.dim() + 1 &&
                  logits.sizes().slice(0, targets.dim()) == targets.sizes(),
              "logits ", logits.sizes(), " vs targets ", targets.sizes());
#ifdef CHAINRL_KERNELS_CUDA
  torch::NoGradGuard no_grad;
  DeviceScope scope(logits.device());
  const int64_t vocab = logits.size(-1);
  const bool bf16 = logits.scalar_type() == torch::kBFloat16;
  torch::Tensor x = (bf16 ? logits : logits.to(torch::kFloat32)).reshape({-1, vocab}).contiguous();
  torch::Tensor y = targets.reshape({-1}).clamp_min(0).to(torch::kInt64).contiguous();
  const int64_t rows = x.size(0);
  auto f = torch::TensorOptions().dtype(torch::kFloat32).device(logits.device());
  torch::Tensor logprob = torch::empty({rows}, f), entropy = torch::empty({rows}, f);
  const float t = static_cast<float>(temperature);
  cudaError_t e =
      bf16 ? TokenStatsCudaBF16(reinterpret_cast<const uint16_t*>(x.data_ptr()), rows, vocab,
                                y.data_ptr<int64_t>(), t, logprob.data_ptr<float>(),
                                entropy.data_ptr<float>(), nullptr, nullptr)
           : TokenStatsCudaF32(x.data_ptr<float>(), rows, vocab, y.data_ptr<int64_t>(), t,
                               logprob.data_ptr<float>(), entropy.data_ptr<float>(), nullptr,
                               nullptr);
  Check(e, "per-token statistics kernel");
  return {logprob.view(targets.sizes()), entropy.view(targets.sizes())};
#else
  (void)temperature;
  return {};
#endif
}

std::pair<torch::Tensor, torch::Tensor> CudaSample(const torch::Tensor& logits,
                                                   const std::vector<float>& temperature,
                                                   const std::vector<int64_t>& top_k,
                                                   const std::vector<float>& top_p,
                                                   const std::vector<float>& uniform) {
  TORCH_CHECK(CudaKernelsServe(logits), "CudaSample needs CUDA logits and the kernels");
  const int64_t b = logits.dim() == 2 ? logits.size(0) : -1;
  TORCH_CHECK(b >= 0 && static_cast<int64_t>(temperature.size()) == b &&
                  static_cast<int64_t>(top_k.size()) == b &&
                  static_cast<int64_t>(top_p.size()) == b &&
                  static_cast<int64_t>(uniform.size()) == b,
              "logits ", logits.sizes(), " vs ", temperature.size(), " rows of parameters");
#ifdef CHAINRL_KERNELS_CUDA
  torch::NoGradGuard no_grad;
  DeviceScope scope(logits.device());
  const int64_t vocab = logits.size(1);
  torch::Tensor x = logits.to(torch::kFloat32).contiguous();
  auto on = [&](torch::Tensor t) { return t.to(logits.device()); };
  torch::Tensor temp = on(torch::tensor(temperature, torch::kFloat32));
  torch::Tensor k = on(torch::tensor(top_k, torch::kInt64));
  torch::Tensor p = on(torch::tensor(top_p, torch::kFloat32));
  torch::Tensor u = on(torch::tensor(uniform, torch::kFloat32));
  bool any_filtered = false;
  for (int64_t i = 0; i < b; ++i)
    any_filtered = any_filtered || (temperature[i] > 0 && ((top_k[i] > 0 && top_k[i] < vocab) ||
                                                           (top_p[i] > 0 && top_p[i] < 1)));
  const size_t bytes = SampleWorkspaceBytes(b, vocab);
  torch::Tensor ws = torch::empty({static_cast<int64_t>(bytes)},
                                  torch::TensorOptions().dtype(torch::kUInt8).device(x.device()));
  torch::Tensor tokens =
      torch::empty({b}, torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
  torch::Tensor logprobs =
      torch::empty({b}, torch::TensorOptions().dtype(torch::kFloat32).device(x.device()));
  Check(
      SampleCuda(x.data_ptr<float>(), b, vocab, temp.data_ptr<float>(), k.data_ptr<int64_t>(),
                 p.data_ptr<float>(), u.data_ptr<float>(), any_filtered, tokens.data_ptr<int64_t>(),
                 logprobs.data_ptr<float>(), ws.data_ptr(), bytes, nullptr),
      "sampling kernel");
  return {tokens, logprobs};
#else
  return {};
#endif
}

}  // namespace chainrl::kernels
