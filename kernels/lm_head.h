// The LM head's per-token statistics straight from hidden states and the output projection:
// log-sum-exp, logprob of the target token and entropy of softmax(h·Wᵀ / T), forward and
// backward, with the logits of one vocabulary chunk alive at a time and never [rows, vocab]. The
// learner's streaming backprop and rollout's behaviour logprobs need exactly these. CPU reference
// here (one row of logits at a time); the CUDA version (cuBLAS per vocabulary chunk, fused
// epilogues) is in lm_head_cuda.h. Torch-free: raw pointers, row-major.
#pragma once

#include <cstdint>

namespace chainrl::kernels {

// hidden [rows, dim], weight [vocab, dim] (the output projection, as Hugging Face stores it),
// z = hidden·weightᵀ / temperature. Outputs as TokenStatsReference (token_stats.h); a target
// outside [0, vocab) gives a NaN logprob. Output pointers may be null. Single-threaded, float64.
void LmHeadForwardReference(const float* hidden, const float* weight, int64_t rows, int64_t dim,
                            int64_t vocab, const int64_t* targets, float temperature,
                            float* logprob, float* entropy, float* lse);

// The gradients of L = Σ_r grad_logprob[r]·logprob[r] + grad_entropy[r]·entropy[r], given the
// forward's lse and entropy: with p = softmax(z) and E[z] = lse − H,
//   ∂L/∂z_j = g_lp·(1[j = y] − p_j) − g_H·p_j·(z_j − E[z]),   ∂L/∂logit_j = ∂L/∂z_j / T,
// ADDED to grad_hidden [rows, dim] (Σ_j ∂L/∂logit_j · weight_j) and grad_weight [vocab, dim]
// (Σ_r ∂L/∂logit_j · hidden_r), so chunks of tokens accumulate. grad_entropy may be null (zero);
// a row whose target is outside [0, vocab) contributes no logprob term.
void LmHeadBackwardReference(const float* hidden, const float* weight, int64_t rows, int64_t dim,
                             int64_t vocab, const int64_t* targets, float temperature,
                             const float* lse, const float* entropy, const float* grad_logprob,
                             const float* grad_entropy, float* grad_hidden, float* grad_weight);

}  // namespace chainrl::kernels
