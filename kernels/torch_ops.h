// The thin LibTorch binding of the CUDA kernels: where a tensor lives on a GPU and this build has
// the kernels, the learner and the rollout engine call these instead of their LibTorch paths
// (which stay the CPU path and the reference). Everything here is a no-gradient path.
#pragma once

#include <utility>
#include <vector>

#include <torch/types.h>

namespace chainrl::kernels {

// A broken REQUIRES below, or a kernel that fails to run, throws c10::Error (TORCH_CHECK).

// Whether the CUDA kernels serve `t`: this build compiled them and `t` is on a CUDA device.
bool CudaKernelsServe(const torch::Tensor& t);

// Logprob of `targets` and entropy of softmax(logits / temperature), for logits [..., V] float32
// or bfloat16 and targets [...] int64 (negative targets read as 0, as the learner's
// TokenLogprobs does: the caller masks them), without materialising the log-softmax. Returns
// {logprob, entropy}, float32, shaped like targets. REQUIRES CudaKernelsServe(logits).
std::pair<torch::Tensor, torch::Tensor> CudaTokenStats(const torch::Tensor& logits,
                                                       const torch::Tensor& targets,
                                                       double temperature);

// Samples one token per row of logits [B, V] (any float dtype) as SampleReference (sampling.h)
// does, from per-row parameters and uniforms. Returns {tokens int64 [B], logprobs float32 [B]} on
// the logits' device. REQUIRES CudaKernelsServe(logits) and B entries in each vector.
std::pair<torch::Tensor, torch::Tensor> CudaSample(const torch::Tensor& logits,
                                                   const std::vector<float>& temperature,
                                                   const std::vector<int64_t>& top_k,
                                                   const std::vector<float>& top_p,
                                                   const std::vector<float>& uniform);

}  // namespace chainrl::kernels
