// The metrics registry of one chainrl process (launcher, learner or actor): typed handles from the
// catalogue (core/metrics_catalogue.h), the /metrics HTTP endpoint, an optional push to a
// Pushgateway, and the file_sd target file through which Prometheus discovers a run.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "core/metrics_catalogue.h"
#include "core/status.h"

namespace chainrl {
class Config;
class HttpServer;
}  // namespace chainrl
namespace prometheus {
class Registry;
}  // namespace prometheus

namespace chainrl::metrics {

using Labels = std::map<std::string, std::string>;

// How one process exports its metrics. Maps onto the `[metrics]` table of a run config.
struct MetricsOptions {
  // Identity carried by every series as constant labels.
  std::string run_id;               // REQUIRED, non-empty
  std::string role;                 // REQUIRED: "launcher", "learner", "actor", ...
  std::optional<int64_t> actor_id;  // actors only
  // `listen`: host:port for /metrics; port 0 picks a free port. Loopback by default so that a
  // run never exposes itself to the network unless asked. Empty: StartProcessMetrics takes
  // metrics.bind.
  std::string listen = "127.0.0.1:0";
  bool serve = true;  // false: no HTTP endpoint (short jobs that only push)
  // If non-empty, the bound "host:port" is written here (atomically) once serving.
  std::string address_file;

  MetricsOptions& set_run_id(std::string v) {
    run_id = std::move(v);
    return *this;
  }
  MetricsOptions& set_role(std::string v) {
    role = std::move(v);
    return *this;
  }
  MetricsOptions& set_actor_id(int64_t v) {
    actor_id = v;
    return *this;
  }
  MetricsOptions& set_listen(std::string v) {
    listen = std::move(v);
    return *this;
  }
  MetricsOptions& set_serve(bool v) {
    serve = v;
    return *this;
  }
  MetricsOptions& set_address_file(std::string v) {
    address_file = std::move(v);
    return *this;
  }
};

// Owns the prometheus registry and (when serving) the HTTP exposer. Thread-safe: handles may be
// fetched and updated from any thread. Fetching is a map lookup under a lock, so hot loops should
// keep the returned reference, which stays valid for the registry's lifetime.
class MetricsRegistry {
 public:
  // Builds every family of the catalogue and, if options.serve, starts serving /metrics.
  // Errors: empty run_id/role or a bad label value (InvalidArgument); the address cannot be bound,
  // e.g. a busy port (IoError naming the address); the address file cannot be written (IoError).
  static Result<std::unique_ptr<MetricsRegistry>> Create(const MetricsOptions& options);
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Typed handles. `labels` must name exactly the metric's variable labels from the catalogue
  // (checked: a mismatch is a bug). Values outside a closed label set are a bug; an open set
  // beyond kMaxSeriesPerMetric distinct series folds new values into "other".
  prometheus::Counter& counter(CounterId id, const Labels& labels = {});
  prometheus::Gauge& gauge(GaugeId id, const Labels& labels = {});
  prometheus::Histogram& histogram(HistogramId id, const Labels& labels = {});

  // "host:port" actually bound ("" when not serving), and its port (0 when not serving).
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  const MetricsOptions& options() const { return options_; }

  // `hook` runs before every scrape and push (in the scraping thread), to refresh values read from
  // elsewhere (another process's /proc figures). Returns an id for RemoveScrapeHook, which waits
  // for a scrape running the hook to finish; remove a hook before what it reads goes away.
  int AddScrapeHook(std::function<void()> hook);
  void RemoveScrapeHook(int id);

  // The text exposition format of every series, exactly what GET /metrics returns.
  std::string Scrape() const;

  // Pushes every series to a Pushgateway (replacing this process's group there), for short jobs
  // that end before a scrape. `url` is "http://host:port"; the grouping key is job="chainrl",
  // run_id, role (and actor_id). Error (naming the URL) if the URL is malformed or the gateway
  // does not answer 2xx.
  Status Push(const std::string& url) const;

 private:
  class Collector;
  explicit MetricsRegistry(MetricsOptions options);
  // Validates `labels` against `spec` (CHECK) and folds open-set overflow into "other".
  void CheckLabels(const MetricSpec& spec, Labels& labels);

  MetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<HttpServer> server_;
  std::string address_;
  int port_ = 0;
  // Families indexed by CounterId / GaugeId / HistogramId; owned by registry_.
  std::vector<prometheus::Family<prometheus::Counter>*> counters_;
  std::vector<prometheus::Family<prometheus::Gauge>*> gauges_;
  std::vector<prometheus::Family<prometheus::Histogram>*> histograms_;
  std::mutex mu_;                                        // guards series_
  std::map<std::string, std::set<std::string>> series_;  // metric name -> label sets in use
};

// The registry of one process of a run, as the run config asks: nullptr when metrics.enabled is
// false, or when the registry cannot be created, which is logged as a warning ("learner metrics
// disabled: ...") since a run goes on without metrics. `options` gives the role (REQUIRED), actor
// id, listen address and address file; its run_id is replaced by run.name.
std::unique_ptr<MetricsRegistry> StartProcessMetrics(const Config& config, MetricsOptions options);

// Pushes `metrics` to the Pushgateway at `url` (the run config's metrics.pushgateway), so that a
// process's final figures outlive it. Nothing happens when `metrics` is null or `url` is empty; a
// failed push is logged as a warning.
void PushFinalMetrics(const MetricsRegistry* metrics, const std::string& url);

// Adds the wall time of a scope to chainrl_phase_seconds_total{phase}: the step-time split.
//   { PhaseTimer t(metrics, kPhaseGeneration); ...generate... }
// REQUIRES: `phase` is one of the kPhase* names. One object per scope; not shared across threads.
class PhaseTimer {
 public:
  PhaseTimer(MetricsRegistry& metrics, std::string_view phase);
  ~PhaseTimer() { Stop(); }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;
  // Adds the time since construction (only the first call adds) and returns it in seconds.
  double Stop();

 private:
  prometheus::Counter& counter_;
  std::chrono::steady_clock::time_point start_;
  double seconds_ = -1;
};

// One process of a run for Prometheus' file-based discovery.
struct ScrapeTarget {
  std::string address;              // "host:port" of its /metrics
  std::string role;                 // "launcher", "learner", "actor"
  std::optional<int64_t> actor_id;  // actors only
};

// Where a run's launcher writes its targets so that dashboards/prometheus/prometheus.yml finds
// them: "<runs_root>/prometheus/<run_id>.json". (Prometheus' file_sd accepts a glob only in the
// last path element, so all runs share one folder.)
std::string ScrapeTargetsPath(const std::string& runs_root, const std::string& run_id);

// Writes `path` (atomically: temp file + rename, so Prometheus never reads half a file) in the
// file_sd JSON format: one group per target, labelled run_id, role (and actor_id). The launcher
// calls it whenever the set of processes changes; missing parent folders are created. Errors: empty
// run_id or address (InvalidArgument), the file cannot be written (IoError naming it).
Status WriteScrapeTargets(const std::string& path, const std::string& run_id,
                          const std::vector<ScrapeTarget>& targets);

// Resident set size of this process in bytes, from /proc/self/statm (0 if unreadable).
int64_t ResidentMemoryBytes();

}  // namespace chainrl::metrics
