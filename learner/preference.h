// Sequence-level objectives over per-sequence log-probability totals: DPO / cDPO / IPO, SimPO
// (sigmoid or hinge), LOGO (M rejected samples + λ·CE), reference-free variants, DRPO; the
// two-pass streaming helper; online pair selection from a group's rewards.
// docs/ALGORITHMS.md §3.1–§3.5, §6.3, §4.10; papers: DPO arXiv 2305.18290 Eq. 7, IPO arXiv
// 2310.12036, SimPO arXiv 2405.14734 Eq. 6, LOGO arXiv 2410.18533, DRPO arXiv 2510.04474.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace chainrl::learner {

// "dpo" (sigmoid, cDPO with label_smoothing), "ipo", "simpo", "logo".
enum class PreferenceLossType { kDpo, kIpo, kSimpo, kLogo };
Result<PreferenceLossType> ParsePreferenceLossType(std::string_view name);
const char* PreferenceLossTypeName(PreferenceLossType t);

struct PreferenceOptions {
#define CHAINRL_LEARNER_ARG(type, name, init) \
  type name = init;                           \
  PreferenceOptions& set_##name(type v) {     \
    name = v;                                 \
    return *this;                             \
  }
  CHAINRL_LEARNER_ARG(PreferenceLossType, loss_type, PreferenceLossType::kDpo)
  CHAINRL_LEARNER_ARG(double, beta, 0.1)  // DPO/IPO β (0.1 README example); SimPO/LOGO β
  CHAINRL_LEARNER_ARG(double, label_smoothing, 0.0)    // ε of cDPO / SimPO; 0 or in (0, 0.5)
  CHAINRL_LEARNER_ARG(bool, reference_free, false)     // DPO/IPO: uniform reference (ref terms = 0)
  CHAINRL_LEARNER_ARG(double, gamma_beta_ratio, 0.25)  // SimPO/LOGO margin γ = β·gamma_beta_ratio
  CHAINRL_LEARNER_ARG(bool, hinge, false)  // SimPO: relu(1 − (r_w − r_l − γ)) instead
  // λ of LOGO's CE(y_w) and SimPO's sft_weight. CE(y_w) is the chosen response's token-mean
  // negative log-likelihood (−log π(y_w)/|y_w|) [U: LOGO's code form not checked; token mean
  // matches SimPO's average-logprob SFT term].
  CHAINRL_LEARNER_ARG(double, sft_weight, 0.0)
#undef CHAINRL_LEARNER_ARG
};
Status ValidatePreferenceOptions(const PreferenceOptions& options);

// Per-pair sequence totals: log π(y) is the SUM of the response tokens' logprobs. Rejected
// tensors are [B] or, for LOGO, [B,M] (M rejected samples per chosen one; DPO/IPO/SimPO need M=1).
// Lengths are response-token counts (float or int). Reference totals are needed by DPO/IPO
// unless reference_free; SimPO and LOGO are reference-free by construction.
struct PreferenceInputs {
  torch::Tensor chosen_logps;        // [B]
  torch::Tensor rejected_logps;      // [B] or [B,M]
  torch::Tensor ref_chosen_logps;    // [B]
  torch::Tensor ref_rejected_logps;  // [B] or [B,M]
  torch::Tensor chosen_lengths;      // [B]
  torch::Tensor rejected_lengths;    // [B] or [B,M]
};

struct PreferenceOutput {
  torch::Tensor loss;             // scalar: mean over the B pairs
  torch::Tensor chosen_reward;    // [B] detached implicit rewards (β·Δ for DPO/IPO, SimPO r)
  torch::Tensor rejected_reward;  // [B] (mean over M for LOGO)
  double reward_accuracy = 0;     // fraction of pairs with chosen_reward > rejected_reward
  double reward_margin = 0;       // mean(chosen_reward − rejected_reward)
};

// InvalidArgument naming the first pair with an empty response (log π = 0 carries no signal;
// such pairs must be rejected upstream) or with missing reference totals.
Result<PreferenceOutput> PreferenceLoss(const PreferenceInputs& in,
                                        const PreferenceOptions& options);

// Two-pass streaming helper. Given the per-sequence totals from a no-grad pass, returns
// g = dL/d(chosen_logps) [B] and dL/d(rejected_logps) [B] or [B,M] of PreferenceLoss. A chunked
// pass then backprops Σ_b g_w[b]·(chunk sum of ℓ_w) + Σ g_l·(chunk sum of ℓ_l), which gives exactly
// the gradient of the direct loss.
struct SequenceGradCoefficients {
  torch::Tensor chosen;    // [B]
  torch::Tensor rejected;  // [B] or [B,M]
};
Result<SequenceGradCoefficients> PreferenceSequenceGrads(const PreferenceInputs& totals,
                                                         const PreferenceOptions& options);

// Online pairs from one group's rollouts: chosen = the best reward, rejected = the
// `num_rejected` lowest rewards; a group is skipped unless each rejected one is below the best
// by more than min_margin. Ties resolve to the lowest index. Indices are into `rewards`.
struct PreferencePair {
  int64_t chosen = 0;
  std::vector<int64_t> rejected;
};
struct PairSelectionOptions {
  int64_t num_rejected = 1;  // M
  double min_margin = 0.0;   // required reward gap
  PairSelectionOptions& set_num_rejected(int64_t v) {
    num_rejected = v;
    return *this;
  }
  PairSelectionOptions& set_min_margin(double v) {
    min_margin = v;
    return *this;
  }
};
std::optional<PreferencePair> SelectGroupPair(std::span<const double> rewards,
                                              const PairSelectionOptions& options = {});

// ---- DRPO (decoupled length reward among correct samples) ---------------------------------------
// Per prompt with ≥1 correct and ≥1 wrong sample: J_q = Σ_{o+} w(o+)·[s(o+) − τ·LME_{o−}(s/τ)] /
// Σ w, w(o) = exp((1 − |o|/L_max)/λ), s(o) = the mean token logprob. LME is computed exactly
// (log-mean-exp), whose gradient is the softmax-weighted gradient DRPO's surrogate uses.
// loss = −Σ_q J_q / N_prompts (all prompts) + sg[β·max(0, KL − δ)]·KL.
struct DrpoOptions {
  double lambda = 0.1;       // drpo_lambda: length temperature
  double tau = 10.0;         // drpo_tau: negatives' log-mean-exp temperature
  double max_length = 8192;  // L_max
  double beta = 1e3;         // drpo_kl_beta
  double delta = 1e-4;       // drpo_kl_delta
  DrpoOptions& set_lambda(double v) {
    lambda = v;
    return *this;
  }
  DrpoOptions& set_tau(double v) {
    tau = v;
    return *this;
  }
  DrpoOptions& set_max_length(double v) {
    max_length = v;
    return *this;
  }
  DrpoOptions& set_beta(double v) {
    beta = v;
    return *this;
  }
  DrpoOptions& set_delta(double v) {
    delta = v;
    return *this;
  }
};
// seq_scores [B] with grad; lengths [B]; correct [B] (0/1); group_ids [B] int64; kl a scalar
// (token-mean of ℓ_old − ℓ, with grad) or undefined to drop the KL term.
torch::Tensor DrpoLoss(const torch::Tensor& seq_scores, const torch::Tensor& lengths,
                       const torch::Tensor& correct, const torch::Tensor& group_ids,
                       const torch::Tensor& kl, const DrpoOptions& options);

}  // namespace chainrl::learner
