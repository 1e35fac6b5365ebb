// End-to-end check of dashboards/ against a real Prometheus: a simulated run (launcher, learner
// and two actors, each a live MetricsRegistry updated with plausible values) is discovered through
// the file_sd file, scraped every second, and every dashboard query and alert rule is evaluated
// through the HTTP API; driven conditions must make alerts fire. Also checks the dashboard JSON.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/metrics.h"
#include "core/metrics_queries.h"

namespace chainrl::metrics {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kSource = CHAINRL_SOURCE_DIR;
const std::string kDashboard = kSource + "/dashboards/grafana/dashboards/chainrl.json";
const std::string kPrometheusYml = kSource + "/dashboards/prometheus/prometheus.yml";
const std::string kAlertsYml = kSource + "/dashboards/prometheus/alerts.yml";

// The processes of one run, each with its own /metrics endpoint, updated by one driver thread
// every 100 ms with values a healthy run would show. Conditions can be driven to trip alerts.
class SimulatedRun {
 public:
  Status Start(const std::string& run_id, const std::string& runs_root) {
    run_id_ = run_id;
    auto make = [&](const std::string& role, std::optional<int64_t> actor) {
      MetricsOptions o;
      o.set_run_id(run_id).set_role(role);
      if (actor) o.set_actor_id(*actor);
      return MetricsRegistry::Create(o);
    };
    CHAINRL_ASSIGN_OR_RETURN(launcher_, make("launcher", std::nullopt));
    CHAINRL_ASSIGN_OR_RETURN(learner_, make("learner", std::nullopt));
    for (int64_t a = 0; a < 2; ++a) {
      CHAINRL_ASSIGN_OR_RETURN(auto actor, make("actor", a));
      actors_.push_back(std::move(actor));
    }
    std::vector<ScrapeTarget> targets = {{launcher_->address(), "launcher", std::nullopt},
                                         {learner_->address(), "learner", std::nullopt}};
    for (int64_t a = 0; a < 2; ++a) targets.push_back({actors_[a]->address(), "actor", a});
    CHAINRL_RETURN_IF_ERROR(
        WriteScrapeTargets(ScrapeTargetsPath(runs_root, run_id), run_id, targets));
    Tick();  // every series exists before the first scrape
    driver_ = std::thread([this] {
      while (!stop_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        Tick();
      }
    });
    return Status::Ok();
  }
  ~SimulatedRun() {
    stop_.store(true);
    if (driver_.joinable()) driver_.join();
  }

  std::atomic<bool> loss_nan{false};
  std::atomic<bool> stale{false};
  std::atomic<bool> actor_crash_loop{false};

 private:
  void Tick() {
    const double t = static_cast<double>(tick_++);
    const double wave = std::sin(t / 10);
    // Launcher: supervises actors.
    launcher_->gauge(GaugeId::kActorsAlive).Set(2);
    for (const char* a : {"0", "1"}) {
      launcher_->counter(CounterId::kActorDeaths, {{"actor_id", a}}).Increment(0);
      launcher_->counter(CounterId::kActorRestarts, {{"actor_id", a}}).Increment(0);
    }
    if (actor_crash_loop.load() && tick_ % 3 == 0) {
      launcher_->counter(CounterId::kActorDeaths, {{"actor_id", "1"}}).Increment();
      launcher_->counter(CounterId::kActorRestarts, {{"actor_id", "1"}}).Increment();
    }
    // Learner: one step per tick.
    MetricsRegistry& l = *learner_;
    l.counter(CounterId::kSteps).Increment();
    l.counter(CounterId::kTrainingTokens).Increment(8192);
    l.counter(CounterId::kPhaseSeconds, {{"phase", "waiting"}}).Increment(0.02);
    l.counter(CounterId::kPhaseSeconds, {{"phase", "training"}}).Increment(0.07);
    l.counter(CounterId::kPhaseSeconds, {{"phase", "weight_sync"}}).Increment(0.01);
    l.counter(CounterId::kGroupsDispatched).Increment(4);
    l.counter(CounterId::kGroupsTrained).Increment(4);
    l.counter(CounterId::kGroupsDuplicated).Increment(tick_ % 10 == 0 ? 1 : 0);
    l.counter(CounterId::kGroupsLost).Increment(0);
    l.counter(CounterId::kLeasesReassigned).Increment(tick_ % 20 == 0 ? 1 : 0);
    l.counter(CounterId::kMessagesRejected, {{"reason", "stale_lease"}}).Increment(0);
    l.counter(CounterId::kPeersRefused, {{"reason", "unknown_key"}}).Increment(tick_ % 7 == 0);
    l.counter(CounterId::kWeightUpdates).Increment();
    l.counter(CounterId::kSentBytes, {{"channel", "weights"}}).Increment(1 << 20);
    l.counter(CounterId::kReceivedBytes, {{"channel", "trajectories"}}).Increment(1 << 16);
    l.gauge(GaugeId::kPolicyVersion).Set(t);
    l.gauge(GaugeId::kCurriculumStage).Set(t < 30 ? 0 : 1);
    l.gauge(GaugeId::kTokenBudget).Set(t < 30 ? 2048 : 4096);
    l.gauge(GaugeId::kRewardMean).Set(0.4 + 0.1 * wave);
    l.gauge(GaugeId::kRewardComponentMean, {{"component", "correctness"}}).Set(0.35);
    l.gauge(GaugeId::kRewardComponentMean, {{"component", "format"}}).Set(0.05);
    l.gauge(GaugeId::kAccuracy).Set(0.35 + 0.05 * wave);
    l.gauge(GaugeId::kTruncation).Set(0.08);
    l.gauge(GaugeId::kLoss).Set(loss_nan.load() ? std::nan("") : 0.02 * wave);
    l.gauge(GaugeId::kKl).Set(0.003);
    l.gauge(GaugeId::kEntropy).Set(0.9);
    l.gauge(GaugeId::kClipFraction).Set(0.12);
    l.gauge(GaugeId::kGradNorm).Set(1.0 + 0.1 * wave);
    l.gauge(GaugeId::kLearningRate).Set(1e-6);
    l.gauge(GaugeId::kLogprobMismatch).Set(0.004);
    l.gauge(GaugeId::kTokenStalenessMean).Set(0.6);
    l.gauge(GaugeId::kMismatchTokens).Set(3000);
    l.gauge(GaugeId::kMismatchK1).Set(2e-5);
    l.gauge(GaugeId::kMismatchK3).Set(1e-5);  // steady and below 1e-3: no drift alert
    l.gauge(GaugeId::kMismatchAbsMax).Set(0.03);
    for (const char* q : {"0.01", "0.1", "0.5", "0.9", "0.99"})
      l.gauge(GaugeId::kMismatchRatio, {{"q", q}}).Set(0.99 + 0.005 * std::atof(q));
    for (const char* b :
         {"token_is_cap", "token_mask", "sequence_is_cap", "sequence_mask", "geometric_mask"})
      l.gauge(GaugeId::kMismatchOutside, {{"bound", b}}).Set(0.001);
    for (const char* stage : {"intake", "training"})
      for (const char* action : {"dropped", "trained"})
        l.counter(CounterId::kGroupsStale, {{"stage", stage}, {"action", action}}).Increment(0);
    l.gauge(GaugeId::kStalenessMax).Set(stale.load() ? 9 : 2);
    l.gauge(GaugeId::kStalenessBound).Set(4);
    l.gauge(GaugeId::kQueueDepth, {{"queue", "trajectories"}}).Set(3);
    l.gauge(GaugeId::kLeasesInFlight).Set(8);
    l.histogram(HistogramId::kStaleness).Observe(tick_ % 3);
    l.histogram(HistogramId::kStepDuration).Observe(0.1 + 0.01 * (tick_ % 5));
    // Actors: generate, score, swap weights.
    for (auto& actor : actors_) {
      MetricsRegistry& a = *actor;
      a.counter(CounterId::kRolloutTokens).Increment(4096 + 64 * (tick_ % 7));
      a.counter(CounterId::kPrefillTokens).Increment(512 + 32 * (tick_ % 3));
      a.counter(CounterId::kPhaseSeconds, {{"phase", "generation"}}).Increment(0.08);
      a.counter(CounterId::kPhaseSeconds, {{"phase", "reward"}}).Increment(0.015);
      a.counter(CounterId::kPhaseSeconds, {{"phase", "weight_sync"}}).Increment(0.005);
      a.counter(CounterId::kResponsesTruncated).Increment(tick_ % 4 == 0 ? 1 : 0);
      a.counter(CounterId::kRewardCalls, {{"plugin", "math_verify"}}).Increment(8);
      a.counter(CounterId::kRewardErrors, {{"plugin", "math_verify"}}).Increment(0);
      a.counter(CounterId::kRewardTimeouts, {{"plugin", "math_verify"}})
          .Increment(tick_ % 25 == 0 ? 1 : 0);
      a.counter(CounterId::kLeasesDeclined).Increment(tick_ % 50 == 0 ? 1 : 0);
      for (const char* w : {"0", "1"}) {
        const Labels worker = {{"plugin", "math_verify"}, {"worker", w}};
        a.gauge(GaugeId::kRewardWorkerUp, worker).Set(1);
        a.gauge(GaugeId::kRewardWorkerMemory, worker).Set(24 << 20);
        a.counter(CounterId::kRewardWorkerCpu, worker).Increment(0.05);
      }
      a.counter(CounterId::kRewardWorkerRestarts, {{"plugin", "math_verify"}})
          .Increment(tick_ % 40 == 0 ? 1 : 0);
      a.counter(CounterId::kCacheHits, {{"cache", "prefix"}}).Increment(6);
      a.counter(CounterId::kCacheMisses, {{"cache", "prefix"}}).Increment(2);
      a.gauge(GaugeId::kCacheBytes, {{"cache", "prompt_embeddings"}}).Set(3 << 20);
      a.counter(CounterId::kWeightUpdates).Increment();
      a.counter(CounterId::kSentBytes, {{"channel", "trajectories"}}).Increment(1 << 15);
      a.counter(CounterId::kReceivedBytes, {{"channel", "weights"}}).Increment(1 << 20);
      a.gauge(GaugeId::kPolicyVersion).Set(t - 1);
      a.gauge(GaugeId::kQueueDepth, {{"queue", "work"}}).Set(2);
      for (int i = 0; i < 8; ++i) {
        a.histogram(HistogramId::kReward).Observe((i + tick_) % 3 == 0 ? 1.0 : 0.0);
        a.histogram(HistogramId::kResponseLength).Observe(200 + 150 * ((i * 7 + tick_) % 11));
      }
    }
  }

  std::string run_id_;
  std::unique_ptr<MetricsRegistry> launcher_, learner_;
  std::vector<std::unique_ptr<MetricsRegistry>> actors_;
  std::thread driver_;
  std::atomic<bool> stop_{false};
  std::size_t tick_ = 0;
};

std::string Join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "  " + l + "\n";
  return s;
}

// Polls `check` (which returns its problems) until it returns none or `seconds` pass; returns the
// last problems.
template <typename F>
std::vector<std::string> Eventually(double seconds, F check) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  std::vector<std::string> problems;
  do {
    problems = check();
    if (problems.empty()) return problems;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  } while (Clock::now() < deadline);
  return problems;
}

TEST(DashboardsLive, EveryQueryAndRuleEvaluatesAgainstARealPrometheus) {
  if (access("/usr/bin/prometheus", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/prometheus not installed (Debian package 'prometheus'); "
                    "dashboard queries not checked";
  }
  const auto started = Clock::now();
  fs::path work = fs::temp_directory_path() / ("chainrl_dashboards_" + std::to_string(getpid()));
  fs::remove_all(work);
  fs::create_directories(work / "runs");
  const std::string run_id = "e2e.run-1";  // a '.' exercises the regex escaping of $run_id

  SimulatedRun run;
  Status st = run.Start(run_id, (work / "runs").string());
  ASSERT_TRUE(st.ok()) << st.ToString();

  PrometheusForRunsOptions po;
  po.prometheus_yml = kPrometheusYml;
  po.alerts_yml = kAlertsYml;
  po.targets_glob = (work / "runs" / "prometheus" / "*.json").string();
  po.work_dir = (work / "prometheus").string();
  auto server = StartPrometheusForRuns(po);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  PrometheusClient client((*server)->url());

  // All four processes discovered through the file and scraped.
  auto targets = Eventually(20, [&] {
    std::vector<std::string> p;
    auto t = client.ActiveTargets();
    if (!t.ok()) return std::vector<std::string>{t.status().message()};
    if (t->size() != 4) p.push_back(std::to_string(t->size()) + " targets, want 4");
    for (const auto& x : *t) {
      if (x.health != "up") p.push_back(x.scrape_url + " is " + x.health + " " + x.last_error);
      if (x.labels.count("run_id") == 0 || x.labels.at("run_id") != run_id)
        p.push_back(x.scrape_url + " lacks run_id");
    }
    return p;
  });
  ASSERT_TRUE(targets.empty()) << Join(targets) << (*server)->LogTail();

  // Every dashboard query returns data once a few scrapes are in (rate windows of 10 s).
  std::vector<QueryCheck> checks;
  auto dashboard_problems = Eventually(30, [&] {
    checks.clear();
    return CheckDashboards(client, {kDashboard}, run_id, "10s", &checks);
  });
  EXPECT_TRUE(dashboard_problems.empty()) << Join(dashboard_problems);
  auto queries = DashboardQueries(kDashboard);
  ASSERT_TRUE(queries.ok());
  EXPECT_EQ(checks.size(), queries->size());
  EXPECT_GE(checks.size(), 60u);

  // Spot-check values, not just presence: 2 actors up; the learner adds 4 groups per step (a
  // scrape may land between the two increments of a tick, hence the range).
  auto up = client.Query("sum(up{run_id=\"" + run_id + "\", role=\"actor\"})");
  ASSERT_TRUE(up.ok() && up->samples.size() == 1) << up.status().ToString();
  EXPECT_EQ(up->samples[0].value, 2);
  auto groups = client.Query(
      "chainrl_groups_trained_total{role=\"learner\"} - 4 * chainrl_steps_total{role=\"learner\"}");
  ASSERT_TRUE(groups.ok() && groups->samples.size() == 1) << groups.status().ToString();
  EXPECT_GE(groups->samples[0].value, -4);
  EXPECT_LE(groups->samples[0].value, 0);
  auto steps = client.Query("chainrl_steps_total{role=\"learner\"}");
  ASSERT_TRUE(steps.ok() && steps->samples.size() == 1);
  EXPECT_GE(steps->samples[0].value, 10);

  // Every alert rule is loaded, healthy and evaluable; none fires in a healthy run.
  auto rule_problems = Eventually(15, [&] { return CheckRules(client); });
  EXPECT_TRUE(rule_problems.empty()) << Join(rule_problems);
  auto rules = client.Rules();
  ASSERT_TRUE(rules.ok());
  EXPECT_GE(rules->size(), 7u);
  auto alerts = client.Alerts();
  ASSERT_TRUE(alerts.ok());
  for (const AlertState& a : *alerts) ADD_FAILURE() << "alert active in a healthy run: " << a.name;

  // Drive three conditions; the alerts without a `for` delay must fire, the other one pend.
  run.loss_nan.store(true);
  run.actor_crash_loop.store(true);
  run.stale.store(true);
  std::map<std::string, std::string> state;
  auto fired = Eventually(20, [&] {
    state.clear();
    auto a = client.Alerts();
    if (!a.ok()) return std::vector<std::string>{a.status().message()};
    for (const AlertState& x : *a) state[x.name] = x.state;
    std::vector<std::string> p;
    if (state["ChainrlLossNotFinite"] != "firing") p.push_back("ChainrlLossNotFinite not firing");
    if (state["ChainrlActorRestartingRepeatedly"] != "firing")
      p.push_back("ChainrlActorRestartingRepeatedly not firing");
    if (state["ChainrlStalenessAboveBound"].empty())
      p.push_back("ChainrlStalenessAboveBound not pending");
    return p;
  });
  EXPECT_TRUE(fired.empty()) << Join(fired);
  auto a = client.Alerts();
  ASSERT_TRUE(a.ok());
  for (const AlertState& x : *a) {
    EXPECT_EQ(x.labels.at("run_id"), run_id) << x.name;
    if (x.name == "ChainrlActorRestartingRepeatedly") {
      EXPECT_EQ(x.labels.at("actor_id"), "1");
    }
    EXPECT_TRUE(x.name == "ChainrlLossNotFinite" || x.name == "ChainrlActorRestartingRepeatedly" ||
                x.name == "ChainrlStalenessAboveBound")
        << "unexpected alert " << x.name;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("dashboards live check: %zu queries, %zu rules, %.1f s\n", checks.size(),
              rules->size(), seconds);
  server->reset();
  fs::remove_all(work);
}

// ---- static checks of the dashboard JSON (what Grafana needs to load it unattended) ----

nlohmann::json LoadDashboard() {
  std::ifstream in(kDashboard);
  return nlohmann::json::parse(in);
}

TEST(DashboardJson, SchemaVariablesAndRows) {
  nlohmann::json d = LoadDashboard();
  EXPECT_EQ(d["schemaVersion"], 39);
  EXPECT_EQ(d["uid"], "chainrl-run");
  const auto& vars = d["templating"]["list"];
  ASSERT_EQ(vars.size(), 2u);
  EXPECT_EQ(vars[0]["name"], "datasource");
  EXPECT_EQ(vars[0]["type"], "datasource");
  EXPECT_EQ(vars[0]["query"], "prometheus");
  EXPECT_EQ(vars[1]["name"], "run_id");
  EXPECT_EQ(vars[1]["definition"], "label_values(chainrl_steps_total, run_id)");
  EXPECT_EQ(vars[1]["datasource"]["uid"], "${datasource}");

  std::vector<std::string> rows;
  std::set<int> ids;
  // Panels on the 24-column grid must not overlap.
  std::vector<std::vector<bool>> grid(400, std::vector<bool>(24, false));
  for (const auto& p : d["panels"]) {
    EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "duplicate id " << p["id"];
    const auto& g = p["gridPos"];
    const int x = g["x"], y = g["y"], w = g["w"], h = g["h"];
    ASSERT_LE(x + w, 24) << p["title"];
    for (int yy = y; yy < y + h; ++yy)
      for (int xx = x; xx < x + w; ++xx) {
        EXPECT_FALSE(grid[yy][xx]) << p["title"] << " overlaps at " << xx << "," << yy;
        grid[yy][xx] = true;
      }
    if (p["type"] == "row") {
      rows.push_back(p["title"]);
      continue;
    }
    EXPECT_TRUE(p["type"] == "timeseries" || p["type"] == "stat") << p["type"];
    EXPECT_EQ(p["datasource"]["uid"], "${datasource}") << p["title"];
    EXPECT_FALSE(p["description"].get<std::string>().empty()) << p["title"];
    ASSERT_FALSE(p["targets"].empty()) << p["title"];
    for (const auto& t : p["targets"]) {
      EXPECT_NE(t["expr"].get<std::string>().find("$run_id"), std::string::npos)
          << p["title"] << ": every query must select the run";
    }
  }
  EXPECT_EQ(rows, (std::vector<std::string>{"Overview", "Rollout", "Rewards and lengths", "Learner",
                                            "Weights and transport", "Reliability"}));
}

TEST(DashboardJson, EveryCatalogueMetricIsShown) {
  auto queries = DashboardQueries(kDashboard);
  ASSERT_TRUE(queries.ok()) << queries.status().ToString();
  std::string all;
  for (const auto& q : *queries) all += q.expr + "\n";
  for (const MetricSpec& spec : Catalogue()) {
    // A metric name is used when followed by a selector or a histogram suffix.
    bool used = all.find(spec.name + "{") != std::string::npos ||
                all.find(spec.name + "_bucket{") != std::string::npos;
    EXPECT_TRUE(used) << spec.name << " is on no dashboard panel";
  }
}

}  // namespace
}  // namespace chainrl::metrics
