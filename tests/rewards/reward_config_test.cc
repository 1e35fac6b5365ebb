// Tests of the run-config mapping of rewards (rewards/reward_config.h), and of a composed
// configuration (correctness + format + length + a plugin) scored end to end.
#include "rewards/reward_config.h"

#include <gtest/gtest.h>

#include "apps/run_config.h"

namespace chainrl::rewards {
namespace {

const char* kComposed = R"(
[model]
path = "m"

[[rewards]]
name = "correct"
kind = "math"
weight = 1.0

[[rewards]]
name = "format"
kind = "format"
weight = 0.25
options = { tags = ["think"], strict = true }

[[rewards]]
name = "length"
kind = "length"
weight = 0.5
[rewards.options]
target_tokens = 4
max_tokens = 8

[[rewards]]
name = "verifier"
kind = "plugin"
path = "@PLUGIN@"
weight = 0.01
deadline_seconds = 2.5
error_score = -1
batch_size = 2
options = { scale = 2 }

[rewards_common]
workers_per_plugin = 1
init_deadline_seconds = 5
)";

std::string Composed() {
  std::string s = kComposed;
  s.replace(s.find("@PLUGIN@"), 8, PLUGIN_GOOD);
  return s;
}

Result<RewardConfig> Parse(const std::string& text) {
  auto run = ParseConfig(text, "run.toml");
  if (!run.ok()) return run.status();
  return RewardConfigFromRunConfig(*run);
}

TEST(ParseRewardConfig, MapsEveryKey) {
  auto cfg = Parse(Composed());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->specs.size(), 4u);
  const RewardSpec& c = cfg->specs[0];
  EXPECT_EQ(c.name, "correct");
  EXPECT_EQ(c.kind, "math");
  EXPECT_EQ(c.weight, 1.0);
  EXPECT_EQ(c.deadline_seconds, 10.0);  // defaults kept
  EXPECT_EQ(c.error_score, 0.0);
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.options_toml, "");
  const RewardSpec& p = cfg->specs[3];
  EXPECT_EQ(p.path, PLUGIN_GOOD);
  EXPECT_EQ(p.weight, 0.01);
  EXPECT_EQ(p.deadline_seconds, 2.5);
  EXPECT_EQ(p.error_score, -1.0);
  EXPECT_EQ(p.batch_size, 2);
  EXPECT_EQ(p.options_toml, "scale = 2");  // re-serialised as a block table
  EXPECT_NE(cfg->specs[2].options_toml.find("target_tokens = 4"), std::string::npos);
  EXPECT_EQ(cfg->pool.workers_per_plugin, 1);
  EXPECT_EQ(cfg->pool.init_deadline_seconds, 5.0);
  EXPECT_EQ(cfg->pool.worker_path, "");
}

TEST(ParseRewardConfig, ComposedRewardsScoreEndToEnd) {
  auto cfg = Parse(Composed());
  ASSERT_TRUE(cfg.ok());
  cfg->pool.worker_path = CHAINRL_REWARD_WORKER_PATH;
  auto pool = RewardPool::Create(cfg->specs, cfg->pool);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  RewardInput a;  // correct, formatted, 6 tokens -> length (8-6)/(8-4) = 0.5
  a.response = "<think>2+2</think> \\boxed{4}";
  a.token_ids.assign(6, 1);
  a.answer_json = "4";
  RewardInput b;  // wrong, unformatted, 3 tokens -> length 1
  b.response = "5";
  b.token_ids.assign(3, 1);
  b.answer_json = "4";
  auto res = (*pool)->Score({a, b});
  ASSERT_TRUE(res.ok());
  // verifier = scale 2 * (len + 0.5 * tokens)
  double va = 2 * (a.response.size() + 3.0), vb = 2 * (1 + 1.5);
  EXPECT_DOUBLE_EQ((*res)[0].total, 1.0 * 1 + 0.25 * 1 + 0.5 * 0.5 + 0.01 * va);
  EXPECT_DOUBLE_EQ((*res)[1].total, 1.0 * 0 + 0.25 * 0 + 0.5 * 1 + 0.01 * vb);
  EXPECT_EQ((*res)[0].rewards[3].score, va);
}

TEST(ParseRewardConfig, BadPluginIsAConfigurationErrorBeforeAnythingStarts) {
  std::string text = std::string("[model]\npath = \"m\"\n[rewards_common]\nworker_path = \"") +
                     CHAINRL_REWARD_WORKER_PATH +
                     "\"\n[[rewards]]\nname = \"mine\"\npath = \"/nonexistent/libr.so\"\n";
  auto run = ParseConfig(text, "run.toml");
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  auto pool = CreateRewardPool(*run);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(pool.status().message().find("mine"), std::string::npos) << pool.status().message();
  EXPECT_NE(pool.status().message().find("/nonexistent/libr.so"), std::string::npos);
  auto none = CreateRewardPool(*ParseConfig("[model]\npath = \"m\"\n", "run.toml"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no reward configured"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::rewards
