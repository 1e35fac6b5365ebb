// Tests of the metrics catalogue and registry: naming conventions, live /metrics scrapes linted by
// promtool, label bounds, the busy-port error, file_sd targets, a push to a real Pushgateway, and a
// process's registry started and pushed as its run config says.
#include "core/metrics.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "apps/run_config.h"
#include "core/endpoints.h"
#include "core/metrics_queries.h"

namespace chainrl::metrics {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("chainrl_metrics_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command, returning its exit status and combined output.
std::pair<int, std::string> RunCommand(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::unique_ptr<MetricsRegistry> MustCreate(MetricsOptions o) {
  auto r = MetricsRegistry::Create(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Gives every metric of the catalogue at least one series, so a scrape covers all of them.
void TouchEverything(MetricsRegistry& m) {
  for (const MetricSpec& spec : Catalogue()) {
    Labels labels;
    for (const LabelSpec& l : spec.labels) labels[l.name] = l.allowed.empty() ? "x" : l.allowed[0];
    if (spec.name == "chainrl_build_info") continue;  // set by Create with its real label
    switch (spec.type) {
      case MetricType::kCounter:
        m.counter(static_cast<CounterId>(spec.index), labels).Increment(2);
        break;
      case MetricType::kGauge:
        if (spec.name == "chainrl_process_resident_memory_bytes" ||
            spec.name == "chainrl_process_start_time_seconds")
          continue;
        m.gauge(static_cast<GaugeId>(spec.index), labels).Set(0.5);
        break;
      case MetricType::kHistogram:
        m.histogram(static_cast<HistogramId>(spec.index), labels).Observe(1);
        break;
    }
  }
}

TEST(MetricsCatalogue, NamesFollowConventionsAndAreUnique) {
  std::set<std::string> names;
  for (const MetricSpec& spec : Catalogue()) {
    EXPECT_EQ(NameProblem(spec.name, spec.type), "") << spec.name;
    EXPECT_FALSE(spec.help.empty()) << spec.name;
    EXPECT_EQ(spec.help.back(), '.') << spec.name << ": help should be a sentence";
    // A histogram exposes name_bucket/_sum/_count; none of them may collide with another name.
    std::vector<std::string> exposed = {spec.name};
    if (spec.type == MetricType::kHistogram) {
      exposed = {spec.name + "_bucket", spec.name + "_sum", spec.name + "_count"};
      ASSERT_FALSE(spec.buckets.empty()) << spec.name;
      for (size_t i = 1; i < spec.buckets.size(); ++i) {
        EXPECT_LT(spec.buckets[i - 1], spec.buckets[i]) << spec.name << " bucket " << i;
      }
    } else {
      EXPECT_TRUE(spec.buckets.empty()) << spec.name;
    }
    for (const std::string& n : exposed) EXPECT_TRUE(names.insert(n).second) << "duplicate " << n;
    for (const LabelSpec& l : spec.labels) {
      EXPECT_NE(l.name, kRunIdLabel) << spec.name;
      EXPECT_NE(l.name, kRoleLabel) << spec.name;
      EXPECT_NE(l.name, "le") << spec.name;
    }
  }
  EXPECT_EQ(Catalogue().size(), static_cast<size_t>(CounterId::kCount) +
                                    static_cast<size_t>(GaugeId::kCount) +
                                    static_cast<size_t>(HistogramId::kCount));
}

TEST(MetricsCatalogue, SpecLooksUpEveryId) {
  for (size_t i = 0; i < static_cast<size_t>(CounterId::kCount); ++i) {
    EXPECT_EQ(Spec(static_cast<CounterId>(i)).index, i);
    EXPECT_EQ(Spec(static_cast<CounterId>(i)).type, MetricType::kCounter);
  }
  for (size_t i = 0; i < static_cast<size_t>(GaugeId::kCount); ++i) {
    EXPECT_EQ(Spec(static_cast<GaugeId>(i)).type, MetricType::kGauge);
  }
  EXPECT_EQ(Spec(CounterId::kSteps).name, "chainrl_steps_total");
  EXPECT_EQ(Spec(GaugeId::kResidentMemory).name, "chainrl_process_resident_memory_bytes");
  EXPECT_EQ(Spec(HistogramId::kResponseLength).name, "chainrl_response_length_tokens");
  EXPECT_EQ(Spec(CounterId::kPhaseSeconds).labels.at(0).allowed.size(), 5u);
}

TEST(MetricsCatalogue, NameProblemRejectsBadNames) {
  struct Case {
    const char* name;
    MetricType type;
    const char* expected;  // substring of the reason
  };
  const Case cases[] = {
      {"steps_total", MetricType::kCounter, "chainrl_"},
      {"chainrl_chainrl_steps_total", MetricType::kCounter, "repeats"},
      {"chainrl_Steps_total", MetricType::kCounter, "snake"},
      {"chainrl_steps", MetricType::kCounter, "_total"},
      {"chainrl_loss_total", MetricType::kGauge, "not a counter"},
      {"chainrl_step_time_ms", MetricType::kGauge, "non-base unit ms"},
      {"chainrl_step_milliseconds", MetricType::kGauge, "milliseconds"},
      {"chainrl_rss_mb_now", MetricType::kGauge, "mb"},
      {"chainrl_reward_bucket", MetricType::kGauge, "reserved"},
      {"chainrl__x", MetricType::kGauge, "empty word"},
      {"chainrl_x_", MetricType::kGauge, "empty word"},
  };
  for (const Case& c : cases) {
    std::string why = NameProblem(c.name, c.type);
    EXPECT_NE(why.find(c.expected), std::string::npos) << c.name << ": '" << why << "'";
  }
  EXPECT_EQ(NameProblem("chainrl_step_duration_seconds", MetricType::kHistogram), "");
  EXPECT_EQ(NameProblem("chainrl_status_total", MetricType::kCounter), "");
}

TEST(MetricsRegistry, LiveScrapeReturnsTheSeries) {
  fs::path dir = TempDir("scrape");
  auto m = MustCreate(
      MetricsOptions().set_run_id("run-7").set_role("actor").set_actor_id(3).set_address_file(
          (dir / "metrics_address").string()));
  ASSERT_TRUE(m);
  ASSERT_GT(m->port(), 0);
  EXPECT_EQ(m->address(), "127.0.0.1:" + std::to_string(m->port()));
  EXPECT_EQ(ReadFile(dir / "metrics_address"), m->address() + "\n");

  m->counter(CounterId::kRolloutTokens).Increment(1234);
  m->counter(CounterId::kPhaseSeconds, {{"phase", "generation"}}).Increment(2.5);
  m->gauge(GaugeId::kPolicyVersion).Set(17);
  auto& h = m->histogram(HistogramId::kResponseLength);
  for (double v : {10.0, 40.0, 100.0, 100.0, 1e6}) h.Observe(v);

  PrometheusClient http("http://" + m->address());
  auto body = http.Get("/metrics");
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  const std::string& s = *body;
  const std::string ids = "actor_id=\"3\",role=\"actor\",run_id=\"run-7\"";
  EXPECT_NE(s.find("chainrl_rollout_tokens_total{" + ids + "} 1234\n"), std::string::npos) << s;
  EXPECT_NE(s.find("chainrl_phase_seconds_total{" + ids + ",phase=\"generation\"} 2.5\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("chainrl_policy_version{" + ids + "} 17\n"), std::string::npos) << s;
  // Buckets are cumulative: <=32 holds 10; <=64 adds 40; <=128 adds the two 100s; 1e6 is over.
  EXPECT_NE(s.find("chainrl_response_length_tokens_bucket{" + ids + ",le=\"32\"} 1\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("chainrl_response_length_tokens_bucket{" + ids + ",le=\"128\"} 4\n"),
            std::string::npos);
  EXPECT_NE(s.find("chainrl_response_length_tokens_bucket{" + ids + ",le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_NE(s.find("chainrl_response_length_tokens_count{" + ids + "} 5\n"), std::string::npos);
  EXPECT_NE(s.find("chainrl_response_length_tokens_sum{" + ids + "} 1000250\n"), std::string::npos);
  EXPECT_NE(s.find("# HELP chainrl_rollout_tokens_total Tokens generated by rollouts"),
            std::string::npos);
  EXPECT_NE(s.find("# TYPE chainrl_rollout_tokens_total counter"), std::string::npos);
  EXPECT_NE(s.find("chainrl_build_info{" + ids + ",version=\""), std::string::npos);
  // Families this process never touched are left out entirely.
  EXPECT_EQ(s.find("chainrl_loss"), std::string::npos);
  EXPECT_EQ(s.find("chainrl_steps_total"), std::string::npos);
  // The HTTP body is exactly what Scrape() renders (resident memory may move between the two).
  auto strip_rss = [](const std::string& text) {
    std::string out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("chainrl_process_resident_memory_bytes{", 0) != 0) out += line + "\n";
    }
    return out;
  };
  EXPECT_EQ(strip_rss(s), strip_rss(m->Scrape()));
}

TEST(MetricsRegistry, ResidentMemoryIsReadOnScrape) {
  auto m = MustCreate(MetricsOptions().set_run_id("r").set_role("learner").set_serve(false));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->port(), 0);
  EXPECT_EQ(m->address(), "");
  const int64_t before = ResidentMemoryBytes();
  ASSERT_GT(before, 1 << 20);  // any process with libstdc++ loaded holds more than 1 MiB
  // Touch 64 MiB so the resident size grows by about that much.
  std::vector<char> block(64 << 20);
  for (size_t i = 0; i < block.size(); i += 4096) block[i] = static_cast<char>(i);
  const std::string s = m->Scrape();
  const std::string key = "chainrl_process_resident_memory_bytes{role=\"learner\",run_id=\"r\"} ";
  size_t at = s.find(key);
  ASSERT_NE(at, std::string::npos) << s;
  const double rss = std::strtod(s.c_str() + at + key.size(), nullptr);
  EXPECT_GE(rss, static_cast<double>(before + (60 << 20))) << "before " << before;
  EXPECT_LT(rss, static_cast<double>(before + (200 << 20)));
  EXPECT_EQ(block[4096], static_cast<char>(4096));
}

TEST(MetricsRegistry, PromtoolFindsNothingInALiveScrape) {
  auto m = MustCreate(MetricsOptions().set_run_id("lint").set_role("learner"));
  ASSERT_TRUE(m);
  TouchEverything(*m);
  m->gauge(GaugeId::kLoss).Set(std::nan(""));  // NaN is a legal sample value
  PrometheusClient http("http://" + m->address());
  auto body = http.Get("/metrics");
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  // Every catalogue metric is in the scrape.
  for (const MetricSpec& spec : Catalogue()) {
    EXPECT_NE(body->find("# TYPE " + spec.name + " " + MetricTypeName(spec.type)),
              std::string::npos)
        << spec.name;
  }
  if (access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package 'prometheus'); lint not run";
  }
  fs::path dir = TempDir("promtool");
  std::ofstream(dir / "scrape.txt") << *body;
  auto [rc, out] = RunCommand("/usr/bin/promtool check metrics < " + (dir / "scrape.txt").string());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "") << "promtool check metrics complained:\n" << out;

  // And the lint is live: a badly named metric in the same text is reported.
  std::ofstream(dir / "bad.txt") << *body
                                 << "# HELP chainrl_bad_count x\n# TYPE chainrl_bad_count "
                                    "counter\nchainrl_bad_count 1\n";
  auto [rc2, out2] = RunCommand("/usr/bin/promtool check metrics < " + (dir / "bad.txt").string());
  EXPECT_NE(out2.find("chainrl_bad_count"), std::string::npos) << out2;
}

TEST(MetricsRegistry, BusyPortIsAClearError) {
  auto first = MustCreate(MetricsOptions().set_run_id("a").set_role("learner"));
  ASSERT_TRUE(first);
  auto second = MetricsRegistry::Create(
      MetricsOptions().set_run_id("a").set_role("actor").set_listen(first->address()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(first->address()), std::string::npos)
      << second.status().message();
}

TEST(MetricsRegistry, RejectsBadIdentity) {
  auto r = MetricsRegistry::Create(MetricsOptions().set_role("learner"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("run_id"), std::string::npos);
  r = MetricsRegistry::Create(MetricsOptions().set_run_id("a b").set_role("learner"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = MetricsRegistry::Create(MetricsOptions().set_run_id("a").set_role(""));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("role"), std::string::npos);
}

TEST(MetricsRegistry, OpenLabelSetsFoldIntoOtherBeyondTheBound) {
  auto m = MustCreate(MetricsOptions().set_run_id("r").set_role("actor").set_serve(false));
  ASSERT_TRUE(m);
  for (size_t i = 0; i < kMaxSeriesPerMetric + 10; ++i) {
    m->counter(CounterId::kRewardErrors, {{"plugin", "p" + std::to_string(i)}}).Increment();
  }
  // The same value twice is the same series, even past the bound.
  m->counter(CounterId::kRewardErrors, {{"plugin", "p0"}}).Increment();
  const std::string s = m->Scrape();
  size_t series = 0;
  for (size_t at = s.find("\nchainrl_reward_errors_total{"); at != std::string::npos;
       at = s.find("\nchainrl_reward_errors_total{", at + 1))
    ++series;
  EXPECT_EQ(series, kMaxSeriesPerMetric + 1);  // 64 named + "other"
  EXPECT_NE(s.find("{role=\"actor\",run_id=\"r\",plugin=\"other\"} 10\n"), std::string::npos) << s;
  EXPECT_NE(s.find("{role=\"actor\",run_id=\"r\",plugin=\"p0\"} 2\n"), std::string::npos);
}

TEST(MetricsRegistryDeathTest, WrongLabelsAreBugs) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto m = MustCreate(MetricsOptions().set_run_id("r").set_role("learner").set_serve(false));
  ASSERT_TRUE(m);
  EXPECT_DEATH(m->counter(CounterId::kPhaseSeconds, {{"phase", "thinking"}}),
               "not a value of label phase");
  EXPECT_DEATH(m->counter(CounterId::kPhaseSeconds), "takes 1 labels, got 0");
  EXPECT_DEATH(m->counter(CounterId::kSteps, {{"plugin", "x"}}), "takes 0 labels");
  EXPECT_DEATH(m->counter(CounterId::kRewardErrors, {{"plugins", "x"}}), "needs label plugin");
}

TEST(MetricsRegistry, HandlesAreThreadSafe) {
  auto m = MustCreate(MetricsOptions().set_run_id("r").set_role("learner").set_serve(false));
  ASSERT_TRUE(m);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 5000; ++i) {
        // Fetch every time on purpose: the lookup itself must be safe under contention.
        m->counter(CounterId::kCacheHits, {{"cache", t % 2 ? "kv" : "embedding"}}).Increment();
        m->counter(CounterId::kSteps).Increment();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(m->counter(CounterId::kSteps).Value(), 20000);
  EXPECT_EQ(m->counter(CounterId::kCacheHits, {{"cache", "kv"}}).Value(), 10000);
  EXPECT_EQ(m->counter(CounterId::kCacheHits, {{"cache", "embedding"}}).Value(), 10000);
}

TEST(PhaseTimer, AddsItsScopeOnceToThePhaseCounter) {
  auto m = MustCreate(MetricsOptions().set_run_id("r").set_role("actor").set_serve(false));
  ASSERT_TRUE(m);
  double first = 0;
  {
    PhaseTimer t(*m, kPhaseGeneration);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    first = t.Stop();
    EXPECT_EQ(t.Stop(), first);  // a second Stop (and the destructor) adds nothing
  }
  EXPECT_GE(first, 0.03);
  { PhaseTimer t(*m, kPhaseGeneration); }
  const double total = m->counter(CounterId::kPhaseSeconds, {{"phase", "generation"}}).Value();
  EXPECT_GE(total, first);
  EXPECT_LT(total - first, 0.5);  // the empty scope adds (almost) nothing
  EXPECT_EQ(m->counter(CounterId::kPhaseSeconds, {{"phase", "reward"}}).Value(), 0);
}

TEST(ScrapeTargets, WritesFileSdJson) {
  fs::path dir = TempDir("targets");
  const std::string path = ScrapeTargetsPath(dir.string(), "run-1");
  EXPECT_EQ(path, (dir / "prometheus" / "run-1.json").string());
  ASSERT_TRUE(WriteScrapeTargets(path, "run-1",
                                 {{"127.0.0.1:9001", "launcher", std::nullopt},
                                  {"127.0.0.1:9002", "learner", std::nullopt},
                                  {"127.0.0.1:9003", "actor", 0}})
                  .ok());
  nlohmann::json j = nlohmann::json::parse(ReadFile(path));
  const nlohmann::json expected = nlohmann::json::parse(R"([
    {"targets": ["127.0.0.1:9001"], "labels": {"run_id": "run-1", "role": "launcher"}},
    {"targets": ["127.0.0.1:9002"], "labels": {"run_id": "run-1", "role": "learner"}},
    {"targets": ["127.0.0.1:9003"], "labels": {"run_id": "run-1", "role": "actor",
                                                "actor_id": "0"}}])");
  EXPECT_EQ(j, expected) << j.dump(2);
  // No temp file is left behind.
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir / "prometheus")) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);

  Status bad = WriteScrapeTargets(path, "run-1", {{"localhost", "actor", 1}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'localhost'"), std::string::npos) << bad.message();
  EXPECT_FALSE(WriteScrapeTargets(path, "", {}).ok());
  Status unwritable = WriteScrapeTargets("/proc/chainrl/none.json", "r", {});
  ASSERT_FALSE(unwritable.ok());
  EXPECT_NE(unwritable.message().find("/proc/chainrl"), std::string::npos) << unwritable.message();
}

// A Pushgateway child process on a free port; skipped where the binary is absent.
class Pushgateway {
 public:
  static constexpr const char* kBinary = "/usr/bin/prometheus-pushgateway";
  bool Start() {
    auto port = PickFreePort();
    if (!port.ok()) return false;
    url_ = "http://127.0.0.1:" + std::to_string(*port);
    std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(*port);
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      int devnull = open("/dev/null", O_WRONLY);
      if (devnull >= 0) dup2(devnull, 2);
      execl(kBinary, kBinary, listen.c_str(), "--persistence.file=", (char*)nullptr);
      _exit(127);
    }
    PrometheusClient http(url_, 1);
    for (int i = 0; i < 100; ++i) {
      if (http.Get("/-/ready").ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  ~Pushgateway() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

TEST(MetricsRegistry, PushesToARealPushgateway) {
  if (access(Pushgateway::kBinary, X_OK) != 0) {
    GTEST_SKIP() << Pushgateway::kBinary
                 << " not installed (Debian package 'prometheus-pushgateway')";
  }
  Pushgateway gateway;
  ASSERT_TRUE(gateway.Start()) << "pushgateway did not become ready at " << gateway.url();
  auto m =
      MustCreate(MetricsOptions().set_run_id("short-job").set_role("evaluator").set_serve(false));
  ASSERT_TRUE(m);
  m->counter(CounterId::kSteps).Increment(5);
  m->gauge(GaugeId::kAccuracy).Set(0.625);
  Status st = m->Push(gateway.url());
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto body = PrometheusClient(gateway.url()).Get("/metrics");
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_NE(body->find("chainrl_steps_total{instance=\"\",job=\"chainrl\",role=\"evaluator\","
                       "run_id=\"short-job\"} 5\n"),
            std::string::npos)
      << *body;
  EXPECT_NE(body->find("chainrl_accuracy_ratio{instance=\"\",job=\"chainrl\",role=\"evaluator\","
                       "run_id=\"short-job\"} 0.625\n"),
            std::string::npos);

  // A second push replaces the group (PUT semantics): the new value, not a sum.
  m->counter(CounterId::kSteps).Increment(1);
  ASSERT_TRUE(m->Push(gateway.url() + "/").ok());
  body = PrometheusClient(gateway.url()).Get("/metrics");
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->find("run_id=\"short-job\"} 6\n"), std::string::npos) << *body;
}

TEST(MetricsRegistry, PushErrorsNameTheUrl) {
  auto m = MustCreate(MetricsOptions().set_run_id("r").set_role("learner").set_serve(false));
  ASSERT_TRUE(m);
  Status st = m->Push("127.0.0.1:9091");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'127.0.0.1:9091'"), std::string::npos) << st.message();
  auto port = PickFreePort();  // nothing listens there
  ASSERT_TRUE(port.ok());
  const std::string url = "http://127.0.0.1:" + std::to_string(*port);
  st = m->Push(url);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find(url), std::string::npos) << st.message();
}

constexpr char kRunToml[] = "[model]\npath = \"/models/tiny\"\n";

TEST(ProcessMetrics, StartAsTheRunConfigSays) {
  const fs::path dir = TempDir("process");
  auto on = ParseConfig(kRunToml, "run.toml", {"run.name=\"exp-7\""});
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  auto m = StartProcessMetrics(*on, MetricsOptions()
                                        .set_run_id("replaced")
                                        .set_role("actor")
                                        .set_actor_id(3)
                                        .set_address_file((dir / "actor.addr").string()));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->options().run_id, "exp-7");
  EXPECT_EQ(m->options().role, "actor");
  EXPECT_EQ(m->options().actor_id, 3);
  EXPECT_EQ(ReadFile(dir / "actor.addr"), m->address() + "\n");
  // A registry that cannot be created (here: no role) is a warning, not an error: no metrics.
  EXPECT_EQ(StartProcessMetrics(*on, MetricsOptions()), nullptr);
  auto off = ParseConfig(kRunToml, "run.toml", {"metrics.enabled=false"});
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(StartProcessMetrics(*off, MetricsOptions().set_role("learner")), nullptr);
  fs::remove_all(dir);
}

TEST(ProcessMetrics, FinalFiguresGoToThePushgatewayWhenOneIsSet) {
  if (access(Pushgateway::kBinary, X_OK) != 0) {
    GTEST_SKIP() << Pushgateway::kBinary
                 << " not installed (Debian package 'prometheus-pushgateway')";
  }
  Pushgateway gateway;
  ASSERT_TRUE(gateway.Start()) << "pushgateway did not become ready at " << gateway.url();
  auto m = MustCreate(MetricsOptions().set_run_id("final").set_role("learner").set_serve(false));
  ASSERT_TRUE(m);
  m->counter(CounterId::kSteps).Increment(3);
  PushFinalMetrics(nullptr, gateway.url());  // no registry: nothing to push
  PushFinalMetrics(m.get(), gateway.url());
  const std::string series =
      "chainrl_steps_total{instance=\"\",job=\"chainrl\",role=\"learner\",run_id=\"final\"} ";
  auto body = PrometheusClient(gateway.url()).Get("/metrics");
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_NE(body->find(series + "3\n"), std::string::npos) << *body;

  // No gateway set (metrics.pushgateway = ""): nothing is pushed. A gateway that does not answer:
  // a warning only.
  m->counter(CounterId::kSteps).Increment(1);
  PushFinalMetrics(m.get(), "");
  body = PrometheusClient(gateway.url()).Get("/metrics");
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->find(series + "3\n"), std::string::npos) << *body;
  auto port = PickFreePort();  // nothing listens there
  ASSERT_TRUE(port.ok());
  PushFinalMetrics(m.get(), "http://127.0.0.1:" + std::to_string(*port));
}

}  // namespace
}  // namespace chainrl::metrics
