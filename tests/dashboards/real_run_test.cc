// The dashboards and alert rules checked against a real training run: `chainrl train` (launcher,
// learner, two actors as processes) is scraped by a real Prometheus that finds it through the
// launcher's file_sd targets; PromQL must see the run's progress, agree with its summary.json, and
// every panel query and alert rule must evaluate (panels allowed to be empty are listed, with why).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/endpoints.h"
#include "core/metrics.h"
#include "core/metrics_queries.h"
#include "core/stopwatch.h"
#include "tests/apps/train_run.h"

namespace chainrl::metrics {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using ::chainrl::testing::ReadJson;
using ::chainrl::testing::ReadText;
using ::chainrl::testing::StartTrain;

const std::string kSource = CHAINRL_SOURCE_DIR;
const std::string kDashboard = kSource + "/dashboards/grafana/dashboards/chainrl.json";
const std::string kPrometheusYml = kSource + "/dashboards/prometheus/prometheus.yml";
const std::string kAlertsYml = kSource + "/dashboards/prometheus/alerts.yml";
const std::string kRunId = "metricsrun";
constexpr int kSteps = 15;
constexpr int kPromptsPerStep = 4;

// Dashboard targets ("panel title/refId") that may return no series in this short, healthy run,
// and why. Every other target must return data while the run is live.
const std::map<std::string, std::string>& AllowedEmpty() {
  static const std::map<std::string, std::string> allowed = {};
  return allowed;
}

// "chainrl.json: row 'Learner' > panel 'Loss' > target A" -> "Loss/A".
std::string PanelKey(const std::string& where) {
  const std::string p = "> panel '";
  const std::size_t a = where.find(p);
  const std::size_t b = where.rfind("' > target ");
  if (a == std::string::npos || b == std::string::npos || b < a) return where;
  return where.substr(a + p.size(), b - a - p.size()) + "/" +
         where.substr(b + std::string("' > target ").size());
}

// The small run of tests/apps/train_process_test.cc (byte tokenizer, SFT warm-up, GRPO with 2
// actors, a length reward) with a 2-layer model and a lower learning rate, so that the RL phase
// lasts several scrape intervals; final figures are pushed to a Pushgateway.
std::string WriteConfig(const std::string& dir, int pushgateway_port) {
  const std::string text = R"(
[run]
name = ")" + kRunId + R"("
seed = 3
total_steps = )" + std::to_string(kSteps) +
                           R"(
log_level = "info"
[model]
path = ")" + dir + R"(/model"
[model.init]
enabled = true
tokenizer = "bytes"
layers = 2
hidden = 128
heads = 2
kv_heads = 1
intermediate = 256
max_position = 512
[data]
task = "arithmetic"
task_min_size = 1
task_max_size = 1
num_train_examples = 2000
num_eval_examples = 16
[sft]
steps = 10
batch_size = 16
lr = 3e-3
[rollout]
group_size = 8
prompts_per_step = )" + std::to_string(kPromptsPerStep) +
                           R"(
max_new_tokens = 96
[actors]
count = 2
credits = 2
heartbeat_interval_seconds = 0.2
heartbeat_timeout_seconds = 30.0
restart_backoff_seconds = 0.2
[learner]
threads = 1
lr = 3e-4
[algorithm]
name = "grpo"
loss_agg_mode = "token-mean"
kl_coef = 0.0
[metrics]
progress_interval_seconds = 0
pushgateway = "http://127.0.0.1:)" +
                           std::to_string(pushgateway_port) + R"("
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 16, max_tokens = 96 }
# A plugin (weight 0: it changes no reward), so that the reward workers' panels have a worker.
[[rewards]]
name = "answer"
kind = "plugin"
path = ")" + std::filesystem::path(CHAINRL_BIN).parent_path().string() +
                           R"(/last_line_answer.so"
weight = 0.0
)";
  const std::string path = dir + "/run.toml";
  std::ofstream(path) << text;
  return path;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "  " + l + "\n";
  return s;
}

// Problems with the targets discovered from the run's file: want launcher, learner, actor 0 and
// actor 1, all up. Targets of other jobs (the Pushgateway) are ignored.
std::vector<std::string> TargetProblems(const PrometheusClient& client) {
  auto t = client.ActiveTargets();
  if (!t.ok()) return {t.status().message()};
  std::set<std::string> seen;
  std::vector<std::string> p;
  for (const TargetState& x : *t) {
    if (x.labels.count("job") && x.labels.at("job") != "chainrl") continue;
    const auto role = x.labels.find("role");
    const auto actor = x.labels.find("actor_id");
    seen.insert((role == x.labels.end() ? "?" : role->second) +
                (actor == x.labels.end() ? "" : "-" + actor->second));
    if (x.health != "up") p.push_back(x.scrape_url + " is " + x.health + " " + x.last_error);
    const auto run = x.labels.find("run_id");
    if (run == x.labels.end() || run->second != kRunId) p.push_back(x.scrape_url + " lacks run_id");
  }
  if (seen != std::set<std::string>{"launcher", "learner", "actor-0", "actor-1"}) {
    std::string s;
    for (const auto& x : seen) s += x + " ";
    p.push_back("targets are { " + s + "}, want launcher, learner, actor-0, actor-1");
  }
  return p;
}

// Evaluates `expr` now; its samples keyed by "role" or "role-actor_id".
std::map<std::string, double> Values(const PrometheusClient& client, const std::string& expr) {
  std::map<std::string, double> out;
  auto r = client.Query(expr);
  EXPECT_TRUE(r.ok()) << expr << ": " << r.status().ToString();
  if (!r.ok()) return out;
  for (const QuerySample& s : r->samples) {
    auto role = s.labels.find("role");
    auto actor = s.labels.find("actor_id");
    std::string key = role == s.labels.end() ? "" : role->second;
    if (actor != s.labels.end()) key += "-" + actor->second;
    EXPECT_EQ(out.count(key), 0u) << expr << " has two series for " << key;
    out[key] = s.value;
  }
  return out;
}

// Selector of the run's series as pushed at exit (the Pushgateway's have no instance label) or
// as scraped from the live processes.
std::string Pushed(const std::string& metric, const std::string& extra = "") {
  return metric + "{run_id=\"" + kRunId + "\", instance=\"\"" + extra + "}";
}
std::string Live(const std::string& metric, const std::string& extra = "") {
  return metric + "{run_id=\"" + kRunId + "\", instance!=\"\"" + extra + "}";
}

// The learner's value of `expr` (its other series are ignored); NaN (and a failure) if none.
double LearnerValue(const PrometheusClient& client, const std::string& expr) {
  auto v = Values(client, expr);
  EXPECT_EQ(v.count("learner"), 1u) << expr << " has no learner series";
  return v.count("learner") ? v.at("learner") : std::nan("");
}

// A child process (`argv`), output to `log`; SIGTERM then reaped by the destructor.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, const std::string& log) {
    pid_ = fork();
    if (pid_ == 0) {
      if (std::freopen(log.c_str(), "w", stdout) == nullptr) _exit(127);
      dup2(1, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~ChildProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

TEST(RealRunMetrics, PrometheusSeesTheRunAndEveryPanelAndRuleEvaluates) {
  const char* kPrometheus = "/usr/bin/prometheus";
  const char* kPushgateway = "/usr/bin/prometheus-pushgateway";
  if (access(kPrometheus, X_OK) != 0 || access(kPushgateway, X_OK) != 0) {
    GTEST_SKIP() << kPrometheus << " or " << kPushgateway
                 << " not installed (Debian packages 'prometheus', 'prometheus-pushgateway'); the "
                    "dashboards are not checked against a real run";
  }
  const auto started = Clock::now();
  const fs::path dir =
      fs::temp_directory_path() / ("chainrl_metricsrun_" + std::to_string(getpid()));
  fs::remove_all(dir);
  // The launcher writes <parent of the run dir>/prometheus/<run.name>.json. The folder exists
  // before Prometheus starts, so file_sd watches it and sees the file as soon as it is written.
  fs::create_directories(dir / "prometheus");
  fs::create_directories(dir / "prometheus-server");
  const std::string run = (dir / "run").string();

  // A Pushgateway for the processes' final figures (metrics.pushgateway).
  auto push_port = PickFreePort();
  ASSERT_TRUE(push_port.ok()) << push_port.status().ToString();
  const std::string push_address = "127.0.0.1:" + std::to_string(*push_port);
  ChildProcess pushgateway({kPushgateway, "--web.listen-address=" + push_address},
                           (dir / "pushgateway.log").string());
  PrometheusClient push_client("http://" + push_address, 2);
  for (int i = 0; i < 100 && !push_client.Ready(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(push_client.Ready()) << ReadText((dir / "pushgateway.log").string());

  // The shipped prometheus.yml, scraping every second, with the run's targets folder, plus a job
  // for the Pushgateway (honor_labels keeps the pushed run_id/role/actor_id; no instance label).
  PrometheusConfigEdits edits;
  edits.targets_glob = (dir / "prometheus" / "*.json").string();
  edits.rules_path = kAlertsYml;
  auto rendered = RenderPrometheusConfig(ReadText(kPrometheusYml), edits);
  ASSERT_TRUE(rendered.ok()) << rendered.status().ToString();
  ASSERT_NE(rendered->find("\nscrape_configs:"), std::string::npos);
  const std::string config = (dir / "prometheus-server" / "prometheus.yml").string();
  std::ofstream(config) << *rendered
                        << "\n  - job_name: chainrl-pushgateway\n"
                           "    honor_labels: true\n"
                           "    static_configs:\n"
                           "      - targets: ['"
                        << push_address << "']\n";
  PrometheusServer::Options so;
  so.config_file = config;
  so.storage_dir = (dir / "prometheus-server").string();
  auto server = PrometheusServer::Start(so);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  PrometheusClient client((*server)->url());

  int status_unused = 0;
  const pid_t pid = StartTrain(WriteConfig(dir.string(), *push_port), run);
  ASSERT_GT(pid, 0);

  // The actors start (and enter the targets file) when RL starts, and Prometheus applies
  // discovered targets at most every 5 s. So that a fast machine cannot finish RL before the
  // actors are scraped, the learner is held (SIGSTOP) from the moment the file lists all four
  // processes until Prometheus scrapes both actors, then released.
  const std::string targets_file = ScrapeTargetsPath(dir.string(), kRunId);
  double held_seconds = 0;
  {
    const auto t0 = Clock::now();
    while (SecondsSince(t0) < 60 && waitpid(pid, &status_unused, WNOHANG) == 0) {
      const json t = ReadJson(targets_file);
      if (t.is_array() && t.size() == 4) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const json t = ReadJson(targets_file);
    ASSERT_TRUE(t.is_array() && t.size() == 4) << targets_file << ": " << t.dump() << "\n"
                                               << ReadText(run + ".out");
    const pid_t learner = ReadJson(run + "/processes.json").value("learner", pid_t{-1});
    ASSERT_GT(learner, 0);
    ASSERT_EQ(kill(learner, SIGSTOP), 0);
    const auto held = Clock::now();
    auto actors_up = [&] {
      int up = 0;
      if (auto a = client.ActiveTargets(); a.ok())
        for (const TargetState& x : *a)
          up += x.labels.count("role") && x.labels.at("role") == "actor" && x.health == "up";
      return up;
    };
    while (SecondsSince(held) < 30 && actors_up() < 2)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    held_seconds = SecondsSince(held);
    ASSERT_EQ(kill(learner, SIGCONT), 0);
    ASSERT_EQ(actors_up(), 2) << "actors not scraped within 30 s\n" << (*server)->LogTail();
  }

  // While the run is live (instant queries see a process's series only while it is scraped):
  // targets discovered and up, every non-allowed panel with data in one evaluation, every rule
  // healthy, no alert firing.
  std::vector<std::string> target_problems = {"not checked"}, dashboard_problems = {"not checked"},
                           rule_problems = {"not checked"}, firing;
  std::vector<QueryCheck> clean_checks;  // the evaluation in which all required panels had data
  std::set<std::string> ever_data;       // panel targets seen with data in any evaluation
  int64_t step_at_clean = -1;
  double seconds_at_clean = -1;
  double seconds_at_rl = -1;  // when progress.json first showed an RL step
  int status = 0;
  bool exited = false;
  while (!(exited = waitpid(pid, &status, WNOHANG) == pid)) {
    if (SecondsSince(started) > 150) {
      kill(pid, SIGTERM);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    if (!target_problems.empty()) target_problems = TargetProblems(client);
    const json progress = ReadJson(run + "/progress.json");
    const int64_t step = progress.is_object() && progress.value("phase", "") == "rl"
                             ? progress.value("step", int64_t{0})
                             : 0;
    if (step >= 1 && seconds_at_rl < 0) seconds_at_rl = SecondsSince(started);
    if (step < 2) continue;  // counters need two scrapes of RL for rate() to have data
    if (!dashboard_problems.empty()) {
      std::vector<QueryCheck> checks;
      CheckDashboards(client, {kDashboard}, kRunId, "10s", &checks);
      std::vector<std::string> problems;
      for (const QueryCheck& c : checks) {
        if (c.series > 0) ever_data.insert(PanelKey(c.query.where));
        if (!c.error.empty()) {
          problems.push_back(c.query.where + ": " + c.error);
        } else if (c.series == 0 && AllowedEmpty().count(PanelKey(c.query.where)) == 0) {
          problems.push_back(c.query.where + ": no data for " + c.expanded);
        }
      }
      if (checks.empty()) problems.push_back("no dashboard query evaluated");
      dashboard_problems = problems;
      if (problems.empty()) {
        clean_checks = checks;
        step_at_clean = step;
        seconds_at_clean = SecondsSince(started);
      }
    }
    if (!rule_problems.empty()) rule_problems = CheckRules(client);
    if (auto a = client.Alerts(); a.ok()) {
      for (const AlertState& x : *a)
        if (x.state == "firing") firing.push_back(x.name);
    }
  }
  if (!exited) waitpid(pid, &status, 0);
  const double run_seconds = SecondsSince(started);
  ASSERT_TRUE(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "chainrl train failed or hung\n"
      << ReadText(run + ".out");

  EXPECT_TRUE(target_problems.empty()) << Join(target_problems) << (*server)->LogTail();
  EXPECT_TRUE(dashboard_problems.empty())
      << "dashboard queries without data or failing while the run was live:\n"
      << Join(dashboard_problems);
  EXPECT_TRUE(rule_problems.empty()) << Join(rule_problems);
  EXPECT_TRUE(firing.empty()) << "alerts fired in a healthy run:\n" << Join(firing);
  auto queries = DashboardQueries(kDashboard);
  ASSERT_TRUE(queries.ok()) << queries.status().ToString();
  EXPECT_EQ(clean_checks.size(), queries->size());
  // An allowed-empty target that had data is not an error, but it is reported so that the list
  // stays honest.
  std::vector<std::string> allowed_with_data;
  for (const auto& [key, why] : AllowedEmpty()) {
    if (ever_data.count(key)) allowed_with_data.push_back(key);
    bool exists = false;
    for (const auto& q : *queries) exists = exists || PanelKey(q.where) == key;
    EXPECT_TRUE(exists) << "allow-list names " << key << ", which is no panel target";
  }

  // After the run: the processes are gone and their scraped series stale; what each process
  // pushed at exit stays on the Pushgateway. Wait until Prometheus has scraped all three roles.
  const json summary = ReadJson(run + "/summary.json");
  ASSERT_TRUE(summary.is_object()) << ReadText(run + ".out");
  ASSERT_EQ(summary["steps"], kSteps);
  // One learner and the same actors from start to end: otherwise the figures pushed at exit and
  // the summary may come from different processes.
  EXPECT_EQ(summary.value("learner_restarts", -1), 0) << ReadText(run + ".out");
  EXPECT_EQ(summary.value("actor_restarts", -1), 0) << ReadText(run + ".out");
  for (int i = 0; i < 100; ++i) {
    if (Values(client, Pushed("chainrl_build_info")).size() == 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(Values(client, Pushed("chainrl_build_info")).size(), 4u)
      << "launcher, learner and both actors pushed their metrics at exit\n"
      << ReadText(run + ".out");

  // Learner: the final figures equal summary.json's.
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_steps_total")), kSteps);
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_groups_trained_total")),
            summary["groups_trained"].get<double>());
  EXPECT_EQ(summary["groups_trained"], kSteps * kPromptsPerStep);
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_training_tokens_total")),
            summary["tokens_trained"].get<double>());
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_groups_dispatched_total")),
            summary["groups_dispatched"].get<double>());
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_groups_duplicated_total")),
            summary["groups_duplicated"].get<double>());
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_groups_lost_total")),
            summary["groups_lost"].get<double>());
  const json& last = summary["final_step"];
  ASSERT_TRUE(last.is_object());
  EXPECT_NEAR(LearnerValue(client, Pushed("chainrl_reward_mean")), last["reward"].get<double>(),
              1e-9);
  EXPECT_NEAR(LearnerValue(client, Pushed("chainrl_loss")), last["loss"].get<double>(), 1e-9);
  EXPECT_NEAR(LearnerValue(client, Pushed("chainrl_learning_rate")), last["lr"].get<double>(),
              1e-12);
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_token_budget_tokens")),
            last["budget"].get<double>());
  EXPECT_EQ(last["budget"], 96) << "constant budget schedule: rollout.max_new_tokens";
  EXPECT_EQ(LearnerValue(client, Pushed("chainrl_staleness_bound_versions")), 1)
      << "learner.max_off_policy_steps";
  EXPECT_GT(LearnerValue(client, Pushed("chainrl_phase_seconds_total", ", phase=\"training\"")), 0);
  // The reward component (one "short" reward) averages to the total reward.
  EXPECT_NEAR(
      LearnerValue(client, Pushed("chainrl_reward_component_mean", ", component=\"short\"")),
      last["reward"].get<double>(), 1e-9);

  // Policy versions advanced: the learner's ends at the summary's, from a lower scraped value;
  // each actor swapped in several versions, none beyond the learner's.
  const double version = LearnerValue(client, Pushed("chainrl_policy_version"));
  EXPECT_EQ(version, summary["policy_version"].get<double>());
  EXPECT_LT(LearnerValue(client, "min_over_time(" + Live("chainrl_policy_version") + "[10m])"),
            version);
  auto actor_first = Values(
      client, "min_over_time(" + Live("chainrl_policy_version", ", role=\"actor\"") + "[10m])");
  auto actor_last = Values(client, Pushed("chainrl_policy_version", ", role=\"actor\""));
  auto updates = Values(client, Pushed("chainrl_weight_updates_total", ", role=\"actor\""));
  auto rollout = Values(client, Pushed("chainrl_rollout_tokens_total", ", role=\"actor\""));
  auto generation = Values(
      client, Pushed("chainrl_phase_seconds_total", ", role=\"actor\", phase=\"generation\""));
  auto calls =
      Values(client, Pushed("chainrl_reward_calls_total", ", role=\"actor\", plugin=\"short\""));
  ASSERT_EQ(actor_last.size(), 2u);
  ASSERT_EQ(rollout.size(), 2u);
  ASSERT_EQ(generation.size(), 2u);
  for (const char* a : {"actor-0", "actor-1"}) {
    EXPECT_GT(actor_last[a], actor_first[a]) << a << " never swapped in new weights";
    EXPECT_LE(actor_last[a], version) << a;
    EXPECT_GE(updates[a], 2) << a;
    EXPECT_GT(rollout[a], 0) << a;
    EXPECT_GT(generation[a], 0) << a;
    // One reward call per sample: a multiple of the group size.
    EXPECT_GT(calls[a], 0) << a;
    EXPECT_EQ(std::fmod(calls[a], 8), 0) << a;
  }
  // Both actors together generated at least what was trained.
  EXPECT_GE(rollout["actor-0"] + rollout["actor-1"], summary["tokens_trained"].get<double>());
  // The launcher saw no death.
  auto deaths = Values(client, Pushed("chainrl_actor_deaths_total", ", role=\"launcher\""));
  EXPECT_EQ(deaths.size(), 2u);
  for (const auto& [k, v] : deaths) EXPECT_EQ(v, 0) << k;
  // What was scraped live never runs ahead of the final figures.
  EXPECT_LE(LearnerValue(client, "max_over_time(" + Live("chainrl_steps_total") + "[10m])"),
            kSteps);
  EXPECT_GE(LearnerValue(client, "max_over_time(" + Live("chainrl_steps_total") + "[10m])"),
            step_at_clean);

  std::size_t with_data = 0;
  for (const QueryCheck& c : clean_checks) with_data += c.series > 0 ? 1 : 0;
  std::printf(
      "real run metrics: %zu panel queries, %zu with data in one evaluation at step %lld "
      "(%.1f s; RL from %.1f s; learner held %.1f s), %zu allowed empty; run ended at %.1f s, "
      "total %.1f s\n",
      clean_checks.size(), with_data, static_cast<long long>(step_at_clean), seconds_at_clean,
      seconds_at_rl, held_seconds, AllowedEmpty().size(), run_seconds, SecondsSince(started));
  for (const auto& k : allowed_with_data)
    std::printf("  allowed-empty target had data: %s\n", k.c_str());
  server->reset();
  if (::testing::Test::HasFailure()) {
    std::printf("run, Prometheus and Pushgateway files kept in %s\n", dir.c_str());
  } else {
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace chainrl::metrics
