// CUDA kernel of the fused GRPO-family per-token loss: one thread per token computes the loss and
// its gradients; each block folds its tokens' statistics and adds them to `stats` with one
// atomic per field. Contract as GrpoLossReference in grpo_loss.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/grpo_loss.h"

namespace chainrl::kernels {

// Every pointer is on the device. `stats` (kGrpoLossStatCount doubles, may be null) is added to,
// not overwritten: zero it first, or accumulate over a mini-batch's chunks. Enqueues on `stream`
// and returns the launch error; does not synchronise.
cudaError_t GrpoLossCuda(const float* logprob, const float* old_logprob, const float* ref_logprob,
                         const float* entropy, const float* advantage, const float* weight,
                         const uint8_t* mask, int64_t n, const GrpoLossParams& params, float* loss,
                         float* grad_logprob, float* grad_entropy, double* stats,
                         cudaStream_t stream);

}  // namespace chainrl::kernels
