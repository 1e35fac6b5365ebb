// Reward events reach Prometheus: a pool with a crashing, a hanging and a NaN-returning plugin
// scores marked samples; CountRewardOutcomes's counters on a scrape count each reward's
// evaluations, timeouts and other errors, and agree with the pool's own error counts.
#include "rewards/reward_metrics.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

namespace chainrl::rewards {
namespace {

// The value of `metric` in a Prometheus text scrape for the series whose labels hold every
// `name="value"` of `labels`, or -1.
double SeriesValue(const std::string& scrape, const std::string& metric,
                   const std::vector<std::string>& labels) {
  std::regex line("^" + metric + R"(\{([^}]*)\} ([0-9.e+]+)$)");
  std::istringstream in(scrape);
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (!std::regex_match(l, m, line)) continue;
    bool all = true;
    for (const std::string& want : labels) all = all && m[1].str().find(want) != std::string::npos;
    if (all) return std::stod(m[2]);
  }
  return -1;
}

// The value of `metric` with label plugin="name", or -1.
double Value(const std::string& scrape, const std::string& metric, const std::string& plugin) {
  return SeriesValue(scrape, metric, {"plugin=\"" + plugin + "\""});
}

RewardInput In(const std::string& id, const std::string& response) {
  RewardInput in;
  in.example_id = id;
  in.prompt = "p";
  in.response = response;
  in.token_ids = {1, 2};
  return in;
}

TEST(RewardMetricsTest, CountersCountEachRewardsOutcomes) {
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
  auto res =
      (*pool)->Score({In("a", "fine"), In("b", "CRASH"), In("c", "HANG NAN"), In("d", "ok")});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  CountRewardOutcomes(**registry, (*pool)->specs(), *res);
  std::string scrape = (*registry)->Scrape();
  auto stats = (*pool)->stats();
  for (const char* name : {"crashy", "slow", "nan", "fmt"})
    EXPECT_EQ(Value(scrape, "chainrl_reward_calls_total", name), 4) << name << "\n" << scrape;
  // "b" crashes the crashy plugin; "c" hangs the slow one (a timeout, not an error) and gives the
  // nan one a NaN.
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "crashy"), 1);
  EXPECT_EQ(Value(scrape, "chainrl_reward_timeouts_total", "crashy"), 0);
  EXPECT_EQ(Value(scrape, "chainrl_reward_timeouts_total", "slow"), 1);
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "slow"), 0);
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "nan"), 1);
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "fmt"), 0);
  // The pool's own counts agree (its errors include the samples that timed out).
  EXPECT_EQ(stats["crashy"].errors, 1);
  EXPECT_EQ(stats["slow"].timeouts, 1);
  EXPECT_EQ(stats["nan"].errors, 1);
  EXPECT_EQ(stats["fmt"].errors, 0);
  // A second batch adds to the counters.
  auto again = (*pool)->Score({In("e", "CRASH")});
  ASSERT_TRUE(again.ok());
  CountRewardOutcomes(**registry, (*pool)->specs(), *again);
  scrape = (*registry)->Scrape();
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "crashy"), 2);
  EXPECT_EQ(Value(scrape, "chainrl_reward_errors_total", "slow"), 0);
  EXPECT_EQ(Value(scrape, "chainrl_reward_calls_total", "crashy"), 5);
}

// The value of `metric` for one worker slot {plugin, worker} in a scrape, or -1.
double WorkerValue(const std::string& scrape, const std::string& metric, const std::string& plugin,
                   int worker) {
  return SeriesValue(scrape, metric,
                     {"plugin=\"" + plugin + "\"", "worker=\"" + std::to_string(worker) + "\""});
}

// VmRSS of `pid` from /proc/PID/status, in bytes: a second reading to check the first against.
double VmRssBytes(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string key; f >> key;) {
    if (key == "VmRSS:") {
      double kb = 0;
      f >> kb;
      return kb * 1024;
    }
    std::string rest;
    std::getline(f, rest);
  }
  return -1;
}

// The workers' own figures reach their host's scrape: up, resident memory as /proc reports it,
// CPU seconds that never go back when a worker is replaced, and restarts per plugin. Built-in
// rewards have no workers and no series.
TEST(RewardMetricsTest, WorkersFiguresAreExportedByTheirHost) {
  auto registry = metrics::MetricsRegistry::Create(
      metrics::MetricsOptions().set_run_id("r1").set_role("actor").set_actor_id(0).set_serve(
          false));
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto pool = RewardPool::Create(
      {RewardSpec().set_name("crashy").set_kind("plugin").set_path(PLUGIN_CRASH).set_batch_size(1),
       RewardSpec().set_name("fmt").set_kind("format")},
      PoolOptions().set_worker_path(CHAINRL_REWARD_WORKER_PATH).set_workers_per_plugin(2));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  RewardWorkerMetrics exported(**registry, **pool);

  // At start only worker 0 runs (the pool starts the others on demand).
  const auto workers = (*pool)->workers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].reward, "crashy");
  ASSERT_GT(workers[0].pid, 0);
  EXPECT_EQ(workers[1].pid, -1);
  std::string scrape = (*registry)->Scrape();
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_up", "crashy", 0), 1) << scrape;
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_up", "crashy", 1), 0);
  const double rss =
      WorkerValue(scrape, "chainrl_reward_worker_resident_memory_bytes", "crashy", 0);
  const double vm_rss = VmRssBytes(workers[0].pid);
  EXPECT_GT(rss, 256 * 1024.0);  // a process with libc and the plugin mapped
  EXPECT_NEAR(rss, vm_rss, 0.1 * vm_rss) << "stat's rss and status's VmRSS disagree";
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_resident_memory_bytes", "crashy", 1), 0);
  const double cpu0 = WorkerValue(scrape, "chainrl_reward_worker_cpu_seconds_total", "crashy", 0);
  EXPECT_GE(cpu0, 0);
  EXPECT_EQ(Value(scrape, "chainrl_reward_worker_restarts_total", "crashy"), 0);
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_up", "fmt", 0), -1);  // a built-in

  // A crash kills worker 0's process; the next call starts a replacement (a restart).
  ASSERT_TRUE((*pool)->Score({In("b", "CRASH")}).ok());
  scrape = (*registry)->Scrape();
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_up", "crashy", 0), 0) << scrape;
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_resident_memory_bytes", "crashy", 0), 0);
  ASSERT_TRUE((*pool)->Score({In("a", "fine")}).ok());
  scrape = (*registry)->Scrape();
  EXPECT_EQ(WorkerValue(scrape, "chainrl_reward_worker_up", "crashy", 0), 1) << scrape;
  EXPECT_EQ(Value(scrape, "chainrl_reward_worker_restarts_total", "crashy"),
            static_cast<double>((*pool)->stats()["crashy"].worker_restarts));
  EXPECT_EQ(Value(scrape, "chainrl_reward_worker_restarts_total", "crashy"), 1);
  EXPECT_GE(WorkerValue(scrape, "chainrl_reward_worker_cpu_seconds_total", "crashy", 0), cpu0);
}

}  // namespace
}  // namespace chainrl::rewards
