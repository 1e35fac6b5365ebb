// Every shipped config maps onto the learner's options, and recipes resolve as documented:
// algorithm.name picks a recipe, keys set in the file override it.
#include "learner/run_options.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace chainrl::learner {
namespace {

Result<LearnerRunOptions> FromFile(const std::string& name, std::vector<std::string> sets = {}) {
  auto cfg = LoadConfig(std::string(CHAINRL_SOURCE_DIR) + "/configs/" + name, sets);
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

}  // namespace
}  // namespace chainrl::learner
