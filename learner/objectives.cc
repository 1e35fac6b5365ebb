// GRPO-family token losses, SFT, KL, logprob mismatch and DMMPT masking
// (docs/ALGORITHMS.md §1.1–§1.8, §2.1–§2.4).
#include "learner/objectives.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/check.h"
#include "kernels/torch_ops.h"
#include "learner/config_keys.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;

Status UnknownName(std::string_view what, std::string_view got, std::string_view valid) {
  return InvalidArgument(std::string(what) + ": unknown value \"" + std::string(got) +
                         "\"; valid values: " + std::string(valid));
}

// Positions outside the mask may hold anything (padding, −inf); replace them by 0 so that no NaN
// can leak into the loss or its gradient through a 0·NaN product.
Tensor Masked(const Tensor& t, const Tensor& keep) {
  return torch::where(keep, t, torch::zeros_like(t));
}

void CheckSameShape(const Tensor& a, const Tensor& b, const char* name) {
  CHAINRL_CHECK(a.defined() && b.defined(), name << " is undefined");
  CHAINRL_CHECK(a.sizes() == b.sizes(),
                name << " has shape " << b.sizes() << ", expected " << a.sizes());
}

}  // namespace

Result<LossAggMode> ParseLossAggMode(std::string_view name) {
  if (name == "token-mean") return LossAggMode::kTokenMean;
  if (name == "seq-mean-token-mean") return LossAggMode::kSeqMeanTokenMean;
  if (name == "seq-mean-token-sum-norm") return LossAggMode::kSeqMeanTokenSumNorm;
  return UnknownName("loss_agg_mode", name,
                     "token-mean, seq-mean-token-mean, seq-mean-token-sum-norm");
}

const char* LossAggModeName(LossAggMode mode) {
  switch (mode) {
    case LossAggMode::kTokenMean:
      return "token-mean";
    case LossAggMode::kSeqMeanTokenMean:
      return "seq-mean-token-mean";
    case LossAggMode::kSeqMeanTokenSumNorm:
      return "seq-mean-token-sum-norm";
  }
  return "?";
}

Result<PolicyLossKind> ParsePolicyLossKind(std::string_view name) {
  if (name == "vanilla") return PolicyLossKind::kVanilla;
  if (name == "gspo") return PolicyLossKind::kGspo;
  return UnknownName("policy_loss", name, "vanilla, gspo");
}

const char* PolicyLossKindName(PolicyLossKind kind) {
  return kind == PolicyLossKind::kGspo ? "gspo" : "vanilla";
}

Result<KlEstimator> ParseKlEstimator(std::string_view name) {
  if (name == "k3" || name == "low_var_kl") return KlEstimator::kK3;
  if (name == "k3+" || name == "low_var_kl+") return KlEstimator::kK3Plus;
  return UnknownName("kl_estimator", name, "k3 (alias low_var_kl), k3+ (alias low_var_kl+)");
}

const char* KlEstimatorName(KlEstimator estimator) {
  return estimator == KlEstimator::kK3Plus ? "k3+" : "k3";
}

Result<MasteredProbSource> ParseMasteredProbSource(std::string_view name) {
  if (name == "old") return MasteredProbSource::kOld;
  if (name == "current") return MasteredProbSource::kCurrent;
  return UnknownName("mastered_token_prob_source", name, "old, current");
}

Status ValidatePolicyLossOptions(const PolicyLossOptions& o) {
  auto bad = [](const std::string& key, double v, const std::string& want) {
    return InvalidArgument(key + " = " + std::to_string(v) + ": must be " + want);
  };
  if (!(o.clip_ratio_low >= 0 && o.clip_ratio_low <= 1))
    return bad("clip_ratio_low", o.clip_ratio_low, "in [0, 1] (1: no lower bound)");
  if (!(o.clip_ratio_high >= 0)) return bad("clip_ratio_high", o.clip_ratio_high, ">= 0");
  if (!(o.dual_clip_c == 0 || o.dual_clip_c > 1))
    return bad("dual_clip_c", o.dual_clip_c, "0 (off) or > 1");
  if (!(o.kl_coef >= 0)) return bad("kl_coef", o.kl_coef, ">= 0");
  if (!(o.entropy_coef >= 0)) return bad("entropy_coef", o.entropy_coef, ">= 0");
  if (!(o.loss_scale_factor >= 0))
    return bad("loss_scale_factor", o.loss_scale_factor, ">= 0 (0 = the mask's length)");
  if (!(o.log_ratio_clamp > 0)) return bad("log_ratio_clamp", o.log_ratio_clamp, "> 0");
  if (!(o.kl_clamp > 0)) return bad("kl_clamp", o.kl_clamp, "> 0");
  const RolloutCorrection& rc = o.rollout_correction;
  if (!(rc.is_cap >= 1)) return bad("rollout_is_cap", rc.is_cap, ">= 1");
  if (!(rc.mask_low >= 0 && rc.mask_low <= 1))
    return bad("rollout_mask_low", rc.mask_low, "in [0, 1]");
  if (!(rc.mask_high >= 1 && std::isfinite(rc.mask_high)))
    return bad("rollout_mask_high", rc.mask_high, ">= 1 and finite");
  return Status::Ok();
}

Normalisers ComputeNormalisers(const Tensor& mask, const PolicyLossOptions& options,
                               std::optional<GlobalCounts> global) {
  CHAINRL_CHECK(mask.defined() && mask.dim() == 2, "mask must be [B,T]");
  torch::NoGradGuard no_grad;
  Normalisers n;
  n.mode = options.policy_loss == PolicyLossKind::kGspo ? LossAggMode::kSeqMeanTokenMean
                                                        : options.loss_agg_mode;
  n.seq_lengths = (mask != 0).to(torch::kFloat64).sum(1);
  n.total_tokens = global ? global->total_tokens : n.seq_lengths.sum().item<double>();
  n.num_seqs = global ? global->num_seqs : (n.seq_lengths > 0).sum().item<double>();
  n.max_len = options.loss_scale_factor > 0   ? options.loss_scale_factor
              : global && global->max_len > 0 ? global->max_len
                                              : static_cast<double>(mask.size(1));
  const Tensor nonempty = (n.seq_lengths > 0).to(torch::kFloat64);
  switch (n.mode) {
    case LossAggMode::kTokenMean:
      n.seq_weights = n.total_tokens > 0 ? nonempty / n.total_tokens : torch::zeros_like(nonempty);
      break;
    case LossAggMode::kSeqMeanTokenMean:
      // Empty sequences are excluded from N and get weight 0 (no 1/0).
      n.seq_weights = n.num_seqs > 0 ? nonempty / (n.num_seqs * n.seq_lengths.clamp_min(1.0))
                                     : torch::zeros_like(nonempty);
      break;
    case LossAggMode::kSeqMeanTokenSumNorm:
      n.seq_weights = nonempty / n.max_len;
      break;
  }
  return n;
}

Tensor GspoLogRatioSums(const Tensor& logprobs, const Tensor& old_logprobs, const Tensor& mask) {
  torch::NoGradGuard no_grad;
  CheckSameShape(logprobs, old_logprobs, "old_logprobs");
  CheckSameShape(logprobs, mask, "mask");
  const Tensor keep = mask != 0;
  const Tensor d =
      Masked(logprobs.detach().to(torch::kFloat64) - old_logprobs.to(torch::kFloat64), keep);
  return d.sum(1);
}

Tensor GspoSequenceLogRatio(const Tensor& logprobs, const Tensor& old_logprobs,
                            const Tensor& mask) {
  torch::NoGradGuard no_grad;
  // |o_i| = 0 uses a length of 1 (docs/ALGORITHMS.md §1.4); the sum is then 0 anyway.
  const Tensor len = (mask != 0).to(torch::kFloat64).sum(1).clamp_min(1.0);
  return GspoLogRatioSums(logprobs, old_logprobs, mask) / len;
}

Tensor KlPenalty(const Tensor& logprobs, const Tensor& ref_logprobs, KlEstimator estimator,
                 double kl_clamp) {
  const Tensor x = (ref_logprobs - logprobs).clamp(-20.0, 20.0);
  const Tensor k3 = (torch::exp(x) - x - 1.0).clamp(-kl_clamp, kl_clamp);
  if (estimator == KlEstimator::kK3) return k3;
  const Tensor k2 = 0.5 * (logprobs - ref_logprobs).pow(2);
  return k3.detach() + (k2 - k2.detach());
}

void PolicyLossStats::Merge(const PolicyLossStats& o) {
  tokens += o.tokens;
  clipped_tokens += o.clipped_tokens;
  dual_clipped_tokens += o.dual_clipped_tokens;
  ratio_sum += o.ratio_sum;
  approx_kl_sum += o.approx_kl_sum;
  ref_kl_sum += o.ref_kl_sum;
  entropy_sum += o.entropy_sum;
  mismatch_tokens += o.mismatch_tokens;
  mismatch_abs_sum += o.mismatch_abs_sum;
  mismatch_abs_max = std::max(mismatch_abs_max, o.mismatch_abs_max);
  mismatch_k3_sum += o.mismatch_k3_sum;
  correction_weight_sum += o.correction_weight_sum;
  correction_zeroed += o.correction_zeroed;
}

Result<RolloutIsLevel> ParseRolloutIsLevel(std::string_view s) {
  if (s == "none") return RolloutIsLevel::kNone;
  if (s == "token") return RolloutIsLevel::kToken;
  if (s == "sequence") return RolloutIsLevel::kSequence;
  return InvalidArgument("rollout_is: '" + std::string(s) + "' is not none, token or sequence");
}

Result<RolloutMaskLevel> ParseRolloutMaskLevel(std::string_view s) {
  if (s == "none") return RolloutMaskLevel::kNone;
  if (s == "token") return RolloutMaskLevel::kToken;
  if (s == "sequence") return RolloutMaskLevel::kSequence;
  if (s == "geometric") return RolloutMaskLevel::kGeometric;
  return InvalidArgument("rollout_mask: '" + std::string(s) +
                         "' is not none, token, sequence or geometric");
}

Tensor RolloutCorrectionWeights(const Tensor& old_logprobs, const Tensor& rollout_logprobs,
                                const Tensor& mask, const RolloutCorrection& c) {
  CheckSameShape(old_logprobs, rollout_logprobs, "rollout_logprobs");
  CheckSameShape(old_logprobs, mask, "mask");
  torch::NoGradGuard no_grad;
  const Tensor keep = mask != 0;
  const Tensor m = keep.to(torch::kFloat64);
  // log ρ_t, 0 outside the mask (no NaN or inf from padding leaks into the sums).
  const Tensor log_rho =
      Masked(old_logprobs.to(torch::kFloat64) - rollout_logprobs.to(torch::kFloat64), keep);
  const Tensor seq_sum = log_rho.sum(1, /*keepdim=*/true);           // [B,1]
  const Tensor seq_len = m.sum(1, /*keepdim=*/true).clamp_min(1.0);  // [B,1]
  Tensor w = torch::ones_like(log_rho);
  switch (c.is) {
    case RolloutIsLevel::kNone:
      break;
    case RolloutIsLevel::kToken:  // min(ρ_t, C), in log space so a huge ratio cannot overflow
      w = torch::exp(log_rho.clamp_max(std::log(c.is_cap)));
      break;
    case RolloutIsLevel::kSequence:  // min(Π_t ρ_t, C) for every token of the row
      w = torch::exp(seq_sum.clamp_max(std::log(c.is_cap))).expand_as(log_rho);
      break;
  }
  const double lo =
      c.mask_low > 0 ? std::log(c.mask_low) : -std::numeric_limits<double>::infinity();
  const double hi = std::log(c.mask_high);
  Tensor kept;  // [B,T] or [B,1] bool
  switch (c.mask) {
    case RolloutMaskLevel::kNone:
      break;
    case RolloutMaskLevel::kToken:
      kept = (log_rho >= lo) & (log_rho <= hi);
      break;
    case RolloutMaskLevel::kSequence:
      kept = (seq_sum >= lo) & (seq_sum <= hi);
      break;
    case RolloutMaskLevel::kGeometric: {
      const Tensor geo = seq_sum / seq_len;  // log of the geometric mean of ρ over the row
      kept = (geo >= lo) & (geo <= hi);
      break;
    }
  }
  if (kept.defined()) w = w * kept.to(torch::kFloat64);
  return (w * m).to(old_logprobs.scalar_type());
}

void LogprobMismatch::Merge(const LogprobMismatch& o) {
  tokens += o.tokens;
  abs_sum += o.abs_sum;
  abs_max = std::max(abs_max, o.abs_max);
  k3_sum += o.k3_sum;
}

LogprobMismatch ComputeLogprobMismatch(const Tensor& train_logprobs, const Tensor& rollout_logprobs,
                                       const Tensor& mask) {
  torch::NoGradGuard no_grad;
  CheckSameShape(train_logprobs, rollout_logprobs, "rollout_logprobs");
  CheckSameShape(train_logprobs, mask, "mask");
  const Tensor keep = mask != 0;
  const Tensor d = Masked(
      train_logprobs.detach().to(torch::kFloat64) - rollout_logprobs.to(torch::kFloat64), keep);
  const Tensor absd = d.abs();
  // k3 of KL(train ‖ rollout) per token: x = ℓ_rollout − ℓ_train = −d.
  const Tensor x = (-d).clamp(-20.0, 20.0);
  const Tensor k3 = Masked(torch::exp(x) - x - 1.0, keep);
  const Tensor packed =
      torch::stack({keep.to(torch::kFloat64).sum(), absd.sum(),
                    absd.numel() > 0 ? absd.max() : torch::zeros({}, absd.options()), k3.sum()})
          .cpu();
  const double* p = packed.data_ptr<double>();
  return LogprobMismatch{p[0], p[1], p[2], p[3]};
}

TokenTerms MaskedTokenTerms(const TokenLossInputs& in, const Normalisers& norm) {
  const Tensor& lp_raw = in.logprobs;
  CHAINRL_CHECK(lp_raw.defined() && lp_raw.dim() == 2, "logprobs must be [B,T]");
  CheckSameShape(lp_raw, in.old_logprobs, "old_logprobs");
  CheckSameShape(lp_raw, in.mask, "mask");
  const int64_t batch = lp_raw.size(0);
  CHAINRL_CHECK(norm.seq_weights.defined() && norm.seq_weights.size(0) == batch,
                "normalisers cover " << (norm.seq_weights.defined() ? norm.seq_weights.size(0) : 0)
                                     << " sequences, chunk has " << batch);
  CHAINRL_CHECK(in.advantages.defined(), "advantages are undefined");
  const auto dtype = lp_raw.scalar_type();
  TokenTerms t;
  t.keep = in.mask != 0;
  t.m = t.keep.to(dtype);
  t.lp = Masked(lp_raw, t.keep);
  t.old = Masked(in.old_logprobs.to(dtype), t.keep);
  t.adv = in.advantages.to(dtype);
  if (t.adv.dim() == 1) {
    CHAINRL_CHECK(t.adv.size(0) == batch, "advantages have " << t.adv.size(0) << " rows");
    t.adv = t.adv.unsqueeze(1);
  } else {
    CheckSameShape(lp_raw, t.adv, "advantages");
  }
  return t;
}

TokenLossOutput PolicyLoss(const TokenLossInputs& in, const Normalisers& norm,
                           const PolicyLossOptions& options) {
  const TokenTerms t = MaskedTokenTerms(in, norm);
  const Tensor& lp = t.lp;
  const Tensor& adv = t.adv;
  Tensor log_ratio;
  if (options.policy_loss == PolicyLossKind::kGspo) {
    const int64_t batch = lp.size(0);
    CHAINRL_CHECK(in.gspo_seq_log_ratio.defined() && in.gspo_seq_log_ratio.size(0) == batch,
                  "GSPO needs gspo_seq_log_ratio [B] from the full sequences");
    // log s_{i,t} = sg[log s_i] + ℓ − sg[ℓ]: the value is the sequence ratio, the gradient per
    // token.
    log_ratio =
        (in.gspo_seq_log_ratio.to(lp.scalar_type()).detach().unsqueeze(1) + lp - lp.detach())
            .clamp_max(options.gspo_log_ratio_max);
  } else {
    log_ratio = (lp - t.old).clamp(-options.log_ratio_clamp, options.log_ratio_clamp);
  }
  Surrogate s;
  s.ratio = torch::exp(log_ratio);
  const Tensor pg1 = -adv * s.ratio;
  const Tensor pg2 =
      -adv * s.ratio.clamp(1.0 - options.clip_ratio_low, 1.0 + options.clip_ratio_high);
  s.per_token = torch::maximum(pg1, pg2);
  s.clipped = pg2 > pg1;
  if (options.dual_clip_c > 0) {
    // verl dual-clip: for Â < 0 the loss is min(L_clip, −Â·c).
    const Tensor pg3 = -adv * options.dual_clip_c;
    const Tensor negative = adv < 0;
    s.dual_clipped = negative & (pg3 < s.per_token);
    s.per_token = torch::where(negative, torch::minimum(s.per_token, pg3), s.per_token);
  }
  return CompleteTokenLoss(in, norm, options, t, s);
}

TokenLossOutput CompleteTokenLoss(const TokenLossInputs& in, const Normalisers& norm,
                                  const PolicyLossOptions& options, const TokenTerms& t,
                                  const Surrogate& s) {
  const Tensor& lp_raw = in.logprobs;
  const auto dtype = lp_raw.scalar_type();
  const Tensor& keep = t.keep;
  const Tensor& m = t.m;
  Tensor per_token = s.per_token;
  Tensor correction;
  if (in.rollout_weights.defined()) {
    CheckSameShape(lp_raw, in.rollout_weights, "rollout_weights");
    correction = Masked(in.rollout_weights.to(dtype).detach(), keep);
    per_token = per_token * correction;
  }
  Tensor kl;
  if (in.ref_logprobs.defined()) {
    CheckSameShape(lp_raw, in.ref_logprobs, "ref_logprobs");
    kl = KlPenalty(t.lp, Masked(in.ref_logprobs.to(dtype), keep), options.kl_estimator,
                   options.kl_clamp);
  }
  if (options.kl_coef > 0) {
    CHAINRL_CHECK(kl.defined(), "kl_coef > 0 needs ref_logprobs");
    per_token = per_token + options.kl_coef * kl;
  }
  Tensor ent;
  if (in.entropy.defined()) {
    CheckSameShape(lp_raw, in.entropy, "entropy");
    ent = Masked(in.entropy.to(dtype), keep);
  }
  if (options.entropy_coef > 0) {
    CHAINRL_CHECK(ent.defined(), "entropy_coef > 0 needs entropy");
    per_token = per_token - options.entropy_coef * ent;
  }
  const Tensor w = norm.seq_weights.to(lp_raw.device()).to(dtype).unsqueeze(1);
  TokenLossOutput out;
  out.loss = (Masked(per_token, keep) * w).sum();

  torch::NoGradGuard no_grad;
  std::vector<Tensor> parts = {
      m.sum(),
      (s.clipped & keep).sum().to(dtype),
      s.dual_clipped.defined() ? (s.dual_clipped & keep).sum().to(dtype)
                               : torch::zeros({}, m.options()),
      (s.ratio * m).sum(),
      ((t.old - t.lp) * m).sum(),
      kl.defined() ? (kl * m).sum() : torch::zeros({}, m.options()),
      ent.defined() ? (ent * m).sum() : torch::zeros({}, m.options()),
      correction.defined() ? (correction * m).sum() : torch::zeros({}, m.options()),
      correction.defined() ? ((correction == 0) & keep).sum().to(dtype)
                           : torch::zeros({}, m.options()),
  };
  const Tensor packed = torch::stack(parts).to(torch::kFloat64).cpu();
  const double* p = packed.data_ptr<double>();
  out.stats.tokens = p[0];
  out.stats.clipped_tokens = p[1];
  out.stats.dual_clipped_tokens = p[2];
  out.stats.ratio_sum = p[3];
  out.stats.approx_kl_sum = p[4];
  out.stats.ref_kl_sum = p[5];
  out.stats.entropy_sum = p[6];
  out.stats.correction_weight_sum = p[7];
  out.stats.correction_zeroed = p[8];
  if (in.rollout_logprobs.defined()) {
    // Mismatch of the learner's current logprobs against the sampler's, on every batch.
    const LogprobMismatch mm = ComputeLogprobMismatch(lp_raw, in.rollout_logprobs, in.mask);
    out.stats.mismatch_tokens = mm.tokens;
    out.stats.mismatch_abs_sum = mm.abs_sum;
    out.stats.mismatch_abs_max = mm.abs_max;
    out.stats.mismatch_k3_sum = mm.k3_sum;
  }
  return out;
}

// No gradient to keep and the logits on a GPU: the fused per-token statistics kernel.
static bool FusedStatsServe(const Tensor& logits) {
  return kernels::CudaKernelsServe(logits) &&
         !(torch::GradMode::is_enabled() && logits.requires_grad());
}

Tensor TokenLogprobs(const Tensor& logits, const Tensor& targets, double temperature) {
  CHAINRL_CHECK(logits.dim() == targets.dim() + 1, "logits [..,V] vs targets [..]");
  if (FusedStatsServe(logits)) return kernels::CudaTokenStats(logits, targets, temperature).first;
  const Tensor lsm = torch::log_softmax(logits / temperature, -1);
  // Ignored labels (−100) gather index 0; the caller's mask removes them.
  return lsm.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);
}

Tensor TokenEntropy(const Tensor& logits, double temperature) {
  if (FusedStatsServe(logits)) {
    auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(logits.device());
    const Tensor any = torch::zeros(logits.sizes().slice(0, logits.dim() - 1), i64);
    return kernels::CudaTokenStats(logits, any, temperature).second;
  }
  const Tensor lsm = torch::log_softmax(logits / temperature, -1);
  return -(torch::exp(lsm) * lsm).sum(-1);
}

Tensor SftLoss(const Tensor& logprobs, const Tensor& mask, double total_tokens) {
  CheckSameShape(logprobs, mask, "mask");
  const Tensor keep = mask != 0;
  const Tensor nll = -Masked(logprobs, keep).sum();
  return total_tokens > 0 ? nll / total_tokens : nll * 0.0;
}

Tensor MasteredPositiveTokenKeepMask(const Tensor& old_logprobs, const Tensor& logprobs,
                                     const Tensor& mask, const Tensor& rewards,
                                     const Tensor& seq_mean_entropy,
                                     const MasteredTokenMaskOptions& options) {
  torch::NoGradGuard no_grad;
  const Tensor& source = options.prob_source == MasteredProbSource::kOld ? old_logprobs : logprobs;
  CheckSameShape(mask, source, "logprobs for the mastered-token mask");
  const int64_t batch = mask.size(0);
  CHAINRL_CHECK(rewards.numel() == batch && seq_mean_entropy.numel() == batch,
                "rewards and seq_mean_entropy must be [B]");
  const Tensor positive = (rewards.to(torch::kFloat64) >= options.positive_reward).unsqueeze(1);
  const Tensor confident = (seq_mean_entropy.to(torch::kFloat64) < options.sigma).unsqueeze(1);
  const Tensor mastered = torch::exp(source.detach().to(torch::kFloat64)) >= options.tau;
  const Tensor drop = positive & confident & mastered;
  return torch::where(drop, torch::zeros_like(mask), mask);
}

}  // namespace chainrl::learner
