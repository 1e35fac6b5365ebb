// CUDA kernel for per-token logprob / entropy / log-sum-exp of a logits chunk (one block per row,
// one pass with an online softmax). Contract as TokenStatsReference in token_stats.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace chainrl::kernels {

// `logits` [rows, vocab] row-major on the device, float32 (TokenStatsCudaF32) or bfloat16 stored as
// uint16_t bits (TokenStatsCudaBF16); `targets`, outputs on the device (outputs may be null).
// Enqueues on `stream` and returns the launch error; does not synchronise.
cudaError_t TokenStatsCudaF32(const float* logits, int64_t rows, int64_t vocab,
                              const int64_t* targets, float temperature, float* logprob,
                              float* entropy, float* lse, cudaStream_t stream);
cudaError_t TokenStatsCudaBF16(const uint16_t* logits, int64_t rows, int64_t vocab,
                               const int64_t* targets, float temperature, float* logprob,
                               float* entropy, float* lse, cudaStream_t stream);

}  // namespace chainrl::kernels
