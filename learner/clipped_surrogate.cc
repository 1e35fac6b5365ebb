// The clipped-ratio surrogate (PolicyLoss) as an objective, and the recipes that use it: GRPO,
// Dr.GRPO, DAPO, GSPO, DLER's and CAMPO's loss (docs/ALGORITHMS.md §1.1–§1.5, §1.9).
#include "learner/objective.h"
#include "learner/run_options.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;

// PPO's clipped surrogate; with GSPO's sequence ratio, whose log s_i the preparation pass takes
// over whole sequences of the mini-batch before any chunk (§1.4).
class ClippedSurrogate : public PolicyObjective {
 public:
  explicit ClippedSurrogate(const PolicyLossOptions& options) : options_(options) {}

  bool needs_entropy() const override { return options_.entropy_coef > 0; }

  Result<double> Prepare(const std::vector<ObjectiveRow>&, const SequencePass& pass) override {
    gspo_log_ratio_ = Tensor();
    if (options_.policy_loss != PolicyLossKind::kGspo) return 0.0;
    std::vector<Tensor> parts;
    pass([&](const SequencePassPart& part) {
      parts.push_back(
          GspoSequenceLogRatio(part.logprobs, part.old_logprobs, part.mask).to(torch::kFloat64));
    });
    gspo_log_ratio_ = parts.empty() ? torch::zeros({0}, torch::kFloat64) : torch::cat(parts);
    return 0.0;
  }

  Tensor ChunkLoss(const ObjectiveChunk& chunk, PolicyLossStats* stats) override {
    TokenLossInputs in = chunk.tokens;
    if (options_.policy_loss == PolicyLossKind::kGspo)
      in.gspo_seq_log_ratio = gspo_log_ratio_.narrow(0, chunk.first_row, in.logprobs.size(0));
    TokenLossOutput out = PolicyLoss(in, *chunk.norm, options_);
    stats->Merge(out.stats);
    return out.loss;
  }

 private:
  PolicyLossOptions options_;
  Tensor gspo_log_ratio_;  // [rows] float64, per row of the mini-batch (GSPO), from Prepare
};

ObjectiveRecipe ClippedRecipe(PolicyLossOptions policy) {
  ObjectiveRecipe r;
  r.policy = policy;
  r.make = MakeClippedSurrogate;
  return r;
}

}  // namespace

std::unique_ptr<PolicyObjective> MakeClippedSurrogate(const LearnerRunOptions& options) {
  return std::make_unique<ClippedSurrogate>(options.policy);
}

// [U: DeepSeekMath's values as commonly reported, not rechecked against the paper's text.]
ObjectiveRecipe GrpoRecipe() {
  return ClippedRecipe(
      PolicyLossOptions().set_kl_coef(0.04).set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean));
}

ObjectiveRecipe DrGrpoRecipe() {
  ObjectiveRecipe r = ClippedRecipe(PolicyLossOptions()
                                        .set_loss_agg_mode(LossAggMode::kSeqMeanTokenSumNorm)
                                        .set_loss_scale_factor(3000));
  r.advantages = AdvantageEstimator::kDrGrpo;
  return r;
}

ObjectiveRecipe DapoRecipe() {
  ObjectiveRecipe r = ClippedRecipe(PolicyLossOptions().set_clip_ratio_high(0.28));
  r.dynamic_sampling = true;
  return r;
}

ObjectiveRecipe GspoRecipe() {
  return ClippedRecipe(PolicyLossOptions()
                           .set_policy_loss(PolicyLossKind::kGspo)
                           .set_clip_ratio_low(3e-4)
                           .set_clip_ratio_high(4e-4)
                           .set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean));
}

ObjectiveRecipe DlerRecipe() {
  ObjectiveRecipe r = ClippedRecipe(
      PolicyLossOptions().set_clip_ratio_high(0.28).set_dual_clip_c(10).set_kl_coef(5e-4));
  r.dynamic_sampling = true;
  return r;
}

ObjectiveRecipe CampoRecipe() {
  ObjectiveRecipe r =
      ClippedRecipe(PolicyLossOptions().set_clip_ratio_high(0.28).set_dual_clip_c(10));
  r.dynamic_sampling = true;
  return r;
}

}  // namespace chainrl::learner
