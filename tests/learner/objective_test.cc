// The objective seam (learner/objective.h): every algorithm.name of the objective list has its
// recipe and family; CISPO's loss by hand, its gradient against finite differences of the
// importance-weighted objective it estimates, and its chunks adding up to the whole.
#include "learner/objective.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "apps/run_config.h"
#include "core/config.h"
#include "learner/run_options.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;

TEST(ObjectiveRegistryTest, EveryNameHasItsRecipeAndFamily) {
  ASSERT_GE(Objectives().size(), 11u);
  for (const ObjectiveInfo& info : Objectives()) {
    SCOPED_TRACE(info.name);
    auto recipe = FindRecipe(info.name);
    ASSERT_TRUE(recipe.ok()) << recipe.status().ToString();
    EXPECT_EQ(recipe->family, info.family);
    EXPECT_FALSE(info.doc.empty());
    EXPECT_NE(ObjectiveChoicesDoc().find(info.name + ": " + info.doc), std::string::npos);
    if (info.family == ObjectiveFamily::kPolicyGradient) {
      ASSERT_NE(recipe->make, nullptr);
      EXPECT_TRUE(ValidatePolicyLossOptions(recipe->policy).ok());
      LearnerRunOptions o;
      o.algorithm = info.name;
      o.policy = recipe->policy;
      auto objective = MakePolicyObjective(o);
      ASSERT_TRUE(objective.ok()) << objective.status().ToString();
      EXPECT_TRUE((*objective)->applies_sample_filters());
    } else {
      EXPECT_EQ(recipe->make, nullptr);
      EXPECT_EQ(PreferenceLossTypeName(recipe->preference), info.name);
      LearnerRunOptions o;
      o.algorithm = info.name;
      auto objective = MakePolicyObjective(o);
      ASSERT_FALSE(objective.ok());
      EXPECT_NE(objective.status().message().find("preference loss"), std::string::npos);
    }
  }
  // The schema offers exactly these names, in this order, and documents each.
  const KeySpec* key = RunConfigSchema().FindKey("algorithm.name");
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->choices, ObjectiveNames());
  for (const ObjectiveInfo& info : Objectives())
    EXPECT_NE(key->doc.find(info.name + ": " + info.doc), std::string::npos) << info.name;
  auto unknown = FindRecipe("ppo");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("grpo, dr_grpo"), std::string::npos);
  // DRPO's loss replaces the recipe's, and it scores whole responses.
  LearnerRunOptions drpo;
  drpo.drpo = true;
  auto d = MakePolicyObjective(drpo);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE((*d)->applies_sample_filters());
  EXPECT_FALSE((*d)->reports_chunk_loss());
}

// Two rows: lengths 2 and 1, Â = [1, −2], token-mean (Σ|o| = 3), ε_low = 1 (no floor),
// ε_high = 0.28. Ratios 0.5/0.4 = 1.25 (inside), 0.2/0.1 = 2 and 0.9/0.3 = 3 (both capped at 1.28).
struct HandCase {
  Tensor lp = torch::tensor({{std::log(0.5), std::log(0.2)}, {std::log(0.9), 0.0}}, torch::kFloat64)
                  .requires_grad_(true);
  Tensor old =
      torch::tensor({{std::log(0.4), std::log(0.1)}, {std::log(0.3), 0.0}}, torch::kFloat64);
  Tensor mask = torch::tensor({{1.0, 1.0}, {1.0, 0.0}}, torch::kFloat64);
  Tensor adv = torch::tensor({1.0, -2.0}, torch::kFloat64);
  TokenLossInputs Inputs() const {
    TokenLossInputs in;
    in.logprobs = lp;
    in.old_logprobs = old;
    in.mask = mask;
    in.advantages = adv;
    return in;
  }
};

TEST(CispoTest, LossAndGradientByHand) {
  HandCase h;
  const PolicyLossOptions o = *PolicyLossPreset("cispo");
  EXPECT_EQ(o.clip_ratio_low, 1.0);
  EXPECT_EQ(o.clip_ratio_high, 0.28);
  EXPECT_EQ(o.kl_coef, 0.0);
  EXPECT_EQ(o.loss_agg_mode, LossAggMode::kTokenMean);
  const Normalisers norm = ComputeNormalisers(h.mask, o);
  TokenLossOutput out = CispoLoss(h.Inputs(), norm, o);
  const double want =
      (-1.0 * 1.25 * std::log(0.5) - 1.0 * 1.28 * std::log(0.2) + 2.0 * 1.28 * std::log(0.9)) / 3.0;
  EXPECT_NEAR(out.loss.item<double>(), want, 1e-12);
  out.loss.backward();
  const Tensor g = h.lp.grad();
  EXPECT_NEAR(g[0][0].item<double>(), -1.25 / 3, 1e-12);
  EXPECT_NEAR(g[0][1].item<double>(), -1.28 / 3, 1e-12);  // capped, not silenced
  EXPECT_NEAR(g[1][0].item<double>(), 2.56 / 3, 1e-12);
  EXPECT_EQ(g[1][1].item<double>(), 0.0);
  EXPECT_EQ(out.stats.tokens, 3);
  EXPECT_EQ(out.stats.clipped_tokens, 2);
  EXPECT_NEAR(out.stats.ratio_sum, 1.25 + 2 + 3, 1e-12);
  EXPECT_NEAR(out.stats.approx_kl_sum,
              std::log(0.4 / 0.5) + std::log(0.1 / 0.2) + std::log(0.3 / 0.9), 1e-12);
  // PPO's clip (ε 0.2/0.28) silences the capped positive token: zero gradient there.
  HandCase p;
  const PolicyLossOptions ppo = PolicyLossOptions().set_clip_ratio_high(0.28);
  PolicyLoss(p.Inputs(), ComputeNormalisers(p.mask, ppo), ppo).loss.backward();
  EXPECT_EQ(p.lp.grad()[0][1].item<double>(), 0.0);
}

// CISPO's gradient is the gradient of the importance-weighted objective J = Σ w m (−Â·r) it
// estimates, with each token's weight capped: ∇ = (clip(r)/r)·∇J per token. Checked against
// central differences of J on random inputs, with the cap inactive and active.
TEST(CispoTest, GradientIsTheCappedImportanceWeightedGradient) {
  torch::manual_seed(3);
  const int64_t B = 3, T = 5;
  const Tensor old = -torch::rand({B, T}, torch::kFloat64) * 2 - 0.1;
  const Tensor lp0 = old + (torch::rand({B, T}, torch::kFloat64) - 0.5) * 0.6;
  const Tensor mask = (torch::rand({B, T}, torch::kFloat64) > 0.2).to(torch::kFloat64);
  const Tensor adv = torch::tensor({1.3, -0.7, 0.4}, torch::kFloat64);
  for (double eps_high : {10.0, 0.02}) {
    SCOPED_TRACE(eps_high);
    const PolicyLossOptions o =
        PolicyLossOptions().set_clip_ratio_low(1.0).set_clip_ratio_high(eps_high);
    const Normalisers norm = ComputeNormalisers(mask, o);
    Tensor lp = lp0.clone().requires_grad_(true);
    TokenLossInputs in;
    in.logprobs = lp;
    in.old_logprobs = old;
    in.mask = mask;
    in.advantages = adv;
    CispoLoss(in, norm, o).loss.backward();
    const Tensor w = norm.seq_weights.unsqueeze(1);
    auto j = [&](const Tensor& x) {
      return (w * mask * (-adv.unsqueeze(1) * torch::exp(x - old))).sum().item<double>();
    };
    double worst = 0;
    int capped = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const double h = 1e-6;
        Tensor up = lp0.clone(), down = lp0.clone();
        up[b][t] += h;
        down[b][t] -= h;
        const double fd = (j(up) - j(down)) / (2 * h);
        const double r = std::exp((lp0[b][t] - old[b][t]).item<double>());
        const double cap = std::min(r, 1 + eps_high) / r;
        if (cap < 1 && mask[b][t].item<double>() > 0) ++capped;
        const double ad = lp.grad()[b][t].item<double>();
        worst = std::max(worst, std::abs(fd * cap - ad) / std::max(1e-6, std::abs(ad)));
      }
    EXPECT_LT(worst, 1e-6);
    if (eps_high < 1) {
      EXPECT_GE(capped, 3);
    } else {
      EXPECT_EQ(capped, 0);
    }
  }
}

// Chunks over time positions, with the whole mini-batch's normalisers, add up to the whole loss,
// its gradient and its statistics (what streaming backprop relies on).
TEST(CispoTest, ChunksAddUpToTheWhole) {
  torch::manual_seed(5);
  const int64_t B = 4, T = 9;
  const Tensor old = -torch::rand({B, T}, torch::kFloat64) * 3;
  const Tensor lp0 = old + (torch::rand({B, T}, torch::kFloat64) - 0.5);
  const Tensor mask = (torch::rand({B, T}, torch::kFloat64) > 0.3).to(torch::kFloat64);
  const Tensor adv = torch::randn({B}, torch::kFloat64);
  const Tensor ent = torch::rand({B, T}, torch::kFloat64);
  for (LossAggMode mode : {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean}) {
    PolicyLossOptions o = *PolicyLossPreset("cispo");
    o.set_entropy_coef(0.01).set_loss_agg_mode(mode);
    const Normalisers norm = ComputeNormalisers(mask, o);
    auto run = [&](int64_t chunk, PolicyLossStats* stats) {
      Tensor lp = lp0.clone().requires_grad_(true);
      double total = 0;
      for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t t1 = std::min(T, t0 + chunk);
        TokenLossInputs in;
        in.logprobs = lp.slice(1, t0, t1);
        in.old_logprobs = old.slice(1, t0, t1);
        in.mask = mask.slice(1, t0, t1);
        in.advantages = adv;
        in.entropy = ent.slice(1, t0, t1);
        TokenLossOutput out = CispoLoss(in, norm, o);
        out.loss.backward();
        total += out.loss.item<double>();
        stats->Merge(out.stats);
      }
      return std::make_pair(total, lp.grad().clone());
    };
    PolicyLossStats whole, chunked;
    auto [l1, g1] = run(T, &whole);
    auto [l2, g2] = run(2, &chunked);
    EXPECT_NEAR(l1, l2, 1e-12);
    EXPECT_LT((g1 - g2).abs().max().item<double>(), 1e-12);
    EXPECT_EQ(whole.tokens, chunked.tokens);
    EXPECT_EQ(whole.clipped_tokens, chunked.clipped_tokens);
    EXPECT_NEAR(whole.entropy_sum, chunked.entropy_sum, 1e-12);
  }
}

Result<LearnerRunOptions> FromSets(const std::vector<std::string>& sets) {
  auto c = ParseConfig("[model]\npath = \"m\"\n", "run.toml", sets);
  if (!c.ok()) return c.status();
  return LearnerOptionsFromConfig(*c);
}

// algorithm.name = "cispo" selects its recipe; keys override it; dual clip is refused.
TEST(CispoTest, SelectedByConfig) {
  auto o = FromSets({"algorithm.name=\"cispo\""});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->family, ObjectiveFamily::kPolicyGradient);
  EXPECT_EQ(o->policy.clip_ratio_low, 1.0);
  EXPECT_EQ(o->policy.clip_ratio_high, 0.28);
  EXPECT_FALSE(o->dynamic_sampling);
  auto high = FromSets({"algorithm.name=\"cispo\"", "algorithm.clip_ratio_high=4.0"});
  ASSERT_TRUE(high.ok());
  EXPECT_EQ(high->policy.clip_ratio_high, 4.0);
  auto dual = FromSets({"algorithm.name=\"cispo\"", "algorithm.dual_clip_c=3.0"});
  ASSERT_FALSE(dual.ok());
  EXPECT_NE(dual.status().message().find("[algorithm]"), std::string::npos);
  EXPECT_NE(dual.status().message().find("dual_clip_c"), std::string::npos);
  EXPECT_NE(dual.status().message().find("cispo"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::learner
