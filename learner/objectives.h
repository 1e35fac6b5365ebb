// Token-level RL and SFT objectives over tensors: GRPO / Dr.GRPO / DAPO / GSPO policy losses with
// clip-higher, dual-clip, k3 KL and entropy bonus, in a chunk-additive form for streaming backprop
// (docs/ALGORITHMS.md §1.1–§1.8, §6.1), plus SFT cross-entropy, logprob mismatch and UloRL's DMMPT
// mask (§2.1–§2.4). Papers: DeepSeekMath arXiv 2402.03300 Eq. 3–4, DAPO arXiv 2503.14476 §3.1 and
// §3.3, Dr.GRPO arXiv 2503.20783, GSPO arXiv 2507.18071 §4, dual clip arXiv 1912.09729, UloRL
// arXiv 2507.19766.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace chainrl::learner {

// How per-token losses are reduced (verl `agg_loss`). Every mode is Σ_{i,t} w_i·m_{i,t}·L_{i,t}
// with a per-sequence weight w_i fixed by global counts, so the loss sums exactly over chunks.
enum class LossAggMode {
  kTokenMean,           // "token-mean": Σ m L / Σ_i |o_i|                     (DAPO)
  kSeqMeanTokenMean,    // "seq-mean-token-mean": (1/N) Σ_i (1/|o_i|) Σ_t m L  (GRPO, GSPO)
  kSeqMeanTokenSumNorm  // "seq-mean-token-sum-norm": Σ m L / L_max          (Dr.GRPO)
};
Result<LossAggMode> ParseLossAggMode(std::string_view name);
const char* LossAggModeName(LossAggMode mode);

// Which policy-gradient surrogate: per-token ratio (PPO/GRPO/DAPO) or sequence ratio (GSPO).
enum class PolicyLossKind { kVanilla, kGspo };
Result<PolicyLossKind> ParsePolicyLossKind(std::string_view name);  // "vanilla" | "gspo"
const char* PolicyLossKindName(PolicyLossKind kind);

// KL estimator against the reference policy. "k3" (alias "low_var_kl"): e^x − x − 1 with
// x = ℓ_ref − ℓ. "k3+": same value, gradient of ½(ℓ − ℓ_ref)² (straight-through).
enum class KlEstimator { kK3, kK3Plus };
Result<KlEstimator> ParseKlEstimator(std::string_view name);
const char* KlEstimatorName(KlEstimator estimator);

// Options of the GRPO-family token loss; one field per TOML key. Defaults are GRPO's symmetric
// clip with no KL; DAPO is clip_ratio_high(0.28), token-mean; Dr.GRPO is seq-mean-token-sum-norm
// with loss_scale_factor = generate_max_length; GSPO is policy_loss(kGspo) with 3e-4 / 4e-4.
// Rollout correction (docs/ALGORITHMS.md §2.4): the sampler's policy (the actor's logprobs
// ℓ_rollout) is not the learner's policy before the update (the proximal policy, recomputed:
// ℓ_old), through numerics (dtype, kernels) and through staleness. Per token ρ_t = exp(ℓ_old −
// ℓ_rollout); the policy-gradient term of each token is multiplied by a detached weight built from
// ρ: importance sampling truncated at a cap (per token, or the sequence's product for all its
// tokens) times a mask that drops tokens or whole sequences whose ratio is outside [low, high] (per
// token, the sequence's product, or its geometric mean). The PPO ratio itself is taken against
// ℓ_old.
enum class RolloutIsLevel { kNone, kToken, kSequence };
enum class RolloutMaskLevel { kNone, kToken, kSequence, kGeometric };
struct RolloutCorrection {
  RolloutIsLevel is = RolloutIsLevel::kNone;
  double is_cap = 2.0;  // C: w = min(ρ, C)
  RolloutMaskLevel mask = RolloutMaskLevel::kNone;
  double mask_low = 0.5, mask_high = 2.0;  // kept when low <= ratio <= high
  bool enabled() const { return is != RolloutIsLevel::kNone || mask != RolloutMaskLevel::kNone; }
};
Result<RolloutIsLevel> ParseRolloutIsLevel(std::string_view s);      // none, token, sequence
Result<RolloutMaskLevel> ParseRolloutMaskLevel(std::string_view s);  // + geometric

// The [B,T] detached weights of `correction` for rows whose response tokens are `mask` (whole
// sequences: the sequence levels need every token of a row), 0 outside the mask. REQUIRES: shapes
// agree.
torch::Tensor RolloutCorrectionWeights(const torch::Tensor& old_logprobs,
                                       const torch::Tensor& rollout_logprobs,
                                       const torch::Tensor& mask,
                                       const RolloutCorrection& correction);

struct PolicyLossOptions {
#define CHAINRL_LEARNER_ARG(type, name, init) \
  type name = init;                           \
  PolicyLossOptions& set_##name(type v) {     \
    name = v;                                 \
    return *this;                             \
  }
  CHAINRL_LEARNER_ARG(PolicyLossKind, policy_loss, PolicyLossKind::kVanilla)
  CHAINRL_LEARNER_ARG(double, clip_ratio_low, 0.2)   // ε_low: ratio floor 1 − ε_low (1: none)
  CHAINRL_LEARNER_ARG(double, clip_ratio_high, 0.2)  // ε_high: ratio ceiling 1 + ε_high (DAPO 0.28)
  CHAINRL_LEARNER_ARG(double, dual_clip_c,
                      0.0)  // dual-clip c for Â < 0; 0 disables, else > 1 (verl 3)
  CHAINRL_LEARNER_ARG(double, kl_coef, 0.0)  // β; the reference logprobs are needed when > 0
  CHAINRL_LEARNER_ARG(KlEstimator, kl_estimator, KlEstimator::kK3)
  CHAINRL_LEARNER_ARG(double, entropy_coef,
                      0.0)  // loss −= entropy_coef · H (aggregated like the pg)
  CHAINRL_LEARNER_ARG(LossAggMode, loss_agg_mode,
                      LossAggMode::kTokenMean)  // forced seq-mean for GSPO
  // L_max of seq-mean-token-sum-norm; 0 means the mask's time dimension (verl's default).
  CHAINRL_LEARNER_ARG(double, loss_scale_factor, 0.0)
  CHAINRL_LEARNER_ARG(double, log_ratio_clamp, 20.0)     // r = exp(clamp(ℓ − ℓ_old, ±20))
  CHAINRL_LEARNER_ARG(double, gspo_log_ratio_max, 10.0)  // clamp of GSPO's token log-ratio (upper)
  CHAINRL_LEARNER_ARG(double, kl_clamp, 10.0)            // k3 values are clamped to [−10, 10]
  CHAINRL_LEARNER_ARG(RolloutCorrection, rollout_correction, RolloutCorrection())
#undef CHAINRL_LEARNER_ARG
};
// InvalidArgument naming the key for out-of-range values (e.g. "clip_ratio_low must be in [0,1]").
Status ValidatePolicyLossOptions(const PolicyLossOptions& options);

// Counts over the whole mini-batch that fix the per-sequence token weights. Computed once from the
// full mask, before any chunk. Under data parallelism, all-reduce `total_tokens` and `num_seqs`
// (sum) and `max_len` (maximum) across ranks and pass them as `global` so every rank divides by the
// global counts.
struct GlobalCounts {
  double total_tokens = 0;  // Σ_i |o_i| over every rank
  double num_seqs = 0;      // number of sequences with |o_i| > 0 over every rank
  double max_len = 0;       // the longest padded length over every rank (0: the mask's own)
};
struct Normalisers {
  LossAggMode mode = LossAggMode::kTokenMean;  // effective mode (seq-mean-token-mean for GSPO)
  torch::Tensor seq_lengths;                   // [B] float64: |o_i| of each full sequence
  torch::Tensor seq_weights;                   // [B] float64: w_i; 0 for empty sequences
  double total_tokens = 0;                     // Σ |o_i| used in token-mean
  double num_seqs = 0;                         // N used in seq-mean-token-mean
  double max_len = 0;                          // L_max used in seq-mean-token-sum-norm
};
// REQUIRES: mask is [B,T] over the full sequences (0/1, any dtype). A mini-batch with no response
// token gets all-zero weights (the loss is then exactly 0, with zero gradient).
Normalisers ComputeNormalisers(const torch::Tensor& mask, const PolicyLossOptions& options,
                               std::optional<GlobalCounts> global = std::nullopt);

// GSPO's per-sequence log s_i = (1/max(|o_i|,1)) Σ_t m(ℓ − ℓ_old), detached, [B] float64. In
// streaming use it must be computed from the full sequences (a no-grad pass over all chunks:
// accumulate Σ_t m(ℓ − ℓ_old) per chunk with GspoLogRatioSums and divide by the lengths).
torch::Tensor GspoSequenceLogRatio(const torch::Tensor& logprobs, const torch::Tensor& old_logprobs,
                                   const torch::Tensor& mask);
torch::Tensor GspoLogRatioSums(const torch::Tensor& logprobs, const torch::Tensor& old_logprobs,
                               const torch::Tensor& mask);

// One chunk (or the whole) of a mini-batch for the GRPO-family loss. All [B,T] tensors cover the
// same token positions. `old_logprobs` is whichever behaviour policy the ratio is taken against:
// the actor's stored per-token logprobs (off-policy correction against the sampler) or logprobs
// recomputed by the learner before the update (POIS, verl's recompute); the loss does not care.
struct TokenLossInputs {
  torch::Tensor logprobs;      // [B,T] ℓ, requires grad
  torch::Tensor old_logprobs;  // [B,T] ℓ_old (no grad)
  torch::Tensor ref_logprobs;  // [B,T] ℓ_ref; REQUIRED when kl_coef > 0, else may be undefined
  torch::Tensor mask;          // [B,T] 1 for response tokens that enter the loss (may be the
                               // response mask times a DMMPT keep mask; normalisers unaffected)
  torch::Tensor advantages;    // [B] per sequence or [B,T] per token
  torch::Tensor entropy;       // [B,T] full-vocabulary entropy; REQUIRED when entropy_coef > 0
  torch::Tensor rollout_logprobs;    // [B,T] optional: the sampler's logprobs, for the mismatch
  // [B,T] optional: RolloutCorrectionWeights of the whole rows, sliced like the chunk; multiplies
  // each token's policy-gradient term (not the KL or entropy terms).
  torch::Tensor rollout_weights;
  torch::Tensor gspo_seq_log_ratio;  // [B] REQUIRED for GSPO: GspoSequenceLogRatio(full)
};

// Additive statistics: Merge() the stats of every chunk, then read the means.
struct PolicyLossStats {
  double tokens = 0;          // masked tokens seen
  double clipped_tokens = 0;  // tokens whose clipped branch was active (clip fraction)
  double dual_clipped_tokens = 0;
  double ratio_sum = 0;         // Σ r (GSPO: Σ s_{i,t})
  double approx_kl_sum = 0;     // Σ (ℓ_old − ℓ): k1 estimate of KL(old‖new)
  double ref_kl_sum = 0;        // Σ k3 KL to the reference (when given)
  double entropy_sum = 0;       // Σ H (when given)
  double mismatch_tokens = 0;   // tokens with rollout logprobs
  double mismatch_abs_sum = 0;  // Σ |ℓ_old − ℓ_rollout|
  double mismatch_abs_max = 0;  // max |ℓ_old − ℓ_rollout|
  double mismatch_k3_sum = 0;   // Σ k3(ℓ_rollout, ℓ_old)
  double correction_weight_sum = 0;  // Σ rollout-correction weight over masked tokens (when on)
  double correction_zeroed = 0;      // masked tokens whose correction weight is 0
  void Merge(const PolicyLossStats& other);
  double clip_fraction() const { return tokens > 0 ? clipped_tokens / tokens : 0; }
  double ratio_mean() const { return tokens > 0 ? ratio_sum / tokens : 0; }
  double approx_kl() const { return tokens > 0 ? approx_kl_sum / tokens : 0; }
  double ref_kl() const { return tokens > 0 ? ref_kl_sum / tokens : 0; }
  double entropy_mean() const { return tokens > 0 ? entropy_sum / tokens : 0; }
};

struct TokenLossOutput {
  torch::Tensor loss;  // scalar with grad: Σ_{i,t in chunk} w_i m L_{i,t}
  PolicyLossStats stats;
};

// The chunk's share of the loss. Σ over disjoint chunks of `loss` equals the loss of the whole
// mini-batch computed with the same Normalisers. REQUIRES: shapes agree, the tensors named
// REQUIRED above are given (checked; a violation is a bug in the caller).
TokenLossOutput PolicyLoss(const TokenLossInputs& chunk, const Normalisers& norm,
                           const PolicyLossOptions& options);

// The pieces PolicyLoss is made of, for objectives with another per-token surrogate (CISPO,
// learner/cispo.cc). MaskedTokenTerms checks the shapes (a violation is a bug in the caller) and
// zeroes every position outside the mask, so no NaN leaks through a 0·NaN product; `adv` is
// broadcastable to [B,T].
struct TokenTerms {
  torch::Tensor keep;  // [B,T] bool: mask != 0
  torch::Tensor m;     // [B,T] keep in the logprobs' dtype
  torch::Tensor lp;    // [B,T] ℓ (with gradient), 0 outside the mask
  torch::Tensor old;   // [B,T] ℓ_old, 0 outside the mask
  torch::Tensor adv;   // [B,1] or [B,T]
};
TokenTerms MaskedTokenTerms(const TokenLossInputs& chunk, const Normalisers& norm);
// A surrogate's per-token loss L^pg and what the statistics count.
struct Surrogate {
  torch::Tensor per_token;     // [B,T]
  torch::Tensor ratio;         // [B,T] the importance ratio (ratio_mean)
  torch::Tensor clipped;       // [B,T] bool: a clip bound was active (clip_fraction)
  torch::Tensor dual_clipped;  // [B,T] bool, or undefined
};
// L^pg + β·KL (§1.6) − c_H·H (§1.7), weighted by the normalisers (§1.8) and summed, with the
// chunk's statistics, the logprob mismatch included (§2.2).
TokenLossOutput CompleteTokenLoss(const TokenLossInputs& chunk, const Normalisers& norm,
                                  const PolicyLossOptions& options, const TokenTerms& terms,
                                  const Surrogate& surrogate);

// CISPO's chunk loss (learner/cispo.cc, docs/ALGORITHMS.md §1.11): every token keeps its
// gradient, weighted by its clipped, detached importance ratio,
//   L_{i,t} = −sg(clip(r_{i,t}, 1 − ε_low, 1 + ε_high)) · Â_i · ℓ_{i,t},
// plus the KL and entropy terms and the aggregation of PolicyLoss. `clipped_tokens` counts the
// tokens whose weight was cut. options.policy_loss and dual_clip_c are not used.
TokenLossOutput CispoLoss(const TokenLossInputs& chunk, const Normalisers& norm,
                          const PolicyLossOptions& options);

// k3 KL per token, x = clamp(ℓ_ref − ℓ, ±20), value clamped to ±kl_clamp; k3+ as above.
torch::Tensor KlPenalty(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs,
                        KlEstimator estimator, double kl_clamp = 10.0);

// Train-vs-rollout logprob mismatch over masked tokens: mean |Δ|, max |Δ| and mean k3 KL of the
// trainer's distribution from the sampler's (x = ℓ_rollout − ℓ_train). Mergeable over chunks.
struct LogprobMismatch {
  double tokens = 0, abs_sum = 0, abs_max = 0, k3_sum = 0;
  double mean_abs() const { return tokens > 0 ? abs_sum / tokens : 0; }
  double k3_kl() const { return tokens > 0 ? k3_sum / tokens : 0; }
  void Merge(const LogprobMismatch& o);
};
LogprobMismatch ComputeLogprobMismatch(const torch::Tensor& train_logprobs,
                                       const torch::Tensor& rollout_logprobs,
                                       const torch::Tensor& mask);

// Per-token log-probabilities of `targets` under softmax(logits / temperature): [B,T,V] → [B,T].
// Without a gradient to keep, CUDA logits go to the fused kernel (kernels/torch_ops.h).
torch::Tensor TokenLogprobs(const torch::Tensor& logits, const torch::Tensor& targets,
                            double temperature = 1.0);
// Full-vocabulary entropy −Σ_j p_j log p_j of softmax(logits / temperature): [B,T,V] → [B,T].
// Likewise served by the fused kernel on CUDA when no gradient is kept.
torch::Tensor TokenEntropy(const torch::Tensor& logits, double temperature = 1.0);

// SFT: Σ_{tokens in chunk} −m·ℓ / total_tokens, where total_tokens is the global count of
// response tokens (labels ≠ −100) of the whole (accumulated) batch. Summing chunks gives the mean
// token cross-entropy. total_tokens == 0 gives an exact 0 loss.
torch::Tensor SftLoss(const torch::Tensor& logprobs, const torch::Tensor& mask,
                      double total_tokens);

// UloRL DMMPT: drop token (i,t) from the loss iff R_i ≥ positive_reward, p(o_{i,t}) ≥ tau and the
// sample's mean entropy H̄_i < sigma. The normalisers keep counting the dropped tokens.
// [U] UloRL does not say which policy's p is meant. Default: the old policy's (ℓ_old), so the mask
// is fixed before the update and identical across the PPO epochs and chunks of one mini-batch;
// `prob_source = kCurrent` uses sg[ℓ] instead.
enum class MasteredProbSource { kOld, kCurrent };
Result<MasteredProbSource> ParseMasteredProbSource(std::string_view name);  // "old" | "current"
struct MasteredTokenMaskOptions {
  double tau = 0.99;             // mastered_token_prob_threshold
  double sigma = 0.2;            // mastered_entropy_threshold (mean entropy of the sample)
  double positive_reward = 1.0;  // samples with R ≥ this count as positive
  MasteredProbSource prob_source = MasteredProbSource::kOld;
  MasteredTokenMaskOptions& set_tau(double v) {
    tau = v;
    return *this;
  }
  MasteredTokenMaskOptions& set_sigma(double v) {
    sigma = v;
    return *this;
  }
  MasteredTokenMaskOptions& set_positive_reward(double v) {
    positive_reward = v;
    return *this;
  }
  MasteredTokenMaskOptions& set_prob_source(MasteredProbSource v) {
    prob_source = v;
    return *this;
  }
};
// Keep mask [B,T] (1 keep, 0 drop), same dtype as `mask`. `logprobs` is ℓ_old or ℓ per
// options.prob_source (the caller passes both; the unused one may be undefined).
torch::Tensor MasteredPositiveTokenKeepMask(const torch::Tensor& old_logprobs,
                                            const torch::Tensor& logprobs,
                                            const torch::Tensor& mask, const torch::Tensor& rewards,
                                            const torch::Tensor& seq_mean_entropy,
                                            const MasteredTokenMaskOptions& options);

}  // namespace chainrl::learner
