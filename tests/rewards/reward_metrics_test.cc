// Reward events reach Prometheus: a pool with a crashing, a hanging and a NaN-returning plugin
// scores marked samples; the exporter's counters on a live scrape equal the pool's stats.
#include "rewards/reward_metrics.h"

#include <gtest/gtest.h>

#include <regex>

namespace chainrl::rewards {
namespace {

// The value of `metric` with label plugin="name" in a Prometheus text scrape, or -1.
double Value(const std::string& scrape, const std::string& metric, const std::string& plugin) {
  std::regex line("^" + metric + R"(\{([^}]*)\} ([0-9.e+]+)$)");
  std::istringstream in(scrape);
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_match(l, m, line) &&
        m[1].str().find("plugin=\"" + plugin + "\"") != std::string::npos)
      return std::stod(m[2]);
  }
  return -1;
}

RewardInput In(const std::string& id, const std::string& response) {
  RewardInput in;
  in.example_id = id;
  in.prompt = "p";
  in.response = response;
  in.token_ids = {1, 2};
  return in;
}

TEST(RewardMetricsTest, CountersFollowPoolStats) {
  auto registry = metrics::MetricsRegistry::Create(
      metrics::MetricsOptions().set_run_id("r1").set_role("actor").set_actor_id(0).set_serve(
          false));
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto pool = RewardPool::Create(
      {RewardSpec().set_name("crashy").set_kind("plugin").set_path(PLUGIN_CRASH).set_batch_size(1),
       RewardSpec()
           .set_name("slow")
           .set_kind("plugin")
           .set_path(PLUGIN_HANG)
           .set_batch_size(1)
           .set_deadline_seconds(0.5),
       RewardSpec().set_name("nan").set_kind("plugin").set_path(PLUGIN_NAN).set_batch_size(1),
       RewardSpec().set_name("fmt").set_kind("format")},
      PoolOptions().set_worker_path(CHAINRL_REWARD_WORKER_PATH).set_workers_per_plugin(1));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  RewardMetrics exporter(**registry);
  auto res =
      (*pool)->Score({In("a", "fine"), In("b", "CRASH"), In("c", "HANG NAN"), In("d", "ok")});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  auto stats = (*pool)->stats();
  exporter.Update(stats);
  std::string scrape = (*registry)->Scrape();
  for (const auto& [name, s] : stats) {
    EXPECT_EQ(Value(scrape, "chainrl_reward_calls_total", name), s.calls) << name << "\n" << scrape;
    EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", name), s.errors) << name;
    EXPECT_EQ(Value(scrape, "chainrl_reward_timeouts_total", name), s.timeouts) << name;
  }
  EXPECT_EQ(stats["crashy"].errors, 1);
  EXPECT_EQ(stats["slow"].timeouts, 1);
  EXPECT_EQ(stats["nan"].errors, 1);
  EXPECT_EQ(stats["fmt"].errors, 0);
  // A second round adds only what changed.
  ASSERT_TRUE((*pool)->Score({In("e", "CRASH")}).ok());
  exporter.Update((*pool)->stats());
  scrape = (*registry)->Scrape();
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "crashy"), 2);
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "slow"), 1);
  EXPECT_EQ(Value(scrape, "chainrl_reward_calls_total", "crashy"),
            (*pool)->stats()["crashy"].calls);
}

}  // namespace
}  // namespace chainrl::rewards
