// The learner process's shaping (process_shaping.h) on small groups against hand-computed numbers
// for every length method and the difficulty soft weighting, with the edge cases; LASER-D's state
// across steps and through JSON; DMMPT and caller-given advantages in RunPolicyUpdate; stage
// options reaching the optimiser.
#include "learner/process_shaping.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "apps/run_config.h"
#include "learner/optimizer.h"
#include "learner/preference.h"
#include "learner/rl_step.h"
#include "model/decoder.h"
#include "tests/model/tiny_model.h"

namespace chainrl::learner {
namespace {

constexpr double kTol = 1e-6;

ShapingSample S(double reward, int64_t length, bool correct, bool truncated = false) {
  ShapingSample s;
  s.reward = reward;
  s.length = length;
  s.correct = correct;
  s.truncated = truncated;
  s.formatted = !truncated;
  s.looping = false;
  return s;
}

ShapingGroup G(std::vector<ShapingSample> s) { return ShapingGroup{std::move(s)}; }

ProcessShapingOptions With(std::vector<LengthMethod> methods) {
  ProcessShapingOptions o;
  o.methods = std::move(methods);
  return o;
}

void ExpectVec(const std::vector<double>& got, const std::vector<double>& want, double tol = kTol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

TEST(ProcessShapingTest, NoMethodsKeepsRewardsAndGivesGrpoAdvantages) {
  ProcessShaping p(With({}));
  ShapedStep r =
      p.Shape(0, 100, {G({S(1, 3, true), S(0, 5, false), S(0, 7, false), S(0, 2, false)})});
  ExpectVec(r.rewards[0], {1, 0, 0, 0});
  // mean 0.25, Bessel std 0.5: (R − 0.25)/(0.5 + 1e-6).
  const double k = 1 / (0.5 + 1e-6);
  ExpectVec(r.advantages[0], {0.75 * k, -0.25 * k, -0.25 * k, -0.25 * k});
  EXPECT_DOUBLE_EQ(r.group_accuracy[0], 0.25);
  EXPECT_DOUBLE_EQ(r.soft_weights[0], 1.0);
  EXPECT_EQ(r.laser_targets[0], 0);
}

TEST(ProcessShapingTest, KimiAddsTheGroupLengthReward) {
  ProcessShaping p(With({LengthMethod::kKimi}));  // weight 0.4
  ShapedStep r = p.Shape(0, 100, {G({S(1, 10, true), S(0, 20, false), S(1, 30, true)})});
  // λ = 0.5, 0, −0.5; wrong samples get min(0, λ).
  ExpectVec(r.rewards[0], {1.2, 0.0, 0.8});
  ExpectVec(r.advantages[0], {0.872870132, -1.091087665, 0.218217533});
}

TEST(ProcessShapingTest, DapoOverlongUsesTheStepBudgetAsLmax) {
  ProcessShapingOptions o = With({LengthMethod::kDapoOverlong});
  o.overlong_buffer_len = 20;
  ProcessShaping p(o);
  ShapedStep r = p.Shape(0, 100, {G({S(1, 80, true), S(1, 90, true), S(1, 101, true, true)})});
  ExpectVec(r.rewards[0], {1.0, 0.5, 0.0});  // 0; (80 − 90)/20; −1 beyond L_max
  // A smaller budget moves the window: L_max 85, L_cache 20 → 80 is (65 − 80)/20 = −0.75.
  ShapedStep q = p.Shape(1, 85, {G({S(1, 80, true)})});
  ExpectVec(q.rewards[0], {0.25});
  ExpectVec(q.advantages[0], {0.0});  // a group of one has no baseline
}

TEST(ProcessShapingTest, CampoPenalisesOnlyTruncatedLoops) {
  ProcessShaping p(With({LengthMethod::kCampoRepetition}));  // penalty 0.1
  const std::vector<int32_t> loop = {1, 2, 3, 1, 2, 3}, plain = {1, 2, 3, 4, 5, 6};
  ShapingSample a = S(0, 6, false, true), b = S(0, 6, false, false), c = S(0, 6, false, true);
  a.tokens = loop;
  b.tokens = loop;
  c.tokens = plain;
  ShapedStep r = p.Shape(0, 100, {G({a, b, c})});
  ExpectVec(r.rewards[0], {-0.1, 0.0, 0.0});
}

TEST(ProcessShapingTest, DlerRewardsCorrectUntruncatedAndWhitensOverTheBatch) {
  ProcessShaping p(With({LengthMethod::kDler}));
  // Group A: correct (2 tokens), correct but truncated (4), wrong (2) → R = 1, 0, 0.
  // Group B: one correct sample (2 tokens) → R = 1, centred 0.
  ShapedStep r = p.Shape(
      0, 100, {G({S(5, 2, true), S(5, 4, true, true), S(5, 2, false)}), G({S(5, 2, true)})});
  ExpectVec(r.rewards[0], {1, 0, 0});
  ExpectVec(r.rewards[1], {1});
  // Centred: 2/3, −1/3, −1/3, 0; token mean μ = −1/15, unbiased token variance 0.1679012.
  ExpectVec(r.advantages[0], {1.789676224, -0.650791354, -0.650791354});
  ExpectVec(r.advantages[1], {0.162697839});
}

TEST(ProcessShapingTest, DlerAllEqualGivesZeroAdvantages) {
  ProcessShaping p(With({LengthMethod::kDler}));
  ShapedStep r = p.Shape(0, 100, {G({S(0, 3, false), S(1, 5, false)})});  // no correct sample
  ExpectVec(r.rewards[0], {0, 0});
  ExpectVec(r.advantages[0], {0, 0});
}

TEST(ProcessShapingTest, LaserFixedTargetStepAndHybrid) {
  ProcessShapingOptions o = With({LengthMethod::kLaser});
  o.laser_target = 10;  // α 0.5, step mode
  const std::vector<ShapingGroup> g = {
      G({S(0, 8, true), S(0, 12, true), S(0, 9, false), S(0, 50, false, true)})};
  ExpectVec(ProcessShaping(o).Shape(0, 100, g).rewards[0], {1.5, 1.0, -0.5, -1.0});
  o.laser.mode = LaserMode::kHybrid;
  ExpectVec(ProcessShaping(o).Shape(0, 100, g).rewards[0], {1.5, 0.5, -0.5, -1.0});
  o.laser.mode = LaserMode::kPenalty;
  ExpectVec(ProcessShaping(o).Shape(0, 100, g).rewards[0], {1.0, 0.5, -0.5, -1.0});
}

TEST(ProcessShapingTest, LaserNoCorrectSampleAndAllEqual) {
  ProcessShapingOptions o = With({LengthMethod::kLaser});
  o.laser_target = 10;
  ShapedStep r = ProcessShaping(o).Shape(0, 100, {G({S(1, 3, false), S(1, 4, false)})});
  ExpectVec(r.rewards[0], {-0.5, -0.5});
  ExpectVec(r.advantages[0], {0, 0});
}

ProcessShapingOptions LaserD(bool exploration) {
  ProcessShapingOptions o = With({exploration ? LengthMethod::kLaserDe : LengthMethod::kLaserD});
  o.laser.exploration = exploration;
  o.laser_d.set_group_size(3)
      .set_target_length(10)
      .set_lower_bound(4)
      .set_upper_bound(64)
      .set_threshold_step(4)
      .set_update_every(2);
  return o;
}

TEST(ProcessShapingTest, LaserDTargetsAdaptFromThePreviousStepsAndSurviveJson) {
  ProcessShaping p(LaserD(/*exploration=*/true));
  // Step 0: a high-accuracy group (2/3) against the initial target 10.
  ShapedStep r0 = p.Shape(0, 100, {G({S(0, 8, true), S(0, 12, true), S(0, 20, false)})});
  EXPECT_EQ(r0.laser_targets, (std::array<int64_t, 3>{10, 10, 10}));
  EXPECT_FALSE(r0.laser_targets_updated);
  // LASER-DE: the wrong, formatted, loop-free 20-token answer beyond 10 gets +α.
  ExpectVec(r0.rewards[0], {1.5, 1.0, 0.0});
  // Step 1: a low-accuracy group (0/3); no update yet (1 % 2 != 0). A looping answer gets no bonus.
  ShapingSample looping = S(0, 50, false);
  looping.looping = true;
  ShapedStep r1 = p.Shape(1, 100, {G({S(0, 30, false), S(0, 40, false), looping})});
  ExpectVec(r1.rewards[0], {0.0, 0.0, -0.5});
  const nlohmann::json saved = p.ToJson();
  // Step 2: monitor pass over steps 0-1. High (n_b = 2): smallest L in 4, 8, ... with
  // covered(L)·2 ≥ 3 over {8, 12, 20} is 12. Low (n_b = 1): covered(L) ≥ 3 over {30, 40, 50}
  // first at 52. Medium had no response: keeps 10.
  const std::vector<ShapingGroup> g2 = {G({S(0, 12, true), S(0, 13, true), S(0, 5, true)})};
  ShapedStep r2 = p.Shape(2, 100, g2);
  EXPECT_TRUE(r2.laser_targets_updated);
  EXPECT_EQ(r2.laser_targets, (std::array<int64_t, 3>{12, 10, 52}));
  ExpectVec(r2.rewards[0], {1.5, 1.0, 1.5});  // accuracy 1: high bucket, target 12
  // A process restored from step 1's JSON makes the same decision at step 2.
  ProcessShaping q(LaserD(true));
  ASSERT_TRUE(q.LoadJson(saved).ok());
  ShapedStep q2 = q.Shape(2, 100, g2);
  EXPECT_EQ(q2.laser_targets, r2.laser_targets);
  ExpectVec(q2.rewards[0], r2.rewards[0]);
  ExpectVec(q2.advantages[0], r2.advantages[0]);
  // New options (a stage) keep the adapted targets.
  p.SetOptions(LaserD(false));
  EXPECT_EQ(p.Shape(3, 100, g2).laser_targets, (std::array<int64_t, 3>{12, 10, 52}));
  EXPECT_FALSE(q.LoadJson(nlohmann::json{{"laser_d", 1}}).ok());
  EXPECT_FALSE(
      q.LoadJson(nlohmann::json{{"laser_d", saved["laser_d"]}, {"monitor", {{{"accuracy", 0.5}}}}})
          .ok());
}

TEST(ProcessShapingTest, LaserDWithoutExplorationGivesNoBonus) {
  ProcessShaping p(LaserD(false));
  ShapedStep r = p.Shape(0, 100, {G({S(0, 8, true), S(0, 12, true), S(0, 20, false)})});
  ExpectVec(r.rewards[0], {1.5, 1.0, -0.5});
}

TEST(ProcessShapingTest, GrpoLambdaShapesOnlyTheTopGroups) {
  ProcessShapingOptions o = With({LengthMethod::kGrpoLambda});
  o.grpo_lambda.top_fraction = 0.5;  // ⌈0.5·2⌉ = 1 group
  ShapedStep r = ProcessShaping(o).Shape(
      0, 100, {G({S(9, 10, true), S(9, 20, false)}), G({S(9, 10, true), S(9, 30, true)})});
  ExpectVec(r.rewards[0], {1, 0});      // ratio 0.5: plain 0/1
  ExpectVec(r.rewards[1], {1.2, 0.8});  // ratio 1: + 0.4·(±0.5)
}

TEST(ProcessShapingTest, SoftWeightingScalesAdvantagesByGroupAccuracy) {
  ProcessShapingOptions o = With({});
  const std::vector<ShapingGroup> g = {
      G({S(1, 3, true), S(0, 3, false), S(0, 3, false), S(0, 3, false)}),  // acc 0.25
      G({S(1, 3, true), S(1, 3, true), S(1, 3, true), S(0, 3, false)}),    // acc 0.75
      G({S(0, 3, false), S(0, 3, false)})};                                // acc 0
  // Group advantages (R − mean)/(std + 1e-6) with std 0.5 in both mixed groups, times w(acc).
  const double k = 1 / (0.5 + 1e-6), c = std::cos(std::numbers::pi * 0.25);
  o.soft_weighting = DifficultyStage::kEasy;
  ShapedStep easy = ProcessShaping(o).Shape(0, 100, g);
  ExpectVec(easy.soft_weights, {c, 1.0, 0.0});
  ExpectVec(easy.advantages[0], {0.75 * k * c, -0.25 * k * c, -0.25 * k * c, -0.25 * k * c});
  ExpectVec(easy.advantages[1], {0.25 * k, 0.25 * k, 0.25 * k, -0.75 * k});
  ExpectVec(easy.advantages[2], {0, 0});
  o.soft_weighting = DifficultyStage::kMedium;
  ShapedStep medium = ProcessShaping(o).Shape(0, 100, g);
  ExpectVec(medium.soft_weights, {c, c, 0.0});
  ExpectVec(medium.advantages[1], {0.25 * k * c, 0.25 * k * c, 0.25 * k * c, -0.75 * k * c});
  o.soft_weighting = DifficultyStage::kHard;
  ShapedStep hard = ProcessShaping(o).Shape(0, 100, g);
  ExpectVec(hard.soft_weights, {1.0, c, 0.25});
  ExpectVec(hard.advantages[0], {0.75 * k, -0.25 * k, -0.25 * k, -0.25 * k});
}

TEST(ProcessShapingTest, MethodsParseAndConflictsAreRefused) {
  EXPECT_FALSE(ParseLengthMethods({"laser", "dler"}).ok());
  EXPECT_FALSE(ParseLengthMethods({"nope"}).ok());
  auto m = ParseLengthMethods({"kimi", "laser_d", "campo_repetition"});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 3u);
}

Result<Config> Cfg(const std::vector<std::string>& sets) {
  return ParseConfig("[model]\npath = \"m\"\n", "test.toml", sets);
}

TEST(ProcessShapingTest, OptionsFromConfig) {
  auto c = Cfg({"length_shaping.methods=[\"laser_de\", \"kimi\"]", "rollout.max_new_tokens=160",
                "rollout.group_size=6", "length_shaping.laser_target_tokens=64",
                "length_shaping.laser_mode=\"reward\"", "curriculum.soft_weighting=\"hard\""});
  ASSERT_TRUE(c.ok()) << c.status().message();
  auto o = ProcessShapingOptionsFromConfig(*c, GroupAdvantageOptions());
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_TRUE(o->laser.exploration);
  EXPECT_EQ(o->laser.mode, LaserMode::kStep);
  EXPECT_EQ(o->laser_d.group_size, 6);
  EXPECT_EQ(o->laser_d.target_length, 64);
  EXPECT_EQ(o->laser_d.threshold_step, 10);
  EXPECT_EQ(o->laser_d.lower_bound, 10);
  EXPECT_EQ(o->laser_d.upper_bound, 160);
  ASSERT_TRUE(o->soft_weighting.has_value());
  EXPECT_EQ(*o->soft_weighting, DifficultyStage::kHard);
  auto drpo = Cfg({"length_shaping.methods=[\"drpo\"]"});
  ASSERT_TRUE(drpo.ok());
  auto d = ProcessShapingOptionsFromConfig(*drpo, GroupAdvantageOptions());
  ASSERT_TRUE(d.ok()) << d.status().message();
  // DRPO's reward is binary correctness, whatever the task reward was.
  ExpectVec(ProcessShaping(*d).Shape(0, 100, {G({S(0.3, 5, true), S(0.7, 9, false)})}).rewards[0],
            {1.0, 0.0});
  auto both = Cfg({"length_shaping.methods=[\"drpo\", \"laser\"]"});
  ASSERT_TRUE(both.ok());
  EXPECT_FALSE(ProcessShapingOptionsFromConfig(*both, GroupAdvantageOptions()).ok());
}

// ---- RunPolicyUpdate: caller-given advantages and DMMPT
// -------------------------------------------

// A narrower, 1-layer variant of the tiny test decoder, over 40 tokens.
std::shared_ptr<model::DecoderModel> TinyModel() {
  model::ModelConfig c = chainrl::testing::TinyConfig(/*vocab=*/40, /*initializer_range=*/0.1);
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  return chainrl::testing::TinyModel(c, /*seed=*/7);
}

std::map<std::string, torch::Tensor> Grads(model::DecoderModel& m) {
  std::map<std::string, torch::Tensor> g;
  for (const auto& p : m.named_parameters())
    g[p.key()] =
        p.value().grad().defined() ? p.value().grad().clone() : torch::zeros_like(p.value());
  return g;
}

double MaxAbs(const std::map<std::string, torch::Tensor>& g) {
  double worst = 0;
  for (const auto& [k, v] : g) worst = std::max(worst, v.abs().max().item<double>());
  return worst;
}

double MaxDiff(const std::map<std::string, torch::Tensor>& a,
               const std::map<std::string, torch::Tensor>& b) {
  double d = 0;
  for (const auto& [k, v] : a) d = std::max(d, (v - b.at(k)).abs().max().item<double>());
  return d;
}

struct Update {
  RlStepStats stats;
  std::map<std::string, torch::Tensor> grads;
};

Update RunUpdate(std::vector<GroupData> groups, const LearnerRunOptions& lo) {
  auto m = TinyModel();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : m->named_parameters()) named.emplace_back(p.key(), p.value());
  auto opt = Optimizer::Create(named, OptimizerOptions());
  EXPECT_TRUE(opt.ok());
  RlStepOptions so;
  so.skip_optimizer_step = true;
  auto st = RunPolicyUpdate(*m, **opt, groups, lo, so);
  EXPECT_TRUE(st.ok()) << st.status().message();
  return {st.ok() ? *st : RlStepStats(), Grads(*m)};
}

SampleData Sample(std::vector<int32_t> tokens, std::vector<float> probs, bool correct, double adv) {
  SampleData s;
  s.tokens = std::move(tokens);
  for (float p : probs) s.behaviour_logprobs.push_back(std::log(p));
  s.correct = correct;
  s.reward = correct ? 1 : 0;
  s.advantage = adv;
  return s;
}

LearnerRunOptions Opts() {
  LearnerRunOptions lo;
  lo.policy.loss_agg_mode = LossAggMode::kTokenMean;
  lo.streambp = false;
  return lo;
}

TEST(ProcessShapingTest, MasteredTokenMaskDropsConfidentTokensOfCorrectSamples) {
  auto groups = [](double adv_correct) {
    GroupData g;
    g.group_id = 1;
    g.prompt = {3, 4, 5};
    g.samples.push_back(Sample({6, 7, 8, 9}, {0.995f, 0.5f, 0.999f, 0.98f}, true, adv_correct));
    g.samples.push_back(Sample({10, 11, 12}, {0.999f, 0.999f, 0.2f}, false, -0.7));
    return std::vector<GroupData>{g};
  };
  LearnerRunOptions lo = Opts();
  lo.mastered_token_mask = true;
  lo.mastered.tau = 0.99;
  lo.mastered.sigma = 1e9;  // every sample counts as confident
  // Tokens of the correct sample with p_old ≥ 0.99: the 1st and the 3rd. The wrong one keeps all.
  EXPECT_EQ(RunUpdate(groups(0.9), lo).stats.mastered_masked_tokens, 2);
  lo.mastered.sigma = 0.0;  // no sample has mean entropy < 0
  EXPECT_EQ(RunUpdate(groups(0.9), lo).stats.mastered_masked_tokens, 0);
  // With every token of the correct sample masked (τ = 0) the gradient is the one of the same
  // batch whose correct sample has advantage 0: the masked tokens leave the loss but token-mean's
  // denominator still counts them.
  lo.mastered.tau = 0.0;
  lo.mastered.sigma = 1e9;
  Update masked = RunUpdate(groups(0.9), lo);
  EXPECT_EQ(masked.stats.mastered_masked_tokens, 4);
  Update zero_adv = RunUpdate(groups(0.0), Opts());
  Update plain = RunUpdate(groups(0.9), Opts());
  EXPECT_LT(MaxDiff(masked.grads, zero_adv.grads), 1e-7);
  EXPECT_GT(MaxDiff(plain.grads, zero_adv.grads), 1e-5);
}

TEST(ProcessShapingTest, GivenAdvantagesReplaceTheGroupEstimate) {
  GroupData g;
  g.group_id = 1;
  g.prompt = {3, 4};
  g.samples.push_back(Sample({6, 7}, {0.5f, 0.5f}, true, 0.0));
  g.samples.push_back(Sample({8, 9}, {0.5f, 0.5f}, false, 0.0));
  // Rewards 1/0 would give advantages ±0.707; given zeros give no policy gradient at all.
  Update u = RunUpdate({g}, Opts());
  double worst = 0;
  for (const auto& [k, v] : u.grads) worst = std::max(worst, v.abs().max().item<double>());
  EXPECT_EQ(worst, 0.0);
  g.samples[1].advantage.reset();  // some but not all: refused
  auto m = TinyModel();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : m->named_parameters()) named.emplace_back(p.key(), p.value());
  auto opt = Optimizer::Create(named, OptimizerOptions());
  ASSERT_TRUE(opt.ok());
  EXPECT_FALSE(RunPolicyUpdate(*m, **opt, {g}, Opts(), RlStepOptions()).ok());
}

// The slow reference: each sequence's log π total by a plain forward with autograd, the direct
// PreferenceLoss, one backward.
std::map<std::string, torch::Tensor> DirectPreferenceGrads(
    model::DecoderModel& m, model::DecoderModel* ref, const std::vector<PreferencePairData>& pairs,
    const PreferenceOptions& po) {
  auto total = [](model::DecoderModel& mm, const std::vector<int32_t>& prompt,
                  const std::vector<int32_t>& response) {
    std::vector<int64_t> ids(prompt.begin(), prompt.end());
    ids.insert(ids.end(), response.begin(), response.end());
    const int64_t T = static_cast<int64_t>(ids.size()), P = static_cast<int64_t>(prompt.size());
    torch::Tensor x = torch::tensor(ids, torch::kInt64).unsqueeze(0);
    torch::Tensor h = mm.Forward(x, {}, torch::ones({1, T}, torch::kInt64));
    torch::Tensor logits = mm.Logits(h).to(torch::kFloat32);
    torch::Tensor lp = TokenLogprobs(logits.slice(1, P - 1, T - 1), x.slice(1, P, T), 1.0);
    return lp.sum().to(torch::kFloat64);
  };
  std::vector<torch::Tensor> cw, cl, rw, rl, lw, ll;
  for (const auto& p : pairs) {
    cw.push_back(total(m, p.prompt, p.chosen));
    lw.push_back(torch::tensor(static_cast<double>(p.chosen.size()), torch::kFloat64));
    std::vector<torch::Tensor> row, rrow, lrow;
    for (const auto& r : p.rejected) {
      row.push_back(total(m, p.prompt, r));
      lrow.push_back(torch::tensor(static_cast<double>(r.size()), torch::kFloat64));
      if (ref) {
        torch::NoGradGuard ng;
        rrow.push_back(total(*ref, p.prompt, r));
      }
    }
    cl.push_back(torch::stack(row));
    ll.push_back(torch::stack(lrow));
    if (ref) {
      torch::NoGradGuard ng;
      rw.push_back(total(*ref, p.prompt, p.chosen));
      rl.push_back(torch::stack(rrow));
    }
  }
  const bool one = pairs[0].rejected.size() == 1;
  auto rej = [&](const std::vector<torch::Tensor>& v) {
    torch::Tensor t = torch::stack(v);
    return one ? t.reshape({static_cast<int64_t>(pairs.size())}) : t;
  };
  PreferenceInputs in;
  in.chosen_logps = torch::stack(cw);
  in.rejected_logps = rej(cl);
  in.chosen_lengths = torch::stack(lw);
  in.rejected_lengths = rej(ll);
  if (ref) {
    in.ref_chosen_logps = torch::stack(rw);
    in.ref_rejected_logps = rej(rl);
  }
  auto out = PreferenceLoss(in, po);
  EXPECT_TRUE(out.ok()) << out.status().message();
  for (auto& p : m.parameters()) p.mutable_grad() = torch::Tensor();
  out->loss.backward();
  return Grads(m);
}

double MaxRel(const std::map<std::string, torch::Tensor>& a,
              const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  for (const auto& [k, v] : b) {
    const double scale = v.abs().max().item<double>();
    const double d = (a.at(k) - v).abs().max().item<double>();
    worst = std::max(worst, scale > 0 ? d / scale : d);
  }
  return worst;
}

TEST(ProcessShapingTest, PreferenceUpdateMatchesTheDirectLossGradient) {
  const std::vector<PreferencePairData> pairs = {{{3, 4, 5}, {6, 7, 8, 9}, {{10, 11}}},
                                                 {{12, 13}, {14, 15}, {{16, 17, 18, 19, 20}}},
                                                 {{21, 22, 23, 24}, {25}, {{26, 27, 28}}}};
  auto ref = TinyModel();
  {
    torch::NoGradGuard ng;  // a reference different from the policy
    for (auto& p : ref->parameters()) p.add_(0.05 * torch::randn_like(p));
  }
  struct Case {
    PreferenceLossType type;
    bool streambp;
  };
  for (const Case& c :
       {Case{PreferenceLossType::kDpo, false}, Case{PreferenceLossType::kDpo, true},
        Case{PreferenceLossType::kIpo, true}, Case{PreferenceLossType::kSimpo, true}}) {
    SCOPED_TRACE(std::string(PreferenceLossTypeName(c.type)) + (c.streambp ? " streaming" : ""));
    LearnerRunOptions lo;
    lo.family = ObjectiveFamily::kPreference;
    lo.preference.loss_type = c.type;
    lo.preference.beta = c.type == PreferenceLossType::kSimpo ? 2.0 : 0.5;
    lo.streambp = c.streambp;
    lo.logits_chunk_tokens = 2;
    lo.layer_chunk_tokens = 3;
    const bool with_ref = c.type != PreferenceLossType::kSimpo;
    auto m = TinyModel();
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& p : m->named_parameters()) named.emplace_back(p.key(), p.value());
    auto opt = Optimizer::Create(named, OptimizerOptions());
    ASSERT_TRUE(opt.ok());
    RlStepOptions so;
    so.skip_optimizer_step = true;
    so.micro_batch_tokens = 12;  // several micro-batches
    so.reference = with_ref ? ref.get() : nullptr;
    auto st = RunPreferenceUpdate(*m, **opt, pairs, lo, so);
    ASSERT_TRUE(st.ok()) << st.status().message();
    EXPECT_EQ(st->pairs, 3);
    EXPECT_EQ(st->response_tokens, 4 + 2 + 2 + 5 + 1 + 3);
    const auto fast = Grads(*m);
    auto m2 = TinyModel();
    const auto slow =
        DirectPreferenceGrads(*m2, with_ref ? ref.get() : nullptr, pairs, lo.preference);
    EXPECT_LT(MaxRel(fast, slow), 1e-4);
    EXPECT_GT(MaxAbs(slow), 1e-6);
  }
  // LOGO with two rejected responses per pair.
  LearnerRunOptions lo;
  lo.family = ObjectiveFamily::kPreference;
  lo.preference.loss_type = PreferenceLossType::kLogo;
  lo.preference.beta = 10;
  lo.preference.sft_weight = 0.1;
  lo.streambp = false;
  std::vector<PreferencePairData> logo = {{{3, 4}, {5, 6, 7}, {{8}, {9, 10}}},
                                          {{11}, {12}, {{13, 14}, {15}}}};
  auto m = TinyModel();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : m->named_parameters()) named.emplace_back(p.key(), p.value());
  auto opt = Optimizer::Create(named, OptimizerOptions());
  ASSERT_TRUE(opt.ok());
  RlStepOptions so;
  so.skip_optimizer_step = true;
  ASSERT_TRUE(RunPreferenceUpdate(*m, **opt, logo, lo, so).ok());
  const auto fast = Grads(*m);
  auto m2 = TinyModel();
  EXPECT_LT(MaxRel(fast, DirectPreferenceGrads(*m2, nullptr, logo, lo.preference)), 1e-4);
  // DPO without a reference model is refused; so is an empty response.
  lo.preference.loss_type = PreferenceLossType::kDpo;
  EXPECT_FALSE(RunPreferenceUpdate(*m, **opt, {{{3}, {4}, {{5}}}}, lo, so).ok());
  lo.preference.reference_free = true;
  EXPECT_TRUE(RunPreferenceUpdate(*m, **opt, {{{3}, {4}, {{5}}}}, lo, so).ok());
  EXPECT_FALSE(RunPreferenceUpdate(*m, **opt, {{{3}, {4}, {{}}}}, lo, so).ok());
}

// DRPO through RunPolicyUpdate (two passes, streaming) against the direct loss by autograd:
// s_i = mean_t ℓ, KL = token-mean(ℓ_old − ℓ), DrpoLoss, one backward.
TEST(ProcessShapingTest, DrpoUpdateMatchesTheDirectLossGradient) {
  std::vector<GroupData> groups(2);
  groups[0].group_id = 1;
  groups[0].prompt = {3, 4, 5};
  groups[0].samples = {Sample({6, 7, 8}, {0.3f, 0.2f, 0.5f}, true, 0),
                       Sample({9, 10}, {0.4f, 0.6f}, true, 0),
                       Sample({11, 12, 13, 14}, {0.1f, 0.2f, 0.3f, 0.4f}, false, 0)};
  groups[1].group_id = 2;
  groups[1].prompt = {15, 16};
  groups[1].samples = {Sample({17, 18}, {0.5f, 0.5f}, false, 0), Sample({19}, {0.9f}, true, 0)};
  for (auto& g : groups)
    for (auto& smp : g.samples) smp.advantage.reset();
  LearnerRunOptions lo = Opts();
  lo.drpo = true;
  lo.drpo_options.max_length = 8;
  lo.drpo_options.lambda = 0.5;
  lo.drpo_options.tau = 2.0;
  lo.drpo_options.beta = 3.0;
  lo.drpo_options.delta = -10.0;  // keep the KL term active
  lo.streambp = true;
  lo.logits_chunk_tokens = 2;
  lo.layer_chunk_tokens = 2;
  Update fast = RunUpdate(groups, lo);
  // The direct loss.
  auto m = TinyModel();
  std::vector<torch::Tensor> scores;
  std::vector<double> lens, cor, gid;
  torch::Tensor kl_sum = torch::zeros({}, torch::kFloat64);
  double tokens = 0;
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& smp : groups[g].samples) {
      const auto& prompt = groups[g].prompt;
      std::vector<int64_t> ids(prompt.begin(), prompt.end());
      ids.insert(ids.end(), smp.tokens.begin(), smp.tokens.end());
      const int64_t T = static_cast<int64_t>(ids.size()), P = static_cast<int64_t>(prompt.size());
      torch::Tensor x = torch::tensor(ids, torch::kInt64).unsqueeze(0);
      torch::Tensor h = m->Forward(x, {}, torch::ones({1, T}, torch::kInt64));
      torch::Tensor lp =
          TokenLogprobs(m->Logits(h).to(torch::kFloat32).slice(1, P - 1, T - 1), x.slice(1, P, T))
              .to(torch::kFloat64)
              .squeeze(0);
      torch::Tensor old = torch::tensor(
          std::vector<double>(smp.behaviour_logprobs.begin(), smp.behaviour_logprobs.end()),
          torch::kFloat64);
      scores.push_back(lp.mean());
      kl_sum = kl_sum + (old - lp).sum();
      tokens += static_cast<double>(smp.tokens.size());
      lens.push_back(static_cast<double>(smp.tokens.size()));
      cor.push_back(smp.correct ? 1 : 0);
      gid.push_back(static_cast<double>(g));
    }
  torch::Tensor loss = DrpoLoss(torch::stack(scores), torch::tensor(lens, torch::kFloat64),
                                torch::tensor(cor, torch::kFloat64),
                                torch::tensor(gid, torch::kFloat64).to(torch::kInt64),
                                kl_sum / tokens, lo.drpo_options);
  loss.backward();
  const auto slow = Grads(*m);
  EXPECT_GT(MaxAbs(slow), 1e-6);
  EXPECT_LT(MaxRel(fast.grads, slow), 1e-4);
  EXPECT_NEAR(fast.stats.loss, loss.item<double>(), 1e-5);
  // Whole groups only: several mini-batches are refused.
  auto m2 = TinyModel();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : m2->named_parameters()) named.emplace_back(p.key(), p.value());
  auto opt = Optimizer::Create(named, OptimizerOptions());
  ASSERT_TRUE(opt.ok());
  RlStepOptions so;
  so.mini_batches = 2;
  EXPECT_FALSE(RunPolicyUpdate(*m2, **opt, groups, lo, so).ok());
}

TEST(ProcessShapingTest, OptimizerSetOptionsChangesTheNextStepsLearningRate) {
  torch::Tensor w = torch::ones({2, 2}, torch::requires_grad());
  OptimizerOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.0;
  auto opt = Optimizer::Create({{"w", w}}, o);
  ASSERT_TRUE(opt.ok());
  w.mutable_grad() = torch::ones({2, 2});
  EXPECT_DOUBLE_EQ((*opt)->Step().lr, 0.1);
  o.lr = 0.02;
  ASSERT_TRUE((*opt)->SetOptions(o).ok());
  EXPECT_DOUBLE_EQ((*opt)->current_lr(), 0.02);
  EXPECT_EQ((*opt)->step(), 1);  // the schedule position is kept
  const torch::Tensor before = w.detach().clone();
  w.mutable_grad() = torch::ones({2, 2});
  StepResult r = (*opt)->Step();
  EXPECT_DOUBLE_EQ(r.lr, 0.02);
  // AdamW's second step with a constant gradient moves each weight by lr·m̂/(sqrt(v̂)+eps) = lr.
  EXPECT_NEAR((before - w.detach()).abs().max().item<double>(), 0.02, 1e-6);
  o.lr = -1;
  EXPECT_FALSE((*opt)->SetOptions(o).ok());
  EXPECT_DOUBLE_EQ((*opt)->current_lr(), 0.02);
}

}  // namespace
}  // namespace chainrl::learner
