// Preference objectives (DPO family, LOGO), the two-pass streaming helper, online pair selection
// and DRPO (docs/ALGORITHMS.md §3.1–§3.5, §6.3, §4.10).
#include "learner/preference.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "core/check.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;

Status CheckVector(const Tensor& t, const char* name, int64_t batch, int64_t m, bool allow_2d) {
  if (!t.defined()) return InvalidArgument(std::string(name) + " is required");
  const bool ok = (t.dim() == 1 && t.size(0) == batch && m == 1) ||
                  (allow_2d && t.dim() == 2 && t.size(0) == batch && t.size(1) == m);
  if (!ok) {
    std::ostringstream os;
    os << name << " has shape " << t.sizes() << ", expected [" << batch << "]"
       << (allow_2d ? " or [" + std::to_string(batch) + "," + std::to_string(m) + "]" : "");
    return InvalidArgument(os.str());
  }
  return Status::Ok();
}

Status CheckNonEmpty(const Tensor& lengths, const char* name) {
  const Tensor flat = lengths.detach().reshape({-1}).to(torch::kFloat64).cpu();
  const double* p = flat.data_ptr<double>();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    if (!(p[i] > 0))
      return InvalidArgument(std::string(name) + "[" + std::to_string(i) +
                             "] is 0: an empty response has log π = 0 and must be dropped");
  }
  return Status::Ok();
}

Tensor SmoothedSigmoidLoss(const Tensor& z, double eps) {
  return -(1.0 - eps) * torch::log_sigmoid(z) - eps * torch::log_sigmoid(-z);
}

}  // namespace

Result<PreferenceLossType> ParsePreferenceLossType(std::string_view name) {
  if (name == "dpo" || name == "sigmoid") return PreferenceLossType::kDpo;
  if (name == "ipo") return PreferenceLossType::kIpo;
  if (name == "simpo") return PreferenceLossType::kSimpo;
  if (name == "logo") return PreferenceLossType::kLogo;
  return InvalidArgument("loss_type: unknown value \"" + std::string(name) +
                         "\"; valid values: dpo (alias sigmoid), ipo, simpo, logo");
}

const char* PreferenceLossTypeName(PreferenceLossType t) {
  switch (t) {
    case PreferenceLossType::kDpo:
      return "dpo";
    case PreferenceLossType::kIpo:
      return "ipo";
    case PreferenceLossType::kSimpo:
      return "simpo";
    case PreferenceLossType::kLogo:
      return "logo";
  }
  return "?";
}

Status ValidatePreferenceOptions(const PreferenceOptions& o) {
  if (!(o.beta > 0)) return InvalidArgument("beta = " + std::to_string(o.beta) + ": must be > 0");
  if (!(o.label_smoothing == 0 || (o.label_smoothing > 0 && o.label_smoothing < 0.5)))
    return InvalidArgument("label_smoothing = " + std::to_string(o.label_smoothing) +
                           ": must be 0 or in (0, 0.5)");
  if (!(o.sft_weight >= 0)) return InvalidArgument("sft_weight must be >= 0");
  if (o.hinge && o.loss_type != PreferenceLossType::kSimpo)
    return InvalidArgument("hinge applies to loss_type = simpo only");
  return Status::Ok();
}

Result<PreferenceOutput> PreferenceLoss(const PreferenceInputs& in, const PreferenceOptions& o) {
  CHAINRL_RETURN_IF_ERROR(ValidatePreferenceOptions(o));
  if (!in.chosen_logps.defined() || in.chosen_logps.dim() != 1)
    return InvalidArgument("chosen_logps must be [B]");
  const int64_t batch = in.chosen_logps.size(0);
  if (!in.rejected_logps.defined()) return InvalidArgument("rejected_logps is required");
  const int64_t m = in.rejected_logps.dim() == 2 ? in.rejected_logps.size(1) : 1;
  const bool multi = o.loss_type == PreferenceLossType::kLogo;
  if (m != 1 && !multi)
    return InvalidArgument("several rejected samples per pair need loss_type = logo");
  CHAINRL_RETURN_IF_ERROR(CheckVector(in.rejected_logps, "rejected_logps", batch, m, multi));
  CHAINRL_RETURN_IF_ERROR(CheckVector(in.chosen_lengths, "chosen_lengths", batch, 1, false));
  CHAINRL_RETURN_IF_ERROR(CheckVector(in.rejected_lengths, "rejected_lengths", batch, m, multi));
  CHAINRL_RETURN_IF_ERROR(CheckNonEmpty(in.chosen_lengths, "chosen_lengths"));
  CHAINRL_RETURN_IF_ERROR(CheckNonEmpty(in.rejected_lengths, "rejected_lengths"));

  const auto dtype = in.chosen_logps.scalar_type();
  const Tensor cw = in.chosen_logps;
  const Tensor cl = in.rejected_logps.to(dtype);
  const Tensor lw = in.chosen_lengths.to(dtype);
  const Tensor ll = in.rejected_lengths.to(dtype);
  PreferenceOutput out;
  Tensor losses, rw, rl;
  switch (o.loss_type) {
    case PreferenceLossType::kDpo:
    case PreferenceLossType::kIpo: {
      Tensor ref_w = torch::zeros_like(cw), ref_l = torch::zeros_like(cw);
      if (!o.reference_free) {
        CHAINRL_RETURN_IF_ERROR(
            CheckVector(in.ref_chosen_logps, "ref_chosen_logps", batch, 1, false));
        CHAINRL_RETURN_IF_ERROR(
            CheckVector(in.ref_rejected_logps, "ref_rejected_logps", batch, 1, false));
        ref_w = in.ref_chosen_logps.to(dtype).detach();
        ref_l = in.ref_rejected_logps.to(dtype).detach().reshape({batch});
      }
      const Tensor l = cl.reshape({batch});
      const Tensor h = (cw - l) - (ref_w - ref_l);
      losses = o.loss_type == PreferenceLossType::kDpo
                   ? SmoothedSigmoidLoss(o.beta * h, o.label_smoothing)
                   : (h - 1.0 / (2.0 * o.beta)).pow(2);
      rw = o.beta * (cw - ref_w);
      rl = o.beta * (l - ref_l);
      break;
    }
    case PreferenceLossType::kSimpo:
    case PreferenceLossType::kLogo: {
      rw = o.beta * cw / lw;
      rl = o.beta * cl / ll;
      if (rl.dim() == 2) rl = rl.mean(1);  // LOGO: mean over the M rejected samples
      const Tensor z = rw - rl - o.beta * o.gamma_beta_ratio;
      losses = o.hinge ? torch::relu(1.0 - z) : SmoothedSigmoidLoss(z, o.label_smoothing);
      break;
    }
  }
  if (o.sft_weight > 0) losses = losses + o.sft_weight * (-cw / lw);
  out.loss = losses.mean();
  torch::NoGradGuard no_grad;
  out.chosen_reward = rw.detach();
  out.rejected_reward = rl.detach();
  out.reward_accuracy = (rw > rl).to(torch::kFloat64).mean().item<double>();
  out.reward_margin = (rw - rl).to(torch::kFloat64).mean().item<double>();
  return out;
}

Result<SequenceGradCoefficients> PreferenceSequenceGrads(const PreferenceInputs& totals,
                                                         const PreferenceOptions& options) {
  PreferenceInputs leaf = totals;
  if (!totals.chosen_logps.defined() || !totals.rejected_logps.defined())
    return InvalidArgument("chosen_logps and rejected_logps are required");
  leaf.chosen_logps = totals.chosen_logps.detach().clone().requires_grad_(true);
  leaf.rejected_logps = totals.rejected_logps.detach().clone().requires_grad_(true);
  torch::AutoGradMode grad_on(true);
  CHAINRL_ASSIGN_OR_RETURN(PreferenceOutput out, PreferenceLoss(leaf, options));
  const auto grads = torch::autograd::grad({out.loss}, {leaf.chosen_logps, leaf.rejected_logps},
                                           /*grad_outputs=*/{}, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);
  SequenceGradCoefficients g;
  g.chosen = grads[0].defined() ? grads[0] : torch::zeros_like(leaf.chosen_logps);
  g.rejected = grads[1].defined() ? grads[1] : torch::zeros_like(leaf.rejected_logps);
  return g;
}

std::optional<PreferencePair> SelectGroupPair(std::span<const double> rewards,
                                              const PairSelectionOptions& options) {
  if (rewards.empty() || options.num_rejected < 1) return std::nullopt;
  const int64_t n = static_cast<int64_t>(rewards.size());
  const int64_t best = std::max_element(rewards.begin(), rewards.end()) - rewards.begin();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return rewards[a] < rewards[b]; });
  PreferencePair pair;
  pair.chosen = best;
  for (int64_t i : order) {
    if (static_cast<int64_t>(pair.rejected.size()) == options.num_rejected) break;
    if (i == best) continue;
    if (!(rewards[best] - rewards[i] > options.min_margin)) return std::nullopt;
    pair.rejected.push_back(i);
  }
  if (static_cast<int64_t>(pair.rejected.size()) < options.num_rejected) return std::nullopt;
  return pair;
}

Tensor DrpoLoss(const Tensor& seq_scores, const Tensor& lengths, const Tensor& correct,
                const Tensor& group_ids, const Tensor& kl, const DrpoOptions& o) {
  const int64_t batch = seq_scores.size(0);
  CHAINRL_CHECK(lengths.numel() == batch && correct.numel() == batch && group_ids.numel() == batch,
                "DRPO inputs must all be [B]");
  const Tensor gid = group_ids.to(torch::kInt64).cpu().contiguous();
  const Tensor cor = correct.to(torch::kFloat64).cpu().contiguous();
  std::vector<int64_t> order;
  std::map<int64_t, std::pair<std::vector<int64_t>, std::vector<int64_t>>> groups;  // pos, neg
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t g = gid.data_ptr<int64_t>()[i];
    auto [it, inserted] = groups.try_emplace(g);
    if (inserted) order.push_back(g);
    (cor.data_ptr<double>()[i] > 0.5 ? it->second.first : it->second.second).push_back(i);
  }
  const auto dev = seq_scores.device();
  Tensor total = torch::zeros({}, seq_scores.options());
  for (int64_t g : order) {
    const auto& [pos, neg] = groups[g];
    if (pos.empty() || neg.empty()) continue;  // all-correct / all-wrong: contributes 0
    const Tensor ip = torch::tensor(pos, torch::kInt64).to(dev);
    const Tensor in = torch::tensor(neg, torch::kInt64).to(dev);
    const Tensor s_pos = seq_scores.index_select(0, ip);
    const Tensor s_neg = seq_scores.index_select(0, in);
    const Tensor lme =
        o.tau * (torch::logsumexp(s_neg / o.tau, 0) - std::log(static_cast<double>(neg.size())));
    // w(o) = exp((1 − |o|/L_max)/λ), normalised over the positives: a softmax (stable).
    const Tensor len = lengths.detach().to(seq_scores.scalar_type()).to(dev).index_select(0, ip);
    const Tensor w = torch::softmax((1.0 - len / o.max_length) / o.lambda, 0);
    total = total + (w * (s_pos - lme)).sum();
  }
  Tensor loss = -total / static_cast<double>(std::max<size_t>(order.size(), 1));
  if (kl.defined()) {
    const double coef = o.beta * std::max(0.0, kl.detach().item<double>() - o.delta);
    loss = loss + coef * kl;
  }
  return loss;
}

}  // namespace chainrl::learner
