// CUDA LM head statistics (contract as lm_head.h): per vocabulary chunk, cuBLAS computes the
// chunk's logits [rows, chunk] into a workspace and a fused epilogue folds them into each row's
// online-softmax state (forward) or turns them into ∂L/∂logits in place, which two more GEMMs
// take into grad_hidden and grad_weight (backward). Peak memory beyond the inputs and outputs is
// the workspace: LmHeadWorkspaceBytes(rows, chunk), independent of the vocabulary.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace chainrl::kernels {

enum class LmHeadDtype { kFloat32, kBFloat16 };  // hidden and weight (bf16 as uint16_t bits)

size_t LmHeadWorkspaceBytes(int64_t rows, int64_t chunk);

struct LmHeadArgs {
  cublasHandle_t cublas = nullptr;  // its stream is set to `stream` for the call
  cudaStream_t stream = nullptr;
  LmHeadDtype dtype = LmHeadDtype::kFloat32;
  const void* hidden = nullptr;  // [rows, dim] on the device
  const void* weight = nullptr;  // [vocab, dim] on the device
  int64_t rows = 0, dim = 0, vocab = 0;
  const int64_t* targets = nullptr;  // [rows] on the device
  float temperature = 1.f;
  int64_t chunk = 8192;       // vocabulary entries per GEMM
  void* workspace = nullptr;  // LmHeadWorkspaceBytes(rows, chunk) bytes on the device
  size_t workspace_bytes = 0;
};

// Writes logprob, entropy and lse [rows] (float32, device; any may be null). Enqueued on
// args.stream; cudaErrorInvalidValue for bad sizes or a workspace too small; cuBLAS failures as
// cudaErrorUnknown.
cudaError_t LmHeadForwardCuda(const LmHeadArgs& args, float* logprob, float* entropy, float* lse);

// Adds the gradients to grad_hidden [rows, dim] and grad_weight [vocab, dim] (float32, device),
// given the forward's lse and entropy and the upstream grad_logprob (and grad_entropy, may be
// null) [rows].
cudaError_t LmHeadBackwardCuda(const LmHeadArgs& args, const float* lse, const float* entropy,
                               const float* grad_logprob, const float* grad_entropy,
                               float* grad_hidden, float* grad_weight);

}  // namespace chainrl::kernels
