// CISPO, MiniMax-M1 (arXiv 2506.13585, §3.1, Eq. 4–5): clip the importance-sampling weight, not
// the update, so low-probability tokens that PPO's clip would silence keep their gradient
// (docs/ALGORITHMS.md §1.11).
#include "learner/objective.h"
#include "learner/run_options.h"

namespace chainrl::learner {

TokenLossOutput CispoLoss(const TokenLossInputs& in, const Normalisers& norm,
                          const PolicyLossOptions& options) {
  const TokenTerms t = MaskedTokenTerms(in, norm);
  Surrogate s;
  s.ratio = torch::exp((t.lp - t.old).clamp(-options.log_ratio_clamp, options.log_ratio_clamp));
  const double low = 1.0 - options.clip_ratio_low, high = 1.0 + options.clip_ratio_high;
  const torch::Tensor r = s.ratio.detach();
  s.per_token = -t.adv * r.clamp(low, high) * t.lp;
  s.clipped = (r > high) | (r < low);
  return CompleteTokenLoss(in, norm, options, t, s);
}

namespace {

class Cispo : public PolicyObjective {
 public:
  explicit Cispo(const PolicyLossOptions& options) : options_(options) {}
  bool needs_entropy() const override { return options_.entropy_coef > 0; }
  torch::Tensor ChunkLoss(const ObjectiveChunk& chunk, PolicyLossStats* stats) override {
    TokenLossOutput out = CispoLoss(chunk.tokens, *chunk.norm, options_);
    stats->Merge(out.stats);
    return out.loss;
  }

 private:
  PolicyLossOptions options_;
};

std::unique_ptr<PolicyObjective> MakeCispo(const LearnerRunOptions& options) {
  return std::make_unique<Cispo>(options.policy);
}

Status CheckCispo(const PolicyLossOptions& options) {
  if (options.dual_clip_c > 0)
    return InvalidArgument(
        "algorithm.dual_clip_c does not apply to cispo: its importance weight is already "
        "capped at 1 + clip_ratio_high (set dual_clip_c = 0)");
  if (options.policy_loss != PolicyLossKind::kVanilla)
    return InvalidArgument("cispo weighs each token by its own ratio, not a sequence ratio");
  return Status::Ok();
}

}  // namespace

// No lower bound on the weight (ε_low = 1: the paper sets ε_low "to a large value"), ε_high 0.28
// [U: the paper does not publish its ε_high; 0.28 is DAPO's clip-higher], no KL, token-mean
// (the paper's 1/Σ|o_i|).
ObjectiveRecipe CispoRecipe() {
  ObjectiveRecipe r;
  r.policy = PolicyLossOptions().set_clip_ratio_low(1.0).set_clip_ratio_high(0.28);
  r.make = MakeCispo;
  r.check = CheckCispo;
  return r;
}

}  // namespace chainrl::learner
