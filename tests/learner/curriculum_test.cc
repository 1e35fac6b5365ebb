// Tests for learner/curriculum.h: budget schedules, stages, difficulty filtering and weighting by
// hand (docs/ALGORITHMS.md §5.1–§5.5), and the bucket sampler's bit-identical restore from JSON.
#include "learner/curriculum.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <numbers>
#include <set>

#include "apps/run_config.h"

namespace chainrl::learner {
namespace {

TEST(CurriculumTest, TokenBudgetSchedulesByHand) {
  const auto c = TokenBudgetOptions().set_initial_budget(256);
  EXPECT_EQ(TokenBudgetAt(c, 0), 256);
  EXPECT_EQ(TokenBudgetAt(c, 100000), 256);
  const auto lin = TokenBudgetOptions()
                       .set_schedule(BudgetSchedule::kLinear)
                       .set_initial_budget(1000)
                       .set_final_budget(200)
                       .set_decay_steps(10);
  EXPECT_EQ(TokenBudgetAt(lin, 0), 1000);
  EXPECT_EQ(TokenBudgetAt(lin, 3), 760);
  EXPECT_EQ(TokenBudgetAt(lin, 5), 600);
  EXPECT_EQ(TokenBudgetAt(lin, 10), 200);
  EXPECT_EQ(TokenBudgetAt(lin, 50), 200);
  const auto exp = TokenBudgetOptions()
                       .set_schedule(BudgetSchedule::kExponential)
                       .set_initial_budget(256)
                       .set_gamma(0.7)
                       .set_decay_steps(10);
  EXPECT_EQ(TokenBudgetAt(exp, 9), 256);
  EXPECT_EQ(TokenBudgetAt(exp, 10), 179);  // ⌊179.2⌋
  EXPECT_EQ(TokenBudgetAt(exp, 25), 125);  // ⌊125.44⌋
  EXPECT_EQ(TokenBudgetAt(TokenBudgetOptions(exp).set_min_budget(130), 25), 130);
  EXPECT_EQ(TokenBudgetAt(exp, 100000), 1);  // max(1, ·)
  const auto step = TokenBudgetOptions()
                        .set_schedule(BudgetSchedule::kStep)
                        .set_initial_budget(4000)
                        .set_milestones({{50, 1000}, {100, 500}});
  ASSERT_TRUE(ValidateTokenBudgetOptions(step).ok());
  EXPECT_EQ(TokenBudgetAt(step, 10), 4000);
  EXPECT_EQ(TokenBudgetAt(step, 50), 1000);
  EXPECT_EQ(TokenBudgetAt(step, 99), 1000);
  EXPECT_EQ(TokenBudgetAt(step, 100), 500);
  EXPECT_FALSE(
      ValidateTokenBudgetOptions(TokenBudgetOptions(step).set_milestones({{100, 1}, {50, 2}}))
          .ok());
  EXPECT_FALSE(ValidateTokenBudgetOptions(TokenBudgetOptions(exp).set_gamma(1.5)).ok());
  EXPECT_EQ(*ParseBudgetSchedule("exponential"), BudgetSchedule::kExponential);
  auto bad = ParseBudgetSchedule("cosine");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("constant, linear, exponential, step"), std::string::npos);
}

TEST(CurriculumTest, StagesSwitchByStep) {
  auto s = StageSchedule::Create({
      {"16k", 0, {{"rollout.max_response_length", "16384"}}},
      {"32k", 100, {{"rollout.max_response_length", "32768"}, {"learner.lr", "5e-7"}}},
  });
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->IndexAt(0), 0u);
  EXPECT_EQ(s->IndexAt(99), 0u);
  EXPECT_EQ(s->StageAt(100).name, "32k");
  EXPECT_EQ(s->StageAt(5000).overrides[1].second, "5e-7");
  EXPECT_TRUE(s->SwitchesAt(0));
  EXPECT_FALSE(s->SwitchesAt(50));
  EXPECT_TRUE(s->SwitchesAt(100));
  EXPECT_FALSE(s->SwitchesAt(101));
  auto late = StageSchedule::Create({{"a", 5, {}}});
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.status().message().find("stages[0] (a)"), std::string::npos);
  EXPECT_FALSE(StageSchedule::Create({{"a", 0, {}}, {"b", 0, {}}}).ok());
  auto key = StageSchedule::Create({{"a", 0, {{"rollout..x", "1"}}}});
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find("rollout..x"), std::string::npos);
}

TEST(CurriculumTest, DifficultyFiltering) {
  EXPECT_FALSE(KeepByPassRate(0.0));
  EXPECT_FALSE(KeepByPassRate(1.0));
  EXPECT_TRUE(KeepByPassRate(0.3));
}

TEST(CurriculumTest, SoftWeightsByHand) {
  const double c = std::cos(std::numbers::pi / 4);
  EXPECT_EQ(DifficultySoftWeight(0, DifficultyStage::kEasy), 0.0);
  EXPECT_EQ(DifficultySoftWeight(0.75, DifficultyStage::kEasy), 1.0);
  EXPECT_NEAR(DifficultySoftWeight(0.25, DifficultyStage::kEasy), c, 1e-15);
  EXPECT_NEAR(DifficultySoftWeight(0.5, DifficultyStage::kEasy), 1.0, 1e-15);
  EXPECT_EQ(DifficultySoftWeight(0, DifficultyStage::kMedium), 0.0);
  EXPECT_NEAR(DifficultySoftWeight(0.75, DifficultyStage::kMedium), c, 1e-15);
  EXPECT_NEAR(DifficultySoftWeight(1.0, DifficultyStage::kMedium), 0.0, 1e-15);
  EXPECT_EQ(DifficultySoftWeight(0, DifficultyStage::kHard), 0.25);
  EXPECT_EQ(DifficultySoftWeight(0.25, DifficultyStage::kHard), 1.0);
  EXPECT_NEAR(DifficultySoftWeight(0.75, DifficultyStage::kHard), c, 1e-15);
  // Applied per group: group 1 has acc ¼, group 2 acc 1.
  std::vector<double> adv = {2, -1, -1, -1, 0.5, 0.5};
  const std::vector<uint8_t> cor = {1, 0, 0, 0, 1, 1};
  const std::vector<int64_t> gid = {1, 1, 1, 1, 2, 2};
  ApplyDifficultySoftWeights(adv, cor, gid, DifficultyStage::kMedium);
  EXPECT_NEAR(adv[0], 2 * c, 1e-15);
  EXPECT_NEAR(adv[1], -c, 1e-15);
  EXPECT_NEAR(adv[4], 0.5 * std::cos(std::numbers::pi / 2), 1e-15);
  EXPECT_EQ(*ParseDifficultyStage("hard"), DifficultyStage::kHard);
  EXPECT_FALSE(ParseDifficultyStage("expert").ok());
}

TEST(CurriculumTest, BucketIndexByPassRate) {
  const std::vector<double> edges = {1.0 / 3.0, 2.0 / 3.0};
  EXPECT_EQ(DifficultyBucketIndex(0.0, edges), 0u);
  EXPECT_EQ(DifficultyBucketIndex(1.0 / 3.0, edges), 1u);
  EXPECT_EQ(DifficultyBucketIndex(0.5, edges), 1u);
  EXPECT_EQ(DifficultyBucketIndex(0.9, edges), 2u);
}

TEST(CurriculumTest, SamplerFollowsWeightsAndEpochs) {
  auto s = DifficultyBucketSampler::Create({{10, 11}, {20}, {30, 31, 32}}, {1, 0, 3}, 42);
  ASSERT_TRUE(s.ok());
  int counts[3] = {0, 0, 0};
  std::vector<int64_t> from0;
  for (int i = 0; i < 4000; ++i) {
    const int64_t p = s->Next();
    const int b = p / 10 - 1;
    ++counts[b];
    if (b == 0) from0.push_back(p);
  }
  EXPECT_EQ(counts[1], 0);                      // weight 0
  EXPECT_NEAR(counts[2] / 4000.0, 0.75, 0.03);  // 3 : 1 (fixed seed: deterministic)
  // Within each epoch of bucket 0, both prompts appear exactly once.
  for (size_t e = 0; e + 1 < from0.size(); e += 2)
    EXPECT_EQ(std::set<int64_t>({from0[e], from0[e + 1]}), std::set<int64_t>({10, 11}));
  EXPECT_FALSE(DifficultyBucketSampler::Create({{1}, {}}, {0, 1}, 1).ok());
  EXPECT_FALSE(DifficultyBucketSampler::Create({{1}}, {1, 1}, 1).ok());
  EXPECT_FALSE(DifficultyBucketSampler::Create({{1}}, {-1}, 1).ok());
}

TEST(CurriculumTest, SamplerRestoresBitIdentically) {
  const std::vector<std::vector<int64_t>> buckets = {{0, 1, 2, 3, 4}, {5, 6}, {7, 8, 9}};
  auto a = DifficultyBucketSampler::Create(buckets, {1, 2, 3}, 7);
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 37; ++i) a->Next();
  ASSERT_TRUE(a->SetWeights({0.5, 2, 0}).ok());
  for (int i = 0; i < 5; ++i) a->Next();
  const std::string saved = a->ToJson().dump();
  std::vector<int64_t> straight;
  for (int i = 0; i < 200; ++i) straight.push_back(a->Next());
  auto b = DifficultyBucketSampler::Create(buckets, {1, 1, 1}, 999);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(b->LoadJson(nlohmann::json::parse(saved)).ok());
  std::vector<int64_t> resumed;
  for (int i = 0; i < 200; ++i) resumed.push_back(b->Next());
  EXPECT_EQ(straight, resumed);
  // Mismatched buckets and missing keys are Corrupt, naming the key.
  auto c = DifficultyBucketSampler::Create({{0, 1}}, {1}, 1);
  auto st = c->LoadJson(nlohmann::json::parse(saved));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  auto j = nlohmann::json::parse(saved);
  j.erase("cursor");
  st = b->LoadJson(j);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cursor"), std::string::npos);
  j = nlohmann::json::parse(saved);
  j["rng"] = "not a state";
  EXPECT_FALSE(b->LoadJson(j).ok());
}

}  // namespace
}  // namespace chainrl::learner

namespace chainrl::learner {
namespace {

// [[curriculum.stages]] of a run config: a base stage is put first when the first stage starts
// later, and each stage's overrides apply to the config as --set would.
TEST(CurriculumTest, StagesComeFromTheRunConfig) {
  auto none = ParseConfig("[model]\npath = \"m\"\n", "c.toml");
  ASSERT_TRUE(none.ok());
  auto empty = StageScheduleFromConfig(*none);
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());

  auto c = ParseConfig(
      "[model]\npath = \"m\"\n[[curriculum.stages]]\nname = \"polish\"\nstart_step = 30\n"
      "overrides = { \"learner.lr\" = 5e-7, \"rollout.temperature\" = 0.5 }\n",
      "c.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto s = StageScheduleFromConfig(*c);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(s->has_value());
  const auto& stages = (*s)->stages();
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].name, "base");
  EXPECT_TRUE(stages[0].overrides.empty());
  EXPECT_EQ(stages[1].name, "polish");
  EXPECT_EQ((*s)->IndexAt(29), 0u);
  EXPECT_EQ((*s)->IndexAt(30), 1u);
  const std::vector<std::string> sets = OverrideSets(stages[1]);
  ASSERT_EQ(sets.size(), 2u);
  auto staged = c->WithOverrides(sets);
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  EXPECT_DOUBLE_EQ(staged->GetFloat("learner.lr"), 5e-7);
  EXPECT_DOUBLE_EQ(staged->GetFloat("rollout.temperature"), 0.5);
}

}  // namespace
}  // namespace chainrl::learner
