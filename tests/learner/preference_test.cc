// Tests for learner/preference.h: DPO/cDPO/IPO/SimPO/LOGO against hand values, the two-pass
// streaming coefficients against the direct gradient, finite-difference gradients on a tiny model,
// online pair selection and DRPO.
#include "learner/preference.h"

#include <gtest/gtest.h>

#include <cmath>

#include "learner/objectives.h"
#include "learner/rl_step.h"
#include "tests/learner/grad_check.h"

namespace chainrl::learner {
namespace {

using torch::Tensor;
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

double LogSigmoid(double x) { return -std::log1p(std::exp(-x)); }

Tensor V(std::initializer_list<double> v) { return torch::tensor(std::vector<double>(v), kF64); }

PreferenceInputs OnePair() {
  PreferenceInputs in;
  in.chosen_logps = V({-10.0});
  in.rejected_logps = V({-14.0});
  in.ref_chosen_logps = V({-11.0});
  in.ref_rejected_logps = V({-12.0});
  in.chosen_lengths = V({5});
  in.rejected_lengths = V({8});
  return in;
}

TEST(PreferenceTest, ParseAndValidate) {
  EXPECT_EQ(*ParsePreferenceLossType("sigmoid"), PreferenceLossType::kDpo);
  EXPECT_EQ(*ParsePreferenceLossType("logo"), PreferenceLossType::kLogo);
  auto bad = ParsePreferenceLossType("kto");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("simpo"), std::string::npos);
  EXPECT_FALSE(ValidatePreferenceOptions(PreferenceOptions().set_label_smoothing(0.5)).ok());
  EXPECT_FALSE(ValidatePreferenceOptions(PreferenceOptions().set_beta(0)).ok());
  EXPECT_FALSE(ValidatePreferenceOptions(PreferenceOptions().set_hinge(true)).ok());
}

TEST(PreferenceTest, DpoFamilyByHand) {
  const PreferenceInputs in = OnePair();
  // h = (−10 + 14) − (−11 + 12) = 3.
  const double h = 3.0, beta = 0.1;
  auto dpo = PreferenceLoss(in, PreferenceOptions().set_beta(beta));
  ASSERT_TRUE(dpo.ok());
  EXPECT_NEAR(dpo->loss.item<double>(), -LogSigmoid(beta * h), 1e-14);
  EXPECT_NEAR(dpo->chosen_reward.item<double>(), 0.1, 1e-14);     // β(−10 + 11)
  EXPECT_NEAR(dpo->rejected_reward.item<double>(), -0.2, 1e-14);  // β(−14 + 12)
  EXPECT_EQ(dpo->reward_accuracy, 1.0);
  // cDPO, ε = 0.2.
  auto cdpo = PreferenceLoss(in, PreferenceOptions().set_beta(beta).set_label_smoothing(0.2));
  EXPECT_NEAR(cdpo->loss.item<double>(), -0.8 * LogSigmoid(0.3) - 0.2 * LogSigmoid(-0.3), 1e-14);
  // IPO: (h − 1/(2β))² = (3 − 5)².
  auto ipo = PreferenceLoss(
      in, PreferenceOptions().set_beta(beta).set_loss_type(PreferenceLossType::kIpo));
  EXPECT_NEAR(ipo->loss.item<double>(), 4.0, 1e-14);
  // Reference-free DPO: h = 4.
  auto free = PreferenceLoss(in, PreferenceOptions().set_beta(beta).set_reference_free(true));
  EXPECT_NEAR(free->loss.item<double>(), -LogSigmoid(0.4), 1e-14);
  // SimPO β = 2, γ/β = 0.25: r_w = 2·(−10)/5 = −4, r_l = 2·(−14)/8 = −3.5, z = −0.5 − 0.5 = −1.
  auto simpo = PreferenceLoss(in, PreferenceOptions()
                                      .set_loss_type(PreferenceLossType::kSimpo)
                                      .set_beta(2)
                                      .set_gamma_beta_ratio(0.25));
  EXPECT_NEAR(simpo->loss.item<double>(), -LogSigmoid(-1.0), 1e-14);
  auto hinge = PreferenceLoss(
      in,
      PreferenceOptions().set_loss_type(PreferenceLossType::kSimpo).set_beta(2).set_hinge(true));
  EXPECT_NEAR(hinge->loss.item<double>(), 2.0, 1e-14);  // relu(1 − (−1))
  // SimPO + sft_weight 0.5: adds 0.5·(10/5).
  auto sft = PreferenceLoss(in, PreferenceOptions()
                                    .set_loss_type(PreferenceLossType::kSimpo)
                                    .set_beta(2)
                                    .set_sft_weight(0.5));
  EXPECT_NEAR(sft->loss.item<double>(), -LogSigmoid(-1.0) + 1.0, 1e-14);
}

TEST(PreferenceTest, LogoMeansOverRejectedSamples) {
  PreferenceInputs in;
  in.chosen_logps = V({-10.0, -6.0});
  in.rejected_logps = torch::tensor({{-20.0, -8.0}, {-9.0, -12.0}}, kF64);
  in.chosen_lengths = V({10, 4});
  in.rejected_lengths = torch::tensor({{10.0, 4.0}, {3.0, 4.0}}, kF64);
  const auto o = PreferenceOptions()
                     .set_loss_type(PreferenceLossType::kLogo)
                     .set_beta(10)
                     .set_gamma_beta_ratio(0.3)
                     .set_sft_weight(0.1);
  auto out = PreferenceLoss(in, o);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // Pair 0: r_w = −10, r_l = mean(−20, −20) = −20, z = 10 − 3 = 7; CE = 1.
  // Pair 1: r_w = −15, r_l = mean(−30, −30) = −30, z = 15 − 3 = 12; CE = 1.5.
  const double want = 0.5 * ((-LogSigmoid(7) + 0.1 * 1.0) + (-LogSigmoid(12) + 0.1 * 1.5));
  EXPECT_NEAR(out->loss.item<double>(), want, 1e-13);
  // Several rejected samples need LOGO.
  EXPECT_FALSE(PreferenceLoss(in, PreferenceOptions()).ok());
}

TEST(PreferenceTest, RejectsEmptyResponsesAndMissingReference) {
  PreferenceInputs in = OnePair();
  in.rejected_lengths = V({0});
  auto r = PreferenceLoss(in, PreferenceOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rejected_lengths[0]"), std::string::npos);
  in = OnePair();
  in.ref_chosen_logps = Tensor();
  r = PreferenceLoss(in, PreferenceOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ref_chosen_logps"), std::string::npos);
  // SimPO needs no reference.
  EXPECT_TRUE(
      PreferenceLoss(in, PreferenceOptions().set_loss_type(PreferenceLossType::kSimpo)).ok());
}

// Tiny model: logits over 7 tokens from a linear layer; chosen/rejected are sequences of it.
struct Tiny {
  Tensor weight, x_w, x_l, y_w, y_l, m_w, m_l;
  Tiny() {
    torch::manual_seed(3);
    weight = torch::randn({7, 4}, kF64).requires_grad_(true);
    x_w = torch::randn({3, 6, 4}, kF64);
    x_l = torch::randn({3, 6, 4}, kF64);
    y_w = torch::randint(0, 7, {3, 6}, torch::kInt64);
    y_l = torch::randint(0, 7, {3, 6}, torch::kInt64);
    m_w = torch::ones({3, 6}, kF64);
    m_l = torch::ones({3, 6}, kF64);
    m_w[1][5] = m_w[1][4] = 0;
    m_l[2][5] = 0;
  }
  Tensor Lp(const Tensor& x, const Tensor& y) const {
    return TokenLogprobs(torch::matmul(x, weight.t()), y);
  }
  PreferenceInputs Totals() const {
    PreferenceInputs in;
    in.chosen_logps = (Lp(x_w, y_w) * m_w).sum(1);
    in.rejected_logps = (Lp(x_l, y_l) * m_l).sum(1);
    in.ref_chosen_logps = in.chosen_logps.detach() + 0.3;
    in.ref_rejected_logps = in.rejected_logps.detach() - 0.2;
    in.chosen_lengths = m_w.sum(1);
    in.rejected_lengths = m_l.sum(1);
    return in;
  }
};

std::vector<std::pair<const char*, PreferenceOptions>> AllConfigs() {
  return {{"dpo", PreferenceOptions().set_beta(0.5)},
          {"cdpo", PreferenceOptions().set_beta(0.5).set_label_smoothing(0.1)},
          {"ipo", PreferenceOptions().set_beta(0.5).set_loss_type(PreferenceLossType::kIpo)},
          {"simpo", PreferenceOptions()
                        .set_beta(2)
                        .set_loss_type(PreferenceLossType::kSimpo)
                        .set_sft_weight(0.2)},
          {"simpo-hinge", PreferenceOptions().set_beta(2).set_hinge(true).set_loss_type(
                              PreferenceLossType::kSimpo)}};
}

// The two-pass helper: Σ_chunks backward(Σ_b g_b · chunk logprob sums) == direct gradient.
TEST(PreferenceTest, TwoPassStreamingEqualsDirectGradient) {
  Tiny t;
  for (const auto& [name, o] : AllConfigs()) {
    // Direct.
    t.weight.mutable_grad() = Tensor();
    PreferenceInputs direct = t.Totals();
    const Tensor ref_w = direct.ref_chosen_logps, ref_l = direct.ref_rejected_logps;
    PreferenceLoss(direct, o)->loss.backward();
    const Tensor g_direct = t.weight.grad().clone();
    // Pass 1: no-grad totals → coefficients. Pass 2: chunked backward.
    t.weight.mutable_grad() = Tensor();
    PreferenceInputs totals;
    {
      torch::NoGradGuard ng;
      totals = t.Totals();
    }
    totals.ref_chosen_logps = ref_w;
    totals.ref_rejected_logps = ref_l;
    auto coef = PreferenceSequenceGrads(totals, o);
    ASSERT_TRUE(coef.ok());
    for (auto [s, e] : std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 5}, {5, 6}}) {
      const Tensor cw = (t.Lp(t.x_w, t.y_w).narrow(1, s, e - s) * t.m_w.narrow(1, s, e - s)).sum(1);
      const Tensor cl = (t.Lp(t.x_l, t.y_l).narrow(1, s, e - s) * t.m_l.narrow(1, s, e - s)).sum(1);
      ((coef->chosen * cw).sum() + (coef->rejected * cl).sum()).backward();
    }
    EXPECT_TRUE(torch::allclose(t.weight.grad(), g_direct, 1e-12, 1e-14)) << name;
  }
  // DPO's coefficient in closed form: dL/dc_w = β(σ(βh) − 1)/B.
  PreferenceInputs one = OnePair();
  auto g = PreferenceSequenceGrads(one, PreferenceOptions().set_beta(0.1));
  const double sig = 1 / (1 + std::exp(-0.3));
  EXPECT_NEAR(g->chosen.item<double>(), 0.1 * (sig - 1), 1e-14);
  EXPECT_NEAR(g->rejected.item<double>(), -0.1 * (sig - 1), 1e-14);
}

TEST(PreferenceTest, FiniteDifferenceGradients) {
  Tiny t;
  PreferenceInputs base;
  {
    torch::NoGradGuard ng;
    base = t.Totals();
  }
  auto configs = AllConfigs();
  configs.push_back({"reference-free", PreferenceOptions().set_beta(0.5).set_reference_free(true)});
  for (const auto& [name, o] : configs) {
    auto loss = [&, o = o] {
      PreferenceInputs in = t.Totals();
      in.ref_chosen_logps = base.ref_chosen_logps;
      in.ref_rejected_logps = base.ref_rejected_logps;
      return PreferenceLoss(in, o)->loss;
    };
    const double worst = chainrl::testing::MaxRelativeGradientError({t.weight}, loss);
    EXPECT_LT(worst, 1e-6) << name;
    std::printf("max relative gradient error %-16s %.3g\n", name, worst);
  }
}

// LOGO with M = 2 rejected samples per pair: autograd against central differences.
TEST(PreferenceTest, LogoFiniteDifferenceGradient) {
  Tiny t;
  torch::manual_seed(8);
  const Tensor x_l2 = torch::randn({3, 6, 4}, kF64);
  const Tensor y_l2 = torch::randint(0, 7, {3, 6}, torch::kInt64);
  const auto o = PreferenceOptions()
                     .set_loss_type(PreferenceLossType::kLogo)
                     .set_beta(10)
                     .set_gamma_beta_ratio(0.3)
                     .set_sft_weight(0.1);
  auto loss = [&] {
    PreferenceInputs in;
    in.chosen_logps = (t.Lp(t.x_w, t.y_w) * t.m_w).sum(1);
    in.rejected_logps =
        torch::stack({(t.Lp(t.x_l, t.y_l) * t.m_l).sum(1), t.Lp(x_l2, y_l2).sum(1)}, 1);
    in.chosen_lengths = t.m_w.sum(1);
    in.rejected_lengths = torch::stack({t.m_l.sum(1), torch::full({3}, 6.0, kF64)}, 1);
    return PreferenceLoss(in, o)->loss;
  };
  const double worst = chainrl::testing::MaxRelativeGradientError({t.weight}, loss);
  EXPECT_LT(worst, 1e-6);
  std::printf("max relative gradient error %-16s %.3g\n", "logo", worst);
}

TEST(PreferenceTest, OnlinePairSelection) {
  // Best 0.9 (index 2), worst 0.1 (index 3; the tie at index 1 = 0.5 is not lowest).
  const std::vector<double> r = {0.5, 0.5, 0.9, 0.1};
  auto p = SelectGroupPair(r);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->chosen, 2);
  EXPECT_EQ(p->rejected, std::vector<int64_t>({3}));
  // M = 2: the two lowest, ties by index.
  p = SelectGroupPair(r, PairSelectionOptions().set_num_rejected(2));
  EXPECT_EQ(p->rejected, std::vector<int64_t>({3, 0}));
  // All equal, too small a margin, or too few samples: no pair.
  EXPECT_FALSE(SelectGroupPair(std::vector<double>{1, 1, 1}).has_value());
  EXPECT_FALSE(SelectGroupPair(r, PairSelectionOptions().set_min_margin(0.8)).has_value());
  EXPECT_FALSE(SelectGroupPair(std::vector<double>{1}).has_value());
  // The online pairs of a step: per group, best against worst, as token sequences.
  auto sample = [](double reward, std::vector<int32_t> tokens) {
    SampleData s;
    s.reward = reward;
    s.tokens = std::move(tokens);
    return s;
  };
  std::vector<GroupData> groups(4);
  groups[0].prompt = {1};
  groups[0].samples = {sample(0, {10}), sample(1, {11, 12}), sample(0.5, {13})};
  groups[1].prompt = {2};
  groups[1].samples = {sample(1, {20}), sample(1, {21})};  // all equal: no pair
  groups[2].prompt = {3};
  groups[2].samples = {sample(1, {}), sample(0, {31})};  // empty chosen response: no pair
  groups[3].prompt = {4};
  groups[3].samples = {sample(0.2, {40}), sample(0.7, {41}), sample(0.1, {})};
  auto pairs = OnlinePreferencePairs(groups, 1);
  ASSERT_EQ(pairs.size(), 1u);  // group 3's worst response is empty: no pair
  EXPECT_EQ(pairs[0].prompt, std::vector<int32_t>({1}));
  EXPECT_EQ(pairs[0].chosen, std::vector<int32_t>({11, 12}));
  ASSERT_EQ(pairs[0].rejected.size(), 1u);
  EXPECT_EQ(pairs[0].rejected[0], std::vector<int32_t>({10}));
  groups[3].samples[2].tokens = {42};
  pairs = OnlinePreferencePairs(groups, 1);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[1].chosen, std::vector<int32_t>({41}));
  EXPECT_EQ(pairs[1].rejected[0], std::vector<int32_t>({42}));
  // LOGO: two rejected; a group of two samples has too few.
  pairs = OnlinePreferencePairs(groups, 2);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].rejected, (std::vector<std::vector<int32_t>>{{10}, {13}}));
  EXPECT_EQ(pairs[1].rejected, (std::vector<std::vector<int32_t>>{{42}, {40}}));
}

TEST(PreferenceTest, DrpoByHand) {
  // Group 0: positives s = −1 (len 100), −2 (len 300); negatives s = −3, −5. Group 1: all
  // correct (contributes 0 but counts in N). L_max = 1000, λ = 0.1, τ = 10.
  const Tensor s = V({-1, -2, -3, -5, -1, -1}).requires_grad_(true);
  const Tensor len = V({100, 300, 50, 50, 10, 10});
  const Tensor cor = V({1, 1, 0, 0, 1, 1});
  const Tensor gid = torch::tensor({0, 0, 0, 0, 1, 1}, torch::kInt64);
  const auto o = DrpoOptions().set_max_length(1000);
  const Tensor loss = DrpoLoss(s, len, cor, gid, Tensor(), o);
  const double w1 = std::exp((1 - 0.1) / 0.1), w2 = std::exp((1 - 0.3) / 0.1);
  const double lme = 10 * std::log(0.5 * (std::exp(-0.3) + std::exp(-0.5)));
  const double j = (w1 * (-1 - lme) + w2 * (-2 - lme)) / (w1 + w2);
  EXPECT_NEAR(loss.item<double>(), -j / 2, 1e-13);
  loss.backward();
  // d/ds of a negative: (1/2)·softmax(s_neg/τ) (the LME gradient), weights sum to 1.
  const double p3 = std::exp(-0.3) / (std::exp(-0.3) + std::exp(-0.5));
  EXPECT_NEAR(s.grad()[2].item<double>(), 0.5 * p3, 1e-13);
  EXPECT_NEAR(s.grad()[0].item<double>(), -0.5 * w1 / (w1 + w2), 1e-13);
  EXPECT_EQ(s.grad()[4].item<double>(), 0.0);
  // No valid group → 0. KL term: sg[β·max(0, KL − δ)]·KL.
  EXPECT_EQ(DrpoLoss(s, len, V({1, 1, 1, 1, 1, 1}), gid, Tensor(), o).item<double>(), 0.0);
  const Tensor kl = torch::tensor(2e-4, kF64).requires_grad_(true);
  const Tensor with_kl = DrpoLoss(s.detach(), len, V({0, 0, 0, 0, 0, 0}), gid, kl, o);
  EXPECT_NEAR(with_kl.item<double>(), 1e3 * 1e-4 * 2e-4, 1e-15);
  with_kl.backward();
  EXPECT_NEAR(kl.grad().item<double>(), 1e3 * 1e-4, 1e-12);
}

}  // namespace
}  // namespace chainrl::learner
