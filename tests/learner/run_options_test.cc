// Every shipped config maps onto the learner's options, and recipes resolve as documented:
// algorithm.name picks a recipe, keys set in the file override it.
#include "learner/run_options.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "apps/run_config.h"

namespace chainrl::learner {
namespace {

Result<LearnerRunOptions> FromFile(const std::string& name, std::vector<std::string> sets = {}) {
  auto cfg = LoadConfig(std::string(CHAINRL_SOURCE_DIR) + "/configs/" + name, sets);
  if (!cfg.ok()) return cfg.status();
  return LearnerOptionsFromConfig(*cfg);
}

// A config of only the required key and `sets`: every recipe starts from the schema's defaults.
Result<LearnerRunOptions> FromSets(const std::vector<std::string>& sets) {
  auto cfg = ParseConfig("[model]\npath = \"m\"\n", "test.toml", sets);
  if (!cfg.ok()) return cfg.status();
  return LearnerOptionsFromConfig(*cfg);
}

TEST(RunOptionsTest, EveryShippedConfigMaps) {
  int n = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(CHAINRL_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".toml") continue;
    auto o = FromFile(e.path().filename().string());
    EXPECT_TRUE(o.ok()) << e.path() << ": " << o.status().ToString();
    ++n;
  }
  EXPECT_GE(n, 9);
}

TEST(RunOptionsTest, RecipesAndOverrides) {
  auto grpo = FromFile("grpo.toml");
  ASSERT_TRUE(grpo.ok());
  EXPECT_EQ(grpo->family, ObjectiveFamily::kPolicyGradient);
  EXPECT_DOUBLE_EQ(grpo->policy.kl_coef, 0.04);
  EXPECT_EQ(grpo->policy.loss_agg_mode, LossAggMode::kSeqMeanTokenMean);
  auto dapo = FromFile("dapo.toml");
  ASSERT_TRUE(dapo.ok());
  EXPECT_DOUBLE_EQ(dapo->policy.clip_ratio_high, 0.28);
  EXPECT_EQ(dapo->policy.loss_agg_mode, LossAggMode::kTokenMean);
  EXPECT_DOUBLE_EQ(dapo->policy.kl_coef, 0.0);
  EXPECT_TRUE(dapo->dynamic_sampling);
  auto dapo_tight = FromFile("dapo.toml", {"algorithm.clip_ratio_high=0.25"});
  EXPECT_DOUBLE_EQ(dapo_tight->policy.clip_ratio_high, 0.25);
  auto dr = FromFile("dr_grpo.toml");
  ASSERT_TRUE(dr.ok());
  EXPECT_EQ(dr->advantages.estimator, AdvantageEstimator::kDrGrpo);
  EXPECT_EQ(dr->policy.loss_agg_mode, LossAggMode::kSeqMeanTokenSumNorm);
  EXPECT_DOUBLE_EQ(dr->policy.loss_scale_factor, 3000);
  auto gspo = FromFile("gspo.toml");
  ASSERT_TRUE(gspo.ok());
  EXPECT_EQ(gspo->policy.policy_loss, PolicyLossKind::kGspo);
  EXPECT_DOUBLE_EQ(gspo->policy.clip_ratio_low, 3e-4);
  auto dpo = FromFile("dpo.toml");
  ASSERT_TRUE(dpo.ok());
  EXPECT_EQ(dpo->family, ObjectiveFamily::kPreference);
  EXPECT_EQ(dpo->preference.loss_type, PreferenceLossType::kDpo);
  EXPECT_DOUBLE_EQ(dpo->optimizer.max_grad_norm, 10.0);
  auto simpo = FromFile("simpo.toml");
  EXPECT_EQ(simpo->preference.loss_type, PreferenceLossType::kSimpo);
  EXPECT_DOUBLE_EQ(simpo->preference.beta, 2.0);
  auto cur = FromFile("curriculum.toml");
  ASSERT_TRUE(cur.ok());
  EXPECT_EQ(cur->budget.schedule, BudgetSchedule::kExponential);
  EXPECT_EQ(cur->budget.initial_budget, 4096);
  EXPECT_EQ(cur->budget_start_step, 100);
  EXPECT_EQ(TokenBudgetAt(cur->budget, 0), 4096);
  EXPECT_EQ(TokenBudgetAt(cur->budget, 50), static_cast<int64_t>(4096 * 0.7));
  // StreamBP chunking: explicit sizes, or the layer chunk from the memory budget.
  auto sb = FromFile("grpo.toml",
                     {"learner.memory_budget_bytes=67108864", "learner.logits_chunk_tokens=128"});
  ASSERT_TRUE(sb.ok());
  model::ModelConfig mc;
  mc.vocab_size = 1000;
  mc.hidden_size = 64;
  mc.intermediate_size = 128;
  mc.num_attention_heads = 4;
  StreamBpOptions so = StreamBpOptionsFor(*sb, mc, 4096);
  EXPECT_EQ(so.head.chunk_tokens, 128);
  EXPECT_EQ(so.layer_chunk_tokens, ChooseChunks(mc, 4096, 67108864).layer_chunk_tokens);
  auto fixed = FromFile("grpo.toml", {"learner.layer_chunk_tokens=300"});
  EXPECT_EQ(StreamBpOptionsFor(*fixed, mc, 4096).layer_chunk_tokens, 300);
  auto bad = FromFile("curriculum.toml", {"curriculum.budget_start=9000"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("curriculum.budget_start"), std::string::npos);
}

// Every name of algorithm.name maps to its family and recipe: the policy-gradient list to a
// PolicyLossPreset, the preference list to its loss.
TEST(RunOptionsTest, EveryAlgorithmNameMaps) {
  for (const auto& name : ObjectiveNames(ObjectiveFamily::kPolicyGradient)) {
    auto o = FromSets({"algorithm.name=" + name});
    ASSERT_TRUE(o.ok()) << name << ": " << o.status().ToString();
    EXPECT_EQ(o->family, ObjectiveFamily::kPolicyGradient) << name;
    EXPECT_EQ(o->algorithm, name);
  }
  for (const auto& name : ObjectiveNames(ObjectiveFamily::kPreference)) {
    auto o = FromSets({"algorithm.name=" + name});
    ASSERT_TRUE(o.ok()) << name << ": " << o.status().ToString();
    EXPECT_EQ(o->family, ObjectiveFamily::kPreference) << name;
    EXPECT_EQ(PreferenceLossTypeName(o->preference.loss_type), name);
  }
}

// DLER and CAMPO (docs/ALGORITHMS.md §1.9): clip 0.2/0.28, dual clip 10, token-mean, dynamic
// sampling; DLER adds a k3 KL of 5e-4. Keys set in the file still override the recipe.
TEST(RunOptionsTest, DlerAndCampoRecipes) {
  for (const char* name : {"dler", "campo"}) {
    SCOPED_TRACE(name);
    auto o = FromSets({std::string("algorithm.name=") + name});
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    EXPECT_DOUBLE_EQ(o->policy.clip_ratio_low, 0.2);
    EXPECT_DOUBLE_EQ(o->policy.clip_ratio_high, 0.28);
    EXPECT_DOUBLE_EQ(o->policy.dual_clip_c, 10);
    EXPECT_EQ(o->policy.loss_agg_mode, LossAggMode::kTokenMean);
    EXPECT_EQ(o->policy.kl_estimator, KlEstimator::kK3);
    EXPECT_DOUBLE_EQ(o->policy.kl_coef, std::string(name) == "dler" ? 5e-4 : 0.0);
    EXPECT_TRUE(o->dynamic_sampling);
  }
  auto no_ds = FromSets({"algorithm.name=campo", "algorithm.dynamic_sampling=false"});
  ASSERT_TRUE(no_ds.ok());
  EXPECT_FALSE(no_ds->dynamic_sampling);
  // A key the config sets wins over the recipe's value.
  auto kl = FromSets({"algorithm.name=dler", "algorithm.kl_coef=0.01"});
  ASSERT_TRUE(kl.ok());
  EXPECT_DOUBLE_EQ(kl->policy.kl_coef, 0.01);
}

// algorithm.name = "sft" is refused when the config loads (exit 2), naming the key.
TEST(RunOptionsTest, SftIsRefused) {
  auto o = FromSets({"algorithm.name=sft"});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("algorithm.name: 'sft' is refused: an SFT-only run is not "
                                      "implemented"),
            std::string::npos)
      << o.status().message();
}

// curriculum.budget_schedule = "step": budget_start until the first milestone, then each
// milestone's budget from its step on, steps counted from budget_start_step.
TEST(RunOptionsTest, StepBudgetScheduleFromTheConfig) {
  auto o = FromSets({"rollout.max_new_tokens=512", "curriculum.budget_schedule=\"step\"",
                     "curriculum.budget_start=400", "curriculum.budget_start_step=5",
                     "curriculum.budget_milestone_steps=[10, 25]",
                     "curriculum.budget_milestone_tokens=[300, 100]"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->budget.schedule, BudgetSchedule::kStep);
  EXPECT_EQ(o->budget_start_step, 5);
  const std::vector<std::pair<int64_t, int64_t>> expected = {{0, 400},  {9, 400},  {10, 300},
                                                             {24, 300}, {25, 100}, {1000, 100}};
  for (const auto& [step, budget] : expected)
    EXPECT_EQ(TokenBudgetAt(o->budget, step), budget) << "step " << step;
  // budget_start 0 starts from rollout.max_new_tokens; budget_end floors every milestone.
  auto floored = FromSets({"rollout.max_new_tokens=512", "curriculum.budget_schedule=\"step\"",
                           "curriculum.budget_end=150", "curriculum.budget_milestone_steps=[0, 20]",
                           "curriculum.budget_milestone_tokens=[200, 100]"});
  ASSERT_TRUE(floored.ok()) << floored.status().ToString();
  EXPECT_EQ(floored->budget.initial_budget, 512);
  EXPECT_EQ(TokenBudgetAt(floored->budget, 0), 200);
  EXPECT_EQ(TokenBudgetAt(floored->budget, 19), 200);
  EXPECT_EQ(TokenBudgetAt(floored->budget, 20), 150);
}

TEST(RunOptionsTest, StepBudgetScheduleRefusesBadMilestones) {
  const std::string step = "curriculum.budget_schedule=\"step\"";
  struct Case {
    std::vector<std::string> sets;
    const char* message;
  };
  const std::vector<Case> cases = {
      {{step}, "curriculum.budget_schedule = \"step\" needs curriculum.budget_milestone_steps"},
      {{step, "curriculum.budget_milestone_steps=[10, 20]",
        "curriculum.budget_milestone_tokens=[100]"},
       "must have the same length (2 steps, 1 budgets)"},
      {{step, "curriculum.budget_milestone_steps=[20, 20]",
        "curriculum.budget_milestone_tokens=[100, 50]"},
       "curriculum.budget_milestone_steps must strictly increase (20 then 20)"},
      {{step, "rollout.max_new_tokens=256", "curriculum.budget_milestone_steps=[5]",
        "curriculum.budget_milestone_tokens=[300]"},
       "curriculum.budget_milestone_tokens[0] (300) exceeds rollout.max_new_tokens (256)"},
      {{"curriculum.budget_schedule=\"linear\"", "curriculum.budget_milestone_steps=[5]",
        "curriculum.budget_milestone_tokens=[100]"},
       "apply to curriculum.budget_schedule = \"step\" only, not \"linear\""},
  };
  for (const Case& c : cases) {
    auto o = FromSets(c.sets);
    ASSERT_FALSE(o.ok()) << c.message;
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(o.status().message().find(c.message), std::string::npos) << o.status().message();
  }
}

}  // namespace
}  // namespace chainrl::learner

namespace chainrl::learner {
namespace {

// A stage may change what the learner reads every step; what is read once at start-up (by the
// learner or the actors) is refused before the run starts, naming the stage and the key.
TEST(RunOptionsTest, StagesMayOnlyChangeKeysReadEveryStep) {
  std::string why;
  for (const char* key : {"learner.lr", "algorithm.clip_ratio_high", "rollout.temperature",
                          "rollout.prompts_per_step", "length_shaping.laser_alpha",
                          "curriculum.budget_start", "data.bucket_weights"})
    EXPECT_TRUE(StageMayOverride(key, &why)) << key;
  for (const char* key :
       {"model.path", "data.train_files", "rollout.max_batch_size", "rollout.repetition_detection",
        "learner.threads", "learner.bind", "learner.stale_policy", "algorithm.name",
        "run.total_steps", "actors.count", "checkpoint.every"}) {
    why.clear();
    EXPECT_FALSE(StageMayOverride(key, &why)) << key;
    EXPECT_EQ(why, "it is read once at start-up") << key;
  }
  EXPECT_FALSE(StageMayOverride("sft.lr", &why));
  EXPECT_EQ(why, "the SFT warm-up is over before the first stage applies");

  auto check = [](const std::string& stage) {
    auto c = ParseConfig(
        "[model]\npath = \"m\"\n[data]\ndifficulty_buckets = [\"a\", \"b\"]\n"
        "[[curriculum.stages]]\nname = \"late\"\nstart_step = 5\n" +
            stage,
        "s.toml");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? CheckCurriculumStages(*c) : c.status();
  };
  EXPECT_TRUE(check("overrides = { \"learner.lr\" = 1e-6 }\n").ok());
  EXPECT_TRUE(check("overrides = { \"data.bucket_weights\" = [1.0, 2.0] }\n").ok());
  Status st = check("overrides = { \"rollout.repetition_detection\" = false }\n");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "curriculum.stages 'late': rollout.repetition_detection cannot change in a stage: it "
            "is read once at start-up");
  st = check("overrides = { \"data.bucket_weights\" = [1.0, 2.0, 3.0] }\n");
  EXPECT_EQ(st.message(),
            "curriculum.stages 'late': data.bucket_weights has 3 weights for 2 "
            "data.difficulty_buckets");
  // In the schema's range, but not a valid clip ratio: the learner's options refuse it.
  st = check("overrides = { \"algorithm.dual_clip_c\" = 0.5 }\n");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().rfind("curriculum.stages 'late'", 0), 0u) << st.message();
  EXPECT_NE(st.message().find("dual_clip_c"), std::string::npos) << st.message();
  // The shipped curriculum config passes.
  auto shipped = LoadConfig(std::string(CHAINRL_SOURCE_DIR) + "/configs/curriculum.toml");
  ASSERT_TRUE(shipped.ok());
  EXPECT_TRUE(CheckCurriculumStages(*shipped).ok());
}

TEST(RunOptionsTest, StepBudgetStartsAtItsStepAndIsClamped) {
  LearnerRunOptions o;
  o.budget.set_schedule(BudgetSchedule::kLinear)
      .set_initial_budget(100)
      .set_final_budget(20)
      .set_decay_steps(8);
  o.budget_start_step = 4;
  EXPECT_EQ(StepBudget(o, 0, 512), 100) << "before the schedule's start: its initial budget";
  EXPECT_EQ(StepBudget(o, 4, 512), 100);
  EXPECT_EQ(StepBudget(o, 8, 512), 60) << "half-way from 100 to 20";
  EXPECT_EQ(StepBudget(o, 12, 512), 20);
  EXPECT_EQ(StepBudget(o, 100, 512), 20);
  EXPECT_EQ(StepBudget(o, 0, 64), 64) << "never above rollout.max_new_tokens";
  o.budget.set_initial_budget(0).set_final_budget(0).set_min_budget(0);
  EXPECT_EQ(StepBudget(o, 0, 64), 1) << "never below one token";
}

TEST(RunOptionsTest, RolloutCorrectionKeysMapAndNeedTheRecomputedPolicy) {
  auto o = FromSets({"learner.old_logprobs=recompute", "algorithm.rollout_is=sequence",
                     "algorithm.rollout_is_cap=3", "algorithm.rollout_mask=geometric",
                     "algorithm.rollout_mask_low=0.9", "algorithm.rollout_mask_high=1.1"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  const RolloutCorrection& rc = o->policy.rollout_correction;
  EXPECT_EQ(rc.is, RolloutIsLevel::kSequence);
  EXPECT_DOUBLE_EQ(rc.is_cap, 3);
  EXPECT_EQ(rc.mask, RolloutMaskLevel::kGeometric);
  EXPECT_DOUBLE_EQ(rc.mask_low, 0.9);
  EXPECT_DOUBLE_EQ(rc.mask_high, 1.1);
  EXPECT_FALSE(FromSets({})->policy.rollout_correction.enabled()) << "off by default";
  // With the sampler's own logprobs as the ratio's denominator there is nothing to correct.
  auto behaviour = FromSets({"algorithm.rollout_is=token"});
  ASSERT_FALSE(behaviour.ok());
  EXPECT_NE(behaviour.status().message().find("learner.old_logprobs"), std::string::npos)
      << behaviour.status().message();
  auto masked = FromSets({"algorithm.rollout_mask=token"});
  ASSERT_FALSE(masked.ok());
  // Preference objectives and DRPO's loss take no policy-gradient weight.
  auto dpo = FromSets(
      {"learner.old_logprobs=recompute", "algorithm.name=dpo", "algorithm.rollout_is=token"});
  ASSERT_FALSE(dpo.ok());
  EXPECT_NE(dpo.status().message().find("preference"), std::string::npos);
  auto drpo = FromSets({"learner.old_logprobs=recompute", "algorithm.rollout_mask=token",
                        "length_shaping.methods=[\"drpo\"]"});
  ASSERT_FALSE(drpo.ok());
  EXPECT_NE(drpo.status().message().find("drpo"), std::string::npos);
  // Bounds the schema refuses.
  EXPECT_FALSE(FromSets({"algorithm.rollout_is_cap=0.5"}).ok());
  EXPECT_FALSE(FromSets({"algorithm.rollout_mask_low=1.5"}).ok());
  EXPECT_FALSE(FromSets({"algorithm.rollout_mask_high=0.5"}).ok());
  // learner.stale_policy = "correct" trains stale groups with the correction: one must be on.
  auto uncorrected = FromSets({"learner.old_logprobs=recompute", "learner.stale_policy=correct"});
  ASSERT_FALSE(uncorrected.ok());
  EXPECT_NE(uncorrected.status().message().find(
                "learner.stale_policy = \"correct\" trains groups past "
                "learner.max_off_policy_steps with the rollout correction"),
            std::string::npos)
      << uncorrected.status().message();
  EXPECT_TRUE(FromSets({"learner.old_logprobs=recompute", "learner.stale_policy=correct",
                        "algorithm.rollout_is=token"})
                  .ok());
}

}  // namespace
}  // namespace chainrl::learner
