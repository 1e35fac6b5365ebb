// The GRPO-family per-token loss (clipped ratio, dual clip, KL to a reference, entropy bonus,
// masks and normaliser weights), forward and backward fused in one pass over the tokens. The
// definition is the learner's PolicyLoss (learner/objectives.h) for token-level ratios (GRPO,
// DAPO, Dr.GRPO, DLER, CAMPO); GSPO's sequence ratio is not covered. CPU reference here; the CUDA
// kernel is in grpo_loss_cuda.h. Torch-free: raw pointers over N tokens (a [B, T] chunk flattened).
#pragma once

#include <cstdint>

namespace chainrl::kernels {

struct GrpoLossParams {
  float clip_low = 0.2f;         // ε_low: the ratio is clipped to [1 − ε_low, 1 + ε_high]
  float clip_high = 0.2f;        // ε_high
  float dual_clip_c = 0.f;       // > 0: for Â < 0 the loss is min(L_clip, −Â·c)
  float log_ratio_clamp = 20.f;  // r = exp(clamp(ℓ − ℓ_old, ±clamp))
  float kl_coef = 0.f;           // > 0: + β·KL(ℓ, ℓ_ref) per token (needs ref_logprob)
  bool kl_k3_plus = false;       // k3's value with k2's gradient (ℓ − ℓ_ref) instead of k3's
  float kl_clamp = 10.f;         // k3 is clamped to [−kl_clamp, kl_clamp]
  float entropy_coef = 0.f;      // > 0: − coef·H per token (needs entropy)
};

// Sums over the masked tokens, as PolicyLossStats: tokens, clipped, dual-clipped, Σ r,
// Σ (ℓ_old − ℓ), Σ KL (when ref_logprob is given), Σ H (when entropy is given).
struct GrpoLossStats {
  double tokens = 0, clipped = 0, dual_clipped = 0, ratio_sum = 0, approx_kl_sum = 0,
         ref_kl_sum = 0, entropy_sum = 0;
};
inline constexpr int kGrpoLossStatCount = 7;  // the fields above, in order, as doubles

// For each token n of N: with m = mask[n] != 0, ℓ = m ? logprob[n] : 0 (likewise ℓ_old, ℓ_ref,
// H), A = advantage[n], w = weight[n] (the sequence's normaliser weight):
//   x = clamp(ℓ − ℓ_old, ±log_ratio_clamp), r = e^x
//   pg = max(−A·r, −A·clamp(r, 1 − ε_low, 1 + ε_high)); with c > 0 and A < 0: pg = min(pg, −A·c)
//   L_n = m·w·(pg + β·k3(ℓ, ℓ_ref) − coef·H)
// loss[n] = L_n; grad_logprob[n] = ∂L_n/∂ℓ and grad_entropy[n] = ∂L_n/∂H with autograd's rules
// at the kinks (a tie of max/min splits the gradient; a clamp passes it at its bounds).
// ref_logprob may be null when kl_coef = 0, entropy when entropy_coef = 0 (they then add nothing
// to the statistics either); grad_entropy and stats may be null. Single-threaded, float64.
void GrpoLossReference(const float* logprob, const float* old_logprob, const float* ref_logprob,
                       const float* entropy, const float* advantage, const float* weight,
                       const uint8_t* mask, int64_t n, const GrpoLossParams& params, float* loss,
                       float* grad_logprob, float* grad_entropy, GrpoLossStats* stats);

}  // namespace chainrl::kernels
