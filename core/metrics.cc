// MetricsRegistry: prometheus-cpp families built from the catalogue, the HTTP exposer, the
// Pushgateway push, a process's registry set up and pushed as its run config says, and the file_sd
// target file.
#include "core/metrics.h"

#include "core/file_io.h"
#include "core/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <prometheus/gateway.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/config.h"
#include "core/log.h"
#include "core/stopwatch.h"

#ifndef CHAINRL_METRICS_VERSION
#define CHAINRL_METRICS_VERSION "unknown"
#endif

namespace chainrl::metrics {

// The collectable handed to the exposer and the gateway: refreshes the values that are read on
// demand (resident memory) and leaves out families that hold no series yet, so each process only
// exposes what it uses.
class MetricsRegistry::Collector : public prometheus::Collectable {
 public:
  Collector(std::shared_ptr<prometheus::Registry> registry, prometheus::Gauge* rss)
      : registry_(std::move(registry)), rss_(rss) {}
  int Add(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(hooks_mu_);
    hooks_[next_hook_] = std::move(hook);
    return next_hook_++;
  }
  void Remove(int id) {
    std::lock_guard<std::mutex> lock(hooks_mu_);  // waits for a scrape that runs it
    hooks_.erase(id);
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    rss_->Set(static_cast<double>(ResidentMemoryBytes()));
    {
      std::lock_guard<std::mutex> lock(hooks_mu_);
      for (const auto& [id, hook] : hooks_) hook();
    }
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families.size());
    for (auto& f : families) {
      if (!f.metric.empty()) out.push_back(std::move(f));
    }
    return out;
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* rss_;
  mutable std::mutex hooks_mu_;
  std::map<int, std::function<void()>> hooks_;
  int next_hook_ = 0;
};

namespace {

// Label values may be anything printable, but run ids and roles also become path segments of a
// Pushgateway URL and file names; keep them to a safe alphabet.
bool SafeIdentity(const std::string& v) {
  static const std::regex re("[A-Za-z0-9_.:-]+");
  return std::regex_match(v, re);
}

std::string LabelKey(const Labels& labels) {
  std::string key;
  for (const auto& [k, v] : labels) {
    key += k;
    key.push_back('\x1f');
    key += v;
    key.push_back('\x1e');
  }
  return key;
}

}  // namespace

int64_t ResidentMemoryBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long long size = 0, resident = 0;
  int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

std::string ScrapeTargetsPath(const std::string& runs_root, const std::string& run_id) {
  return (std::filesystem::path(runs_root) / "prometheus" / (run_id + ".json")).string();
}

Status WriteScrapeTargets(const std::string& path, const std::string& run_id,
                          const std::vector<ScrapeTarget>& targets) {
  if (run_id.empty()) return InvalidArgument(path + ": scrape targets need a run_id");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return IoError("cannot create folder " + parent.string() + ": " + ec.message());
  }
  nlohmann::json groups = nlohmann::json::array();
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const ScrapeTarget& t = targets[i];
    if (t.address.empty() || t.address.find(':') == std::string::npos) {
      return InvalidArgument(path + ": scrape target " + std::to_string(i) + " (role '" + t.role +
                             "') has address '" + t.address + "', expected host:port");
    }
    if (t.role.empty()) {
      return InvalidArgument(path + ": scrape target " + t.address + " has no role");
    }
    nlohmann::json labels = {{std::string(kRunIdLabel), run_id}, {std::string(kRoleLabel), t.role}};
    if (t.actor_id) labels[std::string(kActorIdLabel)] = std::to_string(*t.actor_id);
    groups.push_back({{"targets", {t.address}}, {"labels", labels}});
  }
  return WriteFileAtomic(path, groups.dump(2) + "\n");
}

MetricsRegistry::MetricsRegistry(MetricsOptions options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {}

MetricsRegistry::~MetricsRegistry() { server_.reset(); }  // stop serving before families go

Result<std::unique_ptr<MetricsRegistry>> MetricsRegistry::Create(const MetricsOptions& options) {
  if (options.run_id.empty() || !SafeIdentity(options.run_id)) {
    return InvalidArgument("metrics: run_id '" + options.run_id +
                           "' must be non-empty and use only [A-Za-z0-9_.:-]");
  }
  if (options.role.empty() || !SafeIdentity(options.role)) {
    return InvalidArgument("metrics: role '" + options.role +
                           "' must be non-empty and use only [A-Za-z0-9_.:-]");
  }
  std::unique_ptr<MetricsRegistry> r(new MetricsRegistry(options));

  prometheus::Labels constant = {{std::string(kRunIdLabel), options.run_id},
                                 {std::string(kRoleLabel), options.role}};
  if (options.actor_id) constant[std::string(kActorIdLabel)] = std::to_string(*options.actor_id);

  for (const MetricSpec& spec : Catalogue()) {
    // A metric whose variable labels include a process label (the launcher's per-actor counters
    // have actor_id) takes it per series instead, even in a process that has it as a constant.
    prometheus::Labels family_constant = constant;
    for (const LabelSpec& l : spec.labels) {
      CHAINRL_CHECK(l.name != kRunIdLabel && l.name != kRoleLabel,
                    spec.name << " may not have run_id or role as a variable label");
      family_constant.erase(l.name);
    }
    switch (spec.type) {
      case MetricType::kCounter:
        r->counters_.push_back(&prometheus::BuildCounter()
                                    .Name(spec.name)
                                    .Help(spec.help)
                                    .Labels(family_constant)
                                    .Register(*r->registry_));
        break;
      case MetricType::kGauge:
        r->gauges_.push_back(&prometheus::BuildGauge()
                                  .Name(spec.name)
                                  .Help(spec.help)
                                  .Labels(family_constant)
                                  .Register(*r->registry_));
        break;
      case MetricType::kHistogram:
        r->histograms_.push_back(&prometheus::BuildHistogram()
                                      .Name(spec.name)
                                      .Help(spec.help)
                                      .Labels(family_constant)
                                      .Register(*r->registry_));
        break;
    }
  }

  // Process identity and health are set here, so every process reports them.
  r->gauge(GaugeId::kBuildInfo, {{"version", CHAINRL_METRICS_VERSION}}).Set(1);
  r->gauge(GaugeId::kProcessStartTime)
      .Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
               .count());
  prometheus::Gauge& rss = r->gauge(GaugeId::kResidentMemory);
  rss.Set(static_cast<double>(ResidentMemoryBytes()));
  r->collector_ = std::make_shared<Collector>(r->registry_, &rss);

  if (options.serve) {
    // Served by our own server (prometheus::Exposer would add its own exposer_* families,
    // outside chainrl's naming; serving ourselves keeps the scrape to the catalogue).
    const Collector* collector = r->collector_.get();
    auto server = HttpServer::Start(
        options.listen, {{"/metrics", [collector] {
                            prometheus::TextSerializer serializer;
                            std::ostringstream os;
                            serializer.Serialize(os, collector->Collect());
                            return os.str();
                          }}});
    if (!server.ok()) return server.status().WithPrefix("metrics");
    r->server_ = std::move(*server);
    r->port_ = r->server_->port();
    const std::size_t colon = options.listen.rfind(':');
    std::string host =
        colon == std::string::npos ? options.listen : options.listen.substr(0, colon);
    if (host.empty()) host = "0.0.0.0";
    r->address_ = host + ":" + std::to_string(r->port_);
    CHAINRL_LOG(kInfo) << "metrics: serving http://" << r->address_ << "/metrics (run "
                       << options.run_id << ", role " << options.role << ")";
    if (!options.address_file.empty()) {
      CHAINRL_RETURN_IF_ERROR(WriteFileAtomic(options.address_file, r->address_ + "\n")
                                  .WithPrefix("metrics: address file"));
    }
  }
  return r;
}

void MetricsRegistry::CheckLabels(const MetricSpec& spec, Labels& labels) {
  CHAINRL_CHECK(labels.size() == spec.labels.size(),
                spec.name << " takes " << spec.labels.size() << " labels, got " << labels.size());
  bool open = false;
  for (const LabelSpec& l : spec.labels) {
    auto it = labels.find(l.name);
    CHAINRL_CHECK(it != labels.end(), spec.name << " needs label " << l.name);
    if (l.allowed.empty()) {
      open = true;
    } else {
      bool found = false;
      for (const std::string& a : l.allowed) found = found || a == it->second;
      CHAINRL_CHECK(found,
                    spec.name << ": '" << it->second << "' is not a value of label " << l.name);
    }
  }
  if (spec.labels.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string>& seen = series_[spec.name];
  const std::string key = LabelKey(labels);
  if (seen.count(key)) return;
  if (seen.size() >= kMaxSeriesPerMetric && open) {
    for (const LabelSpec& l : spec.labels) {
      if (l.allowed.empty()) labels[l.name] = "other";
    }
    const std::string folded = LabelKey(labels);
    if (!seen.count(folded)) {
      CHAINRL_LOG(kWarn) << "metrics: " << spec.name << " reached " << kMaxSeriesPerMetric
                         << " series; further label values are counted as \"other\"";
      seen.insert(folded);
    }
    return;
  }
  seen.insert(key);
}

prometheus::Counter& MetricsRegistry::counter(CounterId id, const Labels& labels) {
  const MetricSpec& spec = Spec(id);
  Labels l = labels;
  CheckLabels(spec, l);
  return counters_[spec.index]->Add(prometheus::Labels(l.begin(), l.end()));
}

prometheus::Gauge& MetricsRegistry::gauge(GaugeId id, const Labels& labels) {
  const MetricSpec& spec = Spec(id);
  Labels l = labels;
  CheckLabels(spec, l);
  return gauges_[spec.index]->Add(prometheus::Labels(l.begin(), l.end()));
}

prometheus::Histogram& MetricsRegistry::histogram(HistogramId id, const Labels& labels) {
  const MetricSpec& spec = Spec(id);
  Labels l = labels;
  CheckLabels(spec, l);
  return histograms_[spec.index]->Add(prometheus::Labels(l.begin(), l.end()), spec.buckets);
}

int MetricsRegistry::AddScrapeHook(std::function<void()> hook) {
  return collector_->Add(std::move(hook));
}

void MetricsRegistry::RemoveScrapeHook(int id) { collector_->Remove(id); }

std::string MetricsRegistry::Scrape() const {
  prometheus::TextSerializer serializer;
  std::ostringstream os;
  serializer.Serialize(os, collector_->Collect());
  return os.str();
}

Status MetricsRegistry::Push(const std::string& url) const {
  static const std::regex re(R"((https?)://([^/:]+|\[[^\]]+\]):([0-9]+)/?)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) {
    return InvalidArgument("metrics: pushgateway URL '" + url +
                           "' is not of the form http://host:port");
  }
  prometheus::Labels grouping = {{std::string(kRunIdLabel), options_.run_id},
                                 {std::string(kRoleLabel), options_.role}};
  if (options_.actor_id) grouping[std::string(kActorIdLabel)] = std::to_string(*options_.actor_id);
  int code = 0;
  try {
    prometheus::Gateway gateway(m[1].str() + "://" + m[2].str(), m[3].str(), "chainrl", grouping);
    gateway.RegisterCollectable(collector_);
    code = gateway.Push();
  } catch (const std::exception& e) {
    return IoError("metrics: push to " + url + " failed: " + e.what());
  }
  if (code < 200 || code >= 300) {
    return IoError("metrics: push to " + url + " failed: " +
                   (code <= 0 ? std::string("no answer (connection failed)")
                              : "HTTP status " + std::to_string(code)));
  }
  return Status::Ok();
}

std::unique_ptr<MetricsRegistry> StartProcessMetrics(const Config& config, MetricsOptions options) {
  if (!config.GetBool("metrics.enabled")) return nullptr;
  options.run_id = config.GetString("run.name");
  if (options.listen.empty()) options.listen = config.GetString("metrics.bind");
  auto m = MetricsRegistry::Create(options);
  if (!m.ok()) {
    CHAINRL_LOG(kWarn) << options.role << " metrics disabled: " << m.status().message();
    return nullptr;
  }
  return std::move(*m);
}

void PushFinalMetrics(const MetricsRegistry* metrics, const std::string& url) {
  if (!metrics || url.empty()) return;
  if (Status st = metrics->Push(url); !st.ok()) {
    CHAINRL_LOG(kWarn) << st.message();
  }
}

PhaseTimer::PhaseTimer(MetricsRegistry& metrics, std::string_view phase)
    : counter_(metrics.counter(CounterId::kPhaseSeconds, {{"phase", std::string(phase)}})),
      start_(std::chrono::steady_clock::now()) {}

double PhaseTimer::Stop() {
  if (seconds_ < 0) {
    seconds_ = SecondsSince(start_);
    counter_.Increment(seconds_);
  }
  return seconds_;
}

}  // namespace chainrl::metrics
