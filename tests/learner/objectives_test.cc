// Tests for learner/objectives.h: GRPO-family token losses against hand values and a scalar
// reference, chunked == unchunked (values and gradients), finite-difference gradient checks on a
// tiny model, KL / mismatch / SFT / DMMPT.
#include "learner/objectives.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "learner/objective.h"
#include "tests/learner/grad_check.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

Tensor T2(std::vector<std::vector<double>> rows) {
  const int64_t b = rows.size(), t = rows[0].size();
  Tensor out = torch::zeros({b, t}, kF64);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j) out[i][j] = rows[i][j];
  return out;
}

double At(const Tensor& t, int64_t i, int64_t j) { return t[i][j].item<double>(); }

// The whole batch in one piece: normalisers (and GSPO's sequence ratio) from the full tensors.
TokenLossOutput PolicyLossFull(const TokenLossInputs& full, const PolicyLossOptions& options) {
  const Normalisers norm = ComputeNormalisers(full.mask, options);
  if (options.policy_loss != PolicyLossKind::kGspo) return PolicyLoss(full, norm, options);
  TokenLossInputs in = full;
  in.gspo_seq_log_ratio = GspoSequenceLogRatio(full.logprobs, full.old_logprobs, full.mask);
  return PolicyLoss(in, norm, options);
}

// Mean entropy per sequence over masked tokens, [B] (the DMMPT gate's H̄_i).
Tensor MeanSequenceEntropy(const Tensor& entropy, const Tensor& mask) {
  const Tensor keep = (mask != 0).to(torch::kFloat64);
  return (entropy.to(torch::kFloat64) * keep).sum(1) / keep.sum(1).clamp_min(1.0);
}

// Slow scalar reference of the GRPO-family loss straight from docs/ALGORITHMS.md §1.1–§1.8.
double ReferenceLoss(const Tensor& lp, const Tensor& old, const Tensor& ref, const Tensor& ent,
                     const Tensor& mask, const Tensor& adv, const PolicyLossOptions& o) {
  const int64_t B = lp.size(0), T = lp.size(1);
  std::vector<double> len(B, 0);
  double total = 0, n = 0;
  for (int64_t i = 0; i < B; ++i) {
    for (int64_t t = 0; t < T; ++t) len[i] += At(mask, i, t);
    total += len[i];
    n += len[i] > 0;
  }
  const bool gspo = o.policy_loss == PolicyLossKind::kGspo;
  const LossAggMode mode = gspo ? LossAggMode::kSeqMeanTokenMean : o.loss_agg_mode;
  const double lmax = o.loss_scale_factor > 0 ? o.loss_scale_factor : T;
  double loss = 0;
  for (int64_t i = 0; i < B; ++i) {
    double seq_log = 0;
    for (int64_t t = 0; t < T; ++t)
      if (At(mask, i, t) > 0) seq_log += At(lp, i, t) - At(old, i, t);
    seq_log /= std::max(len[i], 1.0);
    const double a = adv[i].item<double>();
    for (int64_t t = 0; t < T; ++t) {
      if (At(mask, i, t) == 0) continue;
      const double r = gspo ? std::exp(std::min(seq_log, 10.0))
                            : std::exp(std::clamp(At(lp, i, t) - At(old, i, t), -20.0, 20.0));
      const double rc = std::clamp(r, 1 - o.clip_ratio_low, 1 + o.clip_ratio_high);
      double pg = std::max(-a * r, -a * rc);
      if (o.dual_clip_c > 0 && a < 0) pg = std::min(pg, -a * o.dual_clip_c);
      double l = pg;
      if (o.kl_coef > 0) {
        const double x = std::clamp(At(ref, i, t) - At(lp, i, t), -20.0, 20.0);
        l += o.kl_coef * std::clamp(std::exp(x) - x - 1, -10.0, 10.0);
      }
      if (o.entropy_coef > 0) l -= o.entropy_coef * At(ent, i, t);
      double w = 0;
      if (mode == LossAggMode::kTokenMean) w = 1 / total;
      if (mode == LossAggMode::kSeqMeanTokenMean) w = 1 / (n * len[i]);
      if (mode == LossAggMode::kSeqMeanTokenSumNorm) w = 1 / lmax;
      loss += w * l;
    }
  }
  return loss;
}

struct Batch {
  Tensor lp, old, ref, ent, mask, adv;
};

Batch RandomBatch(int64_t B, int64_t T, uint64_t seed) {
  torch::manual_seed(seed);
  Batch b;
  b.lp = -torch::rand({B, T}, kF64) * 3 - 0.01;
  b.old = b.lp + 0.3 * torch::randn({B, T}, kF64);
  b.ref = b.lp + 0.5 * torch::randn({B, T}, kF64);
  b.ent = torch::rand({B, T}, kF64) * 2;
  b.mask = torch::ones({B, T}, kF64);
  // Ragged lengths, one empty response, and garbage (−inf) at padded positions.
  for (int64_t i = 0; i < B; ++i) {
    const int64_t len = i == 1 ? 0 : (T - (i * 3) % T);
    for (int64_t t = len; t < T; ++t) {
      b.mask[i][t] = 0;
      b.lp[i][t] = -std::numeric_limits<double>::infinity();
    }
  }
  b.adv = torch::randn({B}, kF64);
  return b;
}

TokenLossInputs Inputs(const Batch& b, const Tensor& lp) {
  TokenLossInputs in;
  in.logprobs = lp;
  in.old_logprobs = b.old;
  in.ref_logprobs = b.ref;
  in.entropy = b.ent;
  in.mask = b.mask;
  in.advantages = b.adv;
  return in;
}

TEST(ObjectivesTest, ParseModesListValidValues) {
  EXPECT_EQ(*ParseLossAggMode("token-mean"), LossAggMode::kTokenMean);
  EXPECT_EQ(*ParseLossAggMode("seq-mean-token-mean"), LossAggMode::kSeqMeanTokenMean);
  EXPECT_EQ(*ParseLossAggMode("seq-mean-token-sum-norm"), LossAggMode::kSeqMeanTokenSumNorm);
  for (auto m :
       {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean, LossAggMode::kSeqMeanTokenSumNorm})
    EXPECT_EQ(*ParseLossAggMode(LossAggModeName(m)), m);
  auto bad = ParseLossAggMode("token_mean");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("loss_agg_mode"), std::string::npos);
  EXPECT_NE(bad.status().message().find("seq-mean-token-sum-norm"), std::string::npos);
  EXPECT_EQ(*ParseKlEstimator("low_var_kl"), KlEstimator::kK3);
  EXPECT_EQ(*ParseKlEstimator("k3+"), KlEstimator::kK3Plus);
  EXPECT_FALSE(ParseKlEstimator("k2").ok());
  EXPECT_EQ(*ParsePolicyLossKind("gspo"), PolicyLossKind::kGspo);
  EXPECT_FALSE(ParsePolicyLossKind("ppo2").ok());
  EXPECT_EQ(*ParseMasteredProbSource("current"), MasteredProbSource::kCurrent);
  EXPECT_FALSE(ParseMasteredProbSource("new").ok());
}

TEST(ObjectivesTest, ValidateOptionsNamesTheKey) {
  EXPECT_TRUE(ValidatePolicyLossOptions(PolicyLossOptions()).ok());
  auto st = ValidatePolicyLossOptions(PolicyLossOptions().set_dual_clip_c(0.5));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("dual_clip_c"), std::string::npos);
  EXPECT_TRUE(
      ValidatePolicyLossOptions(PolicyLossOptions().set_clip_ratio_low(1.0)).ok());  // no floor
  EXPECT_FALSE(ValidatePolicyLossOptions(PolicyLossOptions().set_clip_ratio_low(1.01)).ok());
  EXPECT_FALSE(ValidatePolicyLossOptions(PolicyLossOptions().set_kl_coef(-1)).ok());
}

TEST(ObjectivesTest, Presets) {
  const auto dapo = PolicyLossPreset("dapo");
  ASSERT_TRUE(dapo.ok());
  EXPECT_EQ(dapo->clip_ratio_low, 0.2);
  EXPECT_EQ(dapo->clip_ratio_high, 0.28);
  EXPECT_EQ(dapo->kl_coef, 0.0);
  EXPECT_EQ(dapo->loss_agg_mode, LossAggMode::kTokenMean);
  EXPECT_EQ(PolicyLossPreset("dr_grpo")->loss_scale_factor, 3000);
  EXPECT_EQ(PolicyLossPreset("gspo")->policy_loss, PolicyLossKind::kGspo);
  EXPECT_EQ(PolicyLossPreset("dler")->dual_clip_c, 10);
  EXPECT_EQ(PolicyLossPreset("grpo")->kl_coef, 0.04);
  for (const char* name : {"grpo", "dapo", "dr_grpo", "gspo", "dler", "campo"})
    EXPECT_TRUE(ValidatePolicyLossOptions(*PolicyLossPreset(name)).ok()) << name;
  auto bad = PolicyLossPreset("ppo");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dr_grpo"), std::string::npos);
}

// The recipes' names are the objective list's policy-gradient names (the schema's choices): each
// builds a valid recipe, and a name outside the list has none.
TEST(ObjectivesTest, EveryListedAlgorithmHasARecipe) {
  for (const auto& name : ObjectiveNames(ObjectiveFamily::kPolicyGradient)) {
    auto p = PolicyLossPreset(name);
    ASSERT_TRUE(p.ok()) << name << ": " << p.status().ToString();
    EXPECT_TRUE(ValidatePolicyLossOptions(*p).ok()) << name;
  }
  const auto campo = PolicyLossPreset("campo");
  ASSERT_TRUE(campo.ok());
  EXPECT_EQ(campo->clip_ratio_low, 0.2);
  EXPECT_EQ(campo->clip_ratio_high, 0.28);
  EXPECT_EQ(campo->dual_clip_c, 10);
  EXPECT_EQ(campo->kl_coef, 0.0);
  EXPECT_EQ(campo->loss_agg_mode, LossAggMode::kTokenMean);
  const auto dler = PolicyLossPreset("dler");
  ASSERT_TRUE(dler.ok());
  EXPECT_EQ(dler->kl_coef, 5e-4);
  EXPECT_EQ(dler->kl_estimator, KlEstimator::kK3);
  auto dpo = PolicyLossPreset("dpo");  // a preference loss, not a policy-gradient recipe
  ASSERT_FALSE(dpo.ok());
  EXPECT_EQ(dpo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dpo.status().message().find("grpo, dr_grpo, dapo, gspo, dler, campo"),
            std::string::npos)
      << dpo.status().message();
}

// r ≡ 1, Â = [1, −3], lengths 2 and 1, T = 3: every aggregation by hand.
TEST(ObjectivesTest, AggregationModesByHand) {
  const Tensor lp = T2({{-1, -2, -5}, {-0.5, -7, -7}});
  const Tensor mask = T2({{1, 1, 0}, {1, 0, 0}});
  TokenLossInputs in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.mask = mask;
  in.advantages = torch::tensor({1.0, -3.0}, kF64);
  auto loss = [&](PolicyLossOptions o) { return PolicyLossFull(in, o).loss.item<double>(); };
  // token-mean: (−1 −1 + 3)/3.
  EXPECT_NEAR(loss(PolicyLossOptions()), 1.0 / 3.0, 1e-15);
  // seq-mean-token-mean: ½(−2/2 + 3/1).
  EXPECT_NEAR(loss(PolicyLossOptions().set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean)), 1.0,
              1e-15);
  // seq-mean-token-sum-norm: (−2 + 3)/L_max with L_max = T = 3, or the configured 4.
  EXPECT_NEAR(loss(PolicyLossOptions().set_loss_agg_mode(LossAggMode::kSeqMeanTokenSumNorm)),
              1.0 / 3.0, 1e-15);
  EXPECT_NEAR(loss(PolicyLossOptions()
                       .set_loss_agg_mode(LossAggMode::kSeqMeanTokenSumNorm)
                       .set_loss_scale_factor(4)),
              0.25, 1e-15);
  const Normalisers n = ComputeNormalisers(mask, PolicyLossOptions());
  EXPECT_EQ(n.total_tokens, 3);
  EXPECT_EQ(n.num_seqs, 2);
  EXPECT_EQ(n.max_len, 3);
  // Data parallel: the global counts replace the local ones.
  const Normalisers g = ComputeNormalisers(mask, PolicyLossOptions(),
                                           GlobalCounts{.total_tokens = 12, .num_seqs = 8});
  EXPECT_NEAR(PolicyLoss(in, g, PolicyLossOptions()).loss.item<double>(), 1.0 / 12.0, 1e-15);
}

// Clip-higher, clip-low and dual-clip on single tokens, by hand.
TEST(ObjectivesTest, ClippingByHand) {
  const double l15 = std::log(1.5), l05 = std::log(0.5), l5 = std::log(5.0);
  TokenLossInputs in;
  in.logprobs = T2({{l15, l05, l5}});
  in.old_logprobs = torch::zeros({1, 3}, kF64);
  in.mask = torch::ones({1, 3}, kF64);
  auto opts = PolicyLossOptions()
                  .set_loss_agg_mode(LossAggMode::kSeqMeanTokenSumNorm)
                  .set_loss_scale_factor(1);
  // Â = +1, r = 1.5, ε_high = 0.28: max(−1.5, −1.28) = −1.28 (clipped).
  in.logprobs = T2({{l15}});
  in.old_logprobs = T2({{0}});
  in.mask = T2({{1}});
  in.advantages = torch::tensor({1.0}, kF64);
  auto out = PolicyLossFull(in, PolicyLossOptions(opts).set_clip_ratio_high(0.28));
  EXPECT_NEAR(out.loss.item<double>(), -1.28, 1e-12);
  EXPECT_EQ(out.stats.clipped_tokens, 1);
  // Â = −1, r = 0.5, ε_low = 0.2: max(0.5, 0.8) = 0.8 (clipped).
  in.logprobs = T2({{l05}});
  in.advantages = torch::tensor({-1.0}, kF64);
  out = PolicyLossFull(in, opts);
  EXPECT_NEAR(out.loss.item<double>(), 0.8, 1e-12);
  // Â = −1, r = 5: max(5, 1.2) = 5 unclipped; dual-clip c = 3 caps it at 3.
  in.logprobs = T2({{l5}});
  out = PolicyLossFull(in, opts);
  EXPECT_NEAR(out.loss.item<double>(), 5.0, 1e-12);
  EXPECT_EQ(out.stats.clipped_tokens, 0);
  out = PolicyLossFull(in, PolicyLossOptions(opts).set_dual_clip_c(3));
  EXPECT_NEAR(out.loss.item<double>(), 3.0, 1e-12);
  EXPECT_EQ(out.stats.dual_clipped_tokens, 1);
  // Dual-clip does not touch positive advantages: Â = +2, r = 5 → max(−10, −2.4) = −2.4.
  in.advantages = torch::tensor({2.0}, kF64);
  out = PolicyLossFull(in, PolicyLossOptions(opts).set_dual_clip_c(3));
  EXPECT_NEAR(out.loss.item<double>(), -2.4, 1e-12);
  EXPECT_NEAR(out.stats.ratio_mean(), 5.0, 1e-12);
  EXPECT_NEAR(out.stats.approx_kl(), -l5, 1e-12);
}

TEST(ObjectivesTest, KlPenaltyByHand) {
  // ℓ = log ½, ℓ_ref = log ¼: x = log ½, k3 = ½ + log 2 − 1.
  const Tensor lp = torch::tensor({std::log(0.5)}, kF64).requires_grad_(true);
  const Tensor ref = torch::tensor({std::log(0.25)}, kF64);
  const Tensor k3 = KlPenalty(lp, ref, KlEstimator::kK3);
  EXPECT_NEAR(k3.item<double>(), 0.5 + std::log(2.0) - 1.0, 1e-15);
  // d k3/dℓ = 1 − e^x = ½.
  k3.sum().backward();
  EXPECT_NEAR(lp.grad().item<double>(), 0.5, 1e-15);
  // k3+: the same value, gradient of ½(ℓ − ℓ_ref)² = ℓ − ℓ_ref = log 2.
  lp.mutable_grad().zero_();
  const Tensor k3p = KlPenalty(lp, ref, KlEstimator::kK3Plus);
  EXPECT_NEAR(k3p.item<double>(), 0.5 + std::log(2.0) - 1.0, 1e-15);
  k3p.sum().backward();
  EXPECT_NEAR(lp.grad().item<double>(), std::log(2.0), 1e-15);
  // Clamps: x is clamped to 20 and the value to 10.
  const Tensor big =
      KlPenalty(torch::tensor({-50.0}, kF64), torch::tensor({0.0}, kF64), KlEstimator::kK3);
  EXPECT_EQ(big.item<double>(), 10.0);
}

TEST(ObjectivesTest, MatchesScalarReferenceOnRandomBatches) {
  const Batch b = RandomBatch(5, 9, 7);
  std::vector<PolicyLossOptions> configs;
  for (auto mode : {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean,
                    LossAggMode::kSeqMeanTokenSumNorm}) {
    configs.push_back(PolicyLossOptions().set_loss_agg_mode(mode));
    configs.push_back(PolicyLossOptions()
                          .set_loss_agg_mode(mode)
                          .set_clip_ratio_high(0.28)
                          .set_dual_clip_c(3)
                          .set_kl_coef(0.04)
                          .set_entropy_coef(0.01)
                          .set_loss_scale_factor(13));
  }
  configs.push_back(PolicyLossOptions()
                        .set_policy_loss(PolicyLossKind::kGspo)
                        .set_clip_ratio_low(3e-4)
                        .set_clip_ratio_high(4e-4));
  configs.push_back(PolicyLossOptions().set_policy_loss(PolicyLossKind::kGspo).set_kl_coef(0.1));
  for (const auto& o : configs) {
    const double got = PolicyLossFull(Inputs(b, b.lp), o).loss.item<double>();
    const double want = ReferenceLoss(b.lp, b.old, b.ref, b.ent, b.mask, b.adv, o);
    EXPECT_TRUE(std::isfinite(got));
    EXPECT_NEAR(got, want, 1e-12) << LossAggModeName(o.loss_agg_mode) << " "
                                  << PolicyLossKindName(o.policy_loss);
  }
}

// Σ over chunks of loss_chunk == the unchunked loss, values and gradients, every mode + GSPO.
TEST(ObjectivesTest, ChunkedEqualsUnchunked) {
  const Batch b = RandomBatch(4, 11, 3);
  std::vector<PolicyLossOptions> configs;
  for (auto mode :
       {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean, LossAggMode::kSeqMeanTokenSumNorm})
    configs.push_back(PolicyLossOptions()
                          .set_loss_agg_mode(mode)
                          .set_clip_ratio_high(0.28)
                          .set_dual_clip_c(3)
                          .set_kl_coef(0.05)
                          .set_kl_estimator(KlEstimator::kK3Plus)
                          .set_entropy_coef(0.02));
  configs.push_back(PolicyLossOptions().set_policy_loss(PolicyLossKind::kGspo).set_kl_coef(0.05));
  const std::vector<std::pair<int64_t, int64_t>> chunks = {{0, 3}, {3, 4}, {4, 8}, {8, 11}};
  for (const auto& o : configs) {
    const Tensor full_leaf = b.lp.clone().requires_grad_(true);
    TokenLossOutput full = PolicyLossFull(Inputs(b, full_leaf), o);
    full.loss.backward();

    const Tensor chunk_leaf = b.lp.clone().requires_grad_(true);
    const Normalisers norm = ComputeNormalisers(b.mask, o);
    const Tensor gspo_ratio = GspoSequenceLogRatio(b.lp, b.old, b.mask);
    double total = 0;
    PolicyLossStats stats;
    Tensor gspo_sums = torch::zeros({4}, kF64);
    for (auto [s, e] : chunks) {
      TokenLossInputs in;
      in.logprobs = chunk_leaf.narrow(1, s, e - s);
      in.old_logprobs = b.old.narrow(1, s, e - s);
      in.ref_logprobs = b.ref.narrow(1, s, e - s);
      in.entropy = b.ent.narrow(1, s, e - s);
      in.mask = b.mask.narrow(1, s, e - s);
      in.advantages = b.adv;
      in.gspo_seq_log_ratio = gspo_ratio;
      gspo_sums += GspoLogRatioSums(in.logprobs, in.old_logprobs, in.mask);
      TokenLossOutput out = PolicyLoss(in, norm, o);
      out.loss.backward();
      total += out.loss.item<double>();
      stats.Merge(out.stats);
    }
    EXPECT_NEAR(total, full.loss.item<double>(), 1e-13);
    EXPECT_TRUE(torch::allclose(chunk_leaf.grad(), full_leaf.grad(), 0, 1e-14));
    EXPECT_FALSE(torch::any(torch::isnan(chunk_leaf.grad())).item<bool>());
    EXPECT_EQ(stats.tokens, full.stats.tokens);
    EXPECT_EQ(stats.clipped_tokens, full.stats.clipped_tokens);
    EXPECT_NEAR(stats.ratio_sum, full.stats.ratio_sum, 1e-12);
    // The per-chunk log-ratio sums reassemble GSPO's sequence log-ratio.
    const Tensor len = b.mask.sum(1).clamp_min(1);
    EXPECT_TRUE(torch::allclose(gspo_sums / len, gspo_ratio, 0, 1e-14));
  }
}

// A tiny model: logits = x·Wᵀ + bias over a 7-token vocabulary, logprobs via log_softmax/gather.
struct TinyModel {
  Tensor weight, bias, x, targets;
  explicit TinyModel(int64_t B, int64_t T, uint64_t seed) {
    torch::manual_seed(seed);
    weight = torch::randn({7, 4}, kF64).requires_grad_(true);
    bias = torch::randn({7}, kF64).requires_grad_(true);
    x = torch::randn({B, T, 4}, kF64);
    targets = torch::randint(0, 7, {B, T}, torch::kInt64);
  }
  Tensor Logits() const { return torch::matmul(x, weight.t()) + bias; }
};

// Max relative error between autograd and central finite differences over every parameter entry.
template <typename LossFn>
double GradCheck(TinyModel& m, LossFn loss_fn) {
  return chainrl::testing::MaxRelativeGradientError({m.weight, m.bias}, loss_fn);
}

TEST(ObjectivesTest, FiniteDifferenceGradients) {
  TinyModel m(3, 6, 11);
  Tensor mask = torch::ones({3, 6}, kF64);
  mask[0][5] = 0;
  mask[2][3] = mask[2][4] = mask[2][5] = 0;
  Tensor old, ref;
  {
    torch::NoGradGuard ng;
    const Tensor lp0 = TokenLogprobs(m.Logits(), m.targets);
    old = lp0 + 0.15 * torch::randn_like(lp0);
    ref = lp0 + 0.3 * torch::randn_like(lp0);
  }
  const Tensor adv = torch::tensor({0.7, -1.3, 0.4}, kF64);
  std::vector<std::pair<const char*, PolicyLossOptions>> configs = {
      {"grpo+k3+entropy", PolicyLossOptions()
                              .set_loss_agg_mode(LossAggMode::kSeqMeanTokenMean)
                              .set_kl_coef(0.04)
                              .set_entropy_coef(0.01)},
      {"dapo", PolicyLossOptions().set_clip_ratio_high(0.28).set_dual_clip_c(3)},
      {"dr_grpo", PolicyLossOptions().set_loss_agg_mode(LossAggMode::kSeqMeanTokenSumNorm)},
      {"gspo", PolicyLossOptions()
                   .set_policy_loss(PolicyLossKind::kGspo)
                   .set_clip_ratio_low(0.1)
                   .set_clip_ratio_high(0.1)},
  };
  for (const auto& [name, o] : configs) {
    auto fn = [&, o = o] {
      const Tensor logits = m.Logits();
      TokenLossInputs in;
      in.logprobs = TokenLogprobs(logits, m.targets);
      in.old_logprobs = old;
      in.ref_logprobs = ref;
      in.entropy = TokenEntropy(logits);
      in.mask = mask;
      in.advantages = adv;
      return PolicyLossFull(in, o).loss;
    };
    const double err = GradCheck(m, fn);
    EXPECT_LT(err, 1e-6) << name;
    std::printf("max relative gradient error %-16s %.3g\n", name, err);
  }
  // SFT: mean token cross-entropy.
  const double total = mask.sum().item<double>();
  const double err =
      GradCheck(m, [&] { return SftLoss(TokenLogprobs(m.Logits(), m.targets), mask, total); });
  EXPECT_LT(err, 1e-6) << "sft";
  std::printf("max relative gradient error %-16s %.3g\n", "sft", err);
}

TEST(ObjectivesTest, SftMatchesNllLossAndChunks) {
  TinyModel m(2, 5, 5);
  Tensor labels = m.targets.clone();
  labels[0][0] = -100;
  labels[1][3] = labels[1][4] = -100;
  const Tensor mask = (labels != -100).to(torch::kFloat64);
  const Tensor logits = m.Logits();
  const Tensor lp = TokenLogprobs(logits, labels);
  const double total = mask.sum().item<double>();
  const Tensor reference = torch::nll_loss(torch::log_softmax(logits, -1).view({-1, 7}),
                                           labels.view({-1}), {}, at::Reduction::Mean, -100);
  EXPECT_NEAR(SftLoss(lp, mask, total).item<double>(), reference.item<double>(), 1e-14);
  const double chunked = SftLoss(lp.narrow(1, 0, 2), mask.narrow(1, 0, 2), total).item<double>() +
                         SftLoss(lp.narrow(1, 2, 3), mask.narrow(1, 2, 3), total).item<double>();
  EXPECT_NEAR(chunked, reference.item<double>(), 1e-14);
  EXPECT_EQ(SftLoss(lp, torch::zeros_like(mask), 0).item<double>(), 0.0);
}

TEST(ObjectivesTest, TokenEntropyOfUniformIsLogV) {
  const Tensor logits = torch::zeros({1, 2, 7}, kF64);
  EXPECT_NEAR(TokenEntropy(logits)[0][1].item<double>(), std::log(7.0), 1e-14);
  // Temperature scaling: logits [0, log 2] at T = 1 give p = [1/3, 2/3].
  const Tensor l2 = torch::tensor({0.0, std::log(2.0)}, kF64).view({1, 1, 2});
  EXPECT_NEAR(TokenLogprobs(l2, torch::tensor({{1}}, torch::kInt64))[0][0].item<double>(),
              std::log(2.0 / 3.0), 1e-14);
  // At T = 2 the logits halve: p = [1/(1+√2), √2/(1+√2)].
  EXPECT_NEAR(TokenLogprobs(l2, torch::tensor({{1}}, torch::kInt64), 2.0)[0][0].item<double>(),
              std::log(std::sqrt(2.0) / (1 + std::sqrt(2.0))), 1e-14);
}

TEST(ObjectivesTest, EmptyResponsesAndEmptyBatch) {
  // A batch whose responses are all empty: exactly 0, zero gradient, no NaN.
  const Tensor lp =
      torch::full({2, 3}, -std::numeric_limits<double>::infinity(), kF64).requires_grad_(true);
  for (auto mode : {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean,
                    LossAggMode::kSeqMeanTokenSumNorm}) {
    TokenLossInputs in;
    in.logprobs = lp;
    in.old_logprobs = torch::zeros({2, 3}, kF64);
    in.mask = torch::zeros({2, 3}, kF64);
    in.advantages = torch::ones({2}, kF64);
    auto out = PolicyLossFull(in, PolicyLossOptions().set_loss_agg_mode(mode));
    EXPECT_EQ(out.loss.item<double>(), 0.0);
    out.loss.backward();
    EXPECT_EQ(lp.grad().abs().sum().item<double>(), 0.0);
    EXPECT_EQ(out.stats.tokens, 0);
  }
  // GSPO with an empty response: length 1 is used, no NaN.
  EXPECT_EQ(GspoSequenceLogRatio(torch::zeros({1, 2}, kF64), torch::ones({1, 2}, kF64),
                                 torch::zeros({1, 2}, kF64))
                .item<double>(),
            0.0);
}

TEST(ObjectivesTest, TruncatedSamplesLeaveLossAndDenominator) {
  // Sample 1 is truncated: masked out entirely, token-mean divides by sample 0's 2 tokens only.
  const Tensor mask = T2({{1, 1, 0}, {1, 1, 1}});
  const Tensor truncated = torch::tensor({0.0, 1.0}, kF64);
  const Tensor kept = mask * (1 - truncated).unsqueeze(1);  // overlong filtering's row mask
  EXPECT_TRUE(torch::equal(kept, T2({{1, 1, 0}, {0, 0, 0}})));
  TokenLossInputs in;
  in.logprobs = torch::zeros({2, 3}, kF64);
  in.old_logprobs = in.logprobs;
  in.mask = kept;
  in.advantages = torch::tensor({2.0, 5.0}, kF64);
  EXPECT_NEAR(PolicyLossFull(in, PolicyLossOptions()).loss.item<double>(), -2.0, 1e-15);
}

TEST(ObjectivesTest, LogprobMismatchByHand) {
  const Tensor train = T2({{-1.0, -2.0, -3.0}});
  const Tensor rollout = T2({{-1.5, -2.0, -9.0}});
  const Tensor mask = T2({{1, 1, 0}});
  const LogprobMismatch mm = ComputeLogprobMismatch(train, rollout, mask);
  EXPECT_EQ(mm.tokens, 2);
  EXPECT_NEAR(mm.mean_abs(), 0.25, 1e-15);
  EXPECT_NEAR(mm.abs_max, 0.5, 1e-15);
  // x = ℓ_rollout − ℓ_train = −0.5 on the first token: e^x − x − 1, mean over 2 tokens.
  EXPECT_NEAR(mm.k3_kl(), (std::exp(-0.5) + 0.5 - 1) / 2, 1e-15);
  // PolicyLoss reports it when rollout logprobs are given.
  TokenLossInputs in;
  in.logprobs = train;
  in.old_logprobs = train;
  in.mask = mask;
  in.advantages = torch::zeros({1}, kF64);
  in.rollout_logprobs = rollout;
  const auto out = PolicyLossFull(in, PolicyLossOptions());
  EXPECT_EQ(out.stats.mismatch_abs_max, 0.5);
  EXPECT_NEAR(out.stats.mismatch_abs_sum, 0.5, 1e-15);
}

TEST(ObjectivesTest, MasteredPositiveTokenMask) {
  // Sample 0: positive, confident (H̄ = 0.1): token 0 (p = 0.995) dropped, token 1 (p = 0.5) kept.
  // Sample 1: positive but H̄ = 0.5 ≥ σ: nothing dropped. Sample 2: R = 0: nothing dropped.
  const Tensor old = T2({{std::log(0.995), std::log(0.5)},
                         {std::log(0.999), std::log(0.999)},
                         {std::log(0.999), std::log(0.999)}});
  const Tensor ent = T2({{0.1, 0.1}, {0.5, 0.5}, {0.0, 0.0}});
  const Tensor mask = torch::ones({3, 2}, kF64);
  const Tensor rewards = torch::tensor({1.0, 1.0, 0.0}, kF64);
  const Tensor h = MeanSequenceEntropy(ent, mask);
  EXPECT_NEAR(h[1].item<double>(), 0.5, 1e-15);
  const Tensor keep =
      MasteredPositiveTokenKeepMask(old, Tensor(), mask, rewards, h, MasteredTokenMaskOptions());
  EXPECT_TRUE(torch::equal(keep, T2({{0, 1}, {1, 1}, {1, 1}})));
  // Current-policy source: ℓ = log 0.5 everywhere keeps everything.
  const Tensor keep_cur = MasteredPositiveTokenKeepMask(
      old, torch::full({3, 2}, std::log(0.5), kF64), mask, rewards, h,
      MasteredTokenMaskOptions().set_prob_source(MasteredProbSource::kCurrent));
  EXPECT_TRUE(torch::equal(keep_cur, mask));
  // The denominator stays Σ|o|: token-mean loss with the keep mask divides by 6, not 5.
  TokenLossInputs in;
  in.logprobs = old;
  in.old_logprobs = old;
  in.mask = mask * keep;
  in.advantages = torch::tensor({1.0, 1.0, 1.0}, kF64);
  const auto out =
      PolicyLoss(in, ComputeNormalisers(mask, PolicyLossOptions()), PolicyLossOptions());
  EXPECT_NEAR(out.loss.item<double>(), -5.0 / 6.0, 1e-14);
}

// Rollout correction (docs/ALGORITHMS.md §2.4) by hand. Two rows, ℓ_old − ℓ_rollout per token:
// row 0: log 3, log 0.5, 0 (ratios 3, 0.5, 1); row 1: log 1.2, log 1.1, padding.
TEST(ObjectivesTest, RolloutCorrectionWeightsByHand) {
  const double l3 = std::log(3.0), lh = std::log(0.5), l12 = std::log(1.2), l11 = std::log(1.1);
  const Tensor old = T2({{l3 - 1, lh - 2, -0.5}, {l12 - 0.7, l11 - 0.1, 5.0}});
  const Tensor rollout = T2({{-1, -2, -0.5}, {-0.7, -0.1, -1e9}});
  const Tensor mask = T2({{1, 1, 1}, {1, 1, 0}});
  auto weights = [&](RolloutCorrection c) {
    return RolloutCorrectionWeights(old, rollout, mask, c);
  };
  RolloutCorrection c;
  // Token TIS at C = 2: min(ρ_t, 2).
  c.is = RolloutIsLevel::kToken;
  Tensor w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{2.0, 0.5, 1.0}, {1.2, 1.1, 0.0}}), 0, 1e-12)) << w;
  // Sequence TIS at C = 2: row 0's product 1.5, row 1's 1.32; every token of the row.
  c.is = RolloutIsLevel::kSequence;
  w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{1.5, 1.5, 1.5}, {1.32, 1.32, 0.0}}), 0, 1e-12)) << w;
  c.is_cap = 1.4;
  w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{1.4, 1.4, 1.4}, {1.32, 1.32, 0.0}}), 0, 1e-12)) << w;
  // Token mask (IcePop) in [0.6, 2]: ratio 3 and 0.5 dropped; with token TIS at C = 5 the kept
  // tokens keep their ratio as weight.
  c = RolloutCorrection();
  c.mask = RolloutMaskLevel::kToken;
  c.mask_low = 0.6;
  c.mask_high = 2.0;
  w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{0, 0, 1}, {1, 1, 0}}), 0, 1e-12)) << w;
  c.is = RolloutIsLevel::kToken;
  c.is_cap = 5;
  w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{0, 0, 1}, {1.2, 1.1, 0}}), 0, 1e-12)) << w;
  // Sequence mask in [0.6, 1.4]: row 0's product 1.5 is out, row 1's 1.32 in.
  c = RolloutCorrection();
  c.mask = RolloutMaskLevel::kSequence;
  c.mask_low = 0.6;
  c.mask_high = 1.4;
  w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{0, 0, 0}, {1, 1, 0}}), 0, 1e-12)) << w;
  // Geometric mean in [0.8, 1.148]: row 0's 1.5^(1/3) = 1.1447 in, row 1's sqrt(1.32) = 1.1489
  // out (the padding is not a token of the row).
  c.mask = RolloutMaskLevel::kGeometric;
  c.mask_low = 0.8;
  c.mask_high = 1.148;
  w = weights(c);
  EXPECT_TRUE(torch::allclose(w, T2({{1, 1, 1}, {0, 0, 0}}), 0, 1e-12)) << w;
  // A huge ratio cannot overflow the capped weight.
  const Tensor far = T2({{800.0}});
  c = RolloutCorrection();
  c.is = RolloutIsLevel::kSequence;
  w = RolloutCorrectionWeights(far, T2({{0.0}}), T2({{1}}), c);
  EXPECT_DOUBLE_EQ(w.item<double>(), 2.0);

  EXPECT_EQ(*ParseRolloutIsLevel("sequence"), RolloutIsLevel::kSequence);
  EXPECT_EQ(*ParseRolloutMaskLevel("geometric"), RolloutMaskLevel::kGeometric);
  EXPECT_FALSE(ParseRolloutMaskLevel("icepop").ok());
  EXPECT_FALSE(ValidatePolicyLossOptions(PolicyLossOptions().set_rollout_correction(
                                             RolloutCorrection{RolloutIsLevel::kToken, 0.5}))
                   .ok());
}

// The weight multiplies the policy-gradient term only: loss and gradient are the weighted ones,
// the KL term is untouched, and chunks of whole-row weights add up to the whole.
TEST(ObjectivesTest, RolloutCorrectionWeighsThePolicyGradientTerm) {
  const Batch b = RandomBatch(4, 11, 5);
  RolloutCorrection rc;
  rc.is = RolloutIsLevel::kSequence;
  rc.is_cap = 3;
  rc.mask = RolloutMaskLevel::kToken;
  rc.mask_low = 0.7;
  rc.mask_high = 1.6;
  const Tensor rollout = b.old + 0.25 * torch::randn_like(b.old);
  const Tensor weights = RolloutCorrectionWeights(b.old, rollout, b.mask, rc);
  ASSERT_GT((weights == 0).logical_and(b.mask != 0).sum().item<int64_t>(), 0) << "some dropped";
  auto o = PolicyLossOptions()
               .set_loss_agg_mode(LossAggMode::kTokenMean)
               .set_clip_ratio_high(0.28)
               .set_kl_coef(0.1)
               .set_rollout_correction(rc);
  // By hand: Σ w_t·L^pg_t + β·KL_t over the normaliser, from the unweighted per-token pieces.
  const Normalisers norm = ComputeNormalisers(b.mask, o);
  const Tensor leaf = b.lp.clone().requires_grad_(true);
  TokenLossInputs in = Inputs(b, leaf);
  in.entropy = Tensor();
  in.rollout_logprobs = rollout;
  in.rollout_weights = weights;
  TokenLossOutput weighted = PolicyLoss(in, norm, o);
  weighted.loss.backward();
  double want = 0, total_tokens = b.mask.sum().item<double>(), wsum = 0, zeroed = 0;
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t t = 0; t < 11; ++t) {
      if (At(b.mask, i, t) == 0) continue;
      const double r = std::exp(At(b.lp, i, t) - At(b.old, i, t));
      const double a = b.adv[i].item<double>();
      const double pg = std::max(-a * r, -a * std::clamp(r, 0.8, 1.28));
      const double x = At(b.ref, i, t) - At(b.lp, i, t);
      const double kl = std::clamp(std::exp(x) - x - 1, -10.0, 10.0);
      want += At(weights, i, t) * pg + 0.1 * kl;
      wsum += At(weights, i, t);
      zeroed += At(weights, i, t) == 0;
    }
  }
  EXPECT_NEAR(weighted.loss.item<double>(), want / total_tokens, 1e-12);
  EXPECT_NEAR(weighted.stats.correction_weight_sum, wsum, 1e-12);
  EXPECT_EQ(weighted.stats.correction_zeroed, zeroed);
  // Chunks of the whole rows' weights give the whole loss and gradient.
  const Tensor chunk_leaf = b.lp.clone().requires_grad_(true);
  double total = 0;
  for (auto [s, e] : std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 5}, {5, 11}}) {
    TokenLossInputs c = Inputs(b, chunk_leaf.narrow(1, s, e - s));
    c.entropy = Tensor();
    for (Tensor* t : {&c.old_logprobs, &c.ref_logprobs, &c.mask}) *t = t->narrow(1, s, e - s);
    c.rollout_logprobs = rollout.narrow(1, s, e - s);
    c.rollout_weights = weights.narrow(1, s, e - s);
    TokenLossOutput out = PolicyLoss(c, norm, o);
    out.loss.backward();
    total += out.loss.item<double>();
  }
  EXPECT_NEAR(total, weighted.loss.item<double>(), 1e-13);
  EXPECT_TRUE(torch::allclose(chunk_leaf.grad(), leaf.grad(), 0, 1e-14));
  // A dropped token has no policy-gradient term: its gradient is the KL term's alone.
  const Tensor kl_leaf = b.lp.clone().requires_grad_(true);
  TokenLossInputs only_kl = Inputs(b, kl_leaf);
  only_kl.entropy = Tensor();
  only_kl.rollout_weights = torch::zeros_like(weights);
  PolicyLoss(only_kl, norm, o).loss.backward();
  const Tensor dropped = (weights == 0) & (b.mask != 0);
  EXPECT_TRUE(torch::allclose(leaf.grad().masked_select(dropped),
                              kl_leaf.grad().masked_select(dropped), 0, 1e-14));
}

// Finite differences through the weighted loss on a tiny model.
TEST(ObjectivesTest, RolloutCorrectionFiniteDifferenceGradients) {
  TinyModel m(3, 6, 21);
  const Tensor mask = torch::ones({3, 6}, kF64);
  const Tensor adv = torch::tensor({1.0, -0.5, 0.7}, kF64);
  Tensor lp0;
  {
    torch::NoGradGuard ng;
    lp0 = torch::log_softmax(m.Logits(), -1).gather(-1, m.targets.unsqueeze(-1)).squeeze(-1);
  }
  const Tensor old = lp0 + 0.1 * torch::randn_like(lp0);
  const Tensor rollout = old + 0.3 * torch::randn_like(lp0);
  RolloutCorrection rc;
  rc.is = RolloutIsLevel::kToken;
  rc.mask = RolloutMaskLevel::kGeometric;
  rc.mask_low = 0.5;
  rc.mask_high = 2.0;
  const Tensor w = RolloutCorrectionWeights(old, rollout, mask, rc);
  const auto o = PolicyLossOptions().set_rollout_correction(rc);
  const Normalisers norm = ComputeNormalisers(mask, o);
  const double err = GradCheck(m, [&] {
    TokenLossInputs in;
    in.logprobs =
        torch::log_softmax(m.Logits(), -1).gather(-1, m.targets.unsqueeze(-1)).squeeze(-1);
    in.old_logprobs = old;
    in.mask = mask;
    in.advantages = adv;
    in.rollout_logprobs = rollout;
    in.rollout_weights = w;
    return PolicyLoss(in, norm, o).loss;
  });
  EXPECT_LT(err, 1e-6);
}

}  // namespace
}  // namespace chainrl::learner
