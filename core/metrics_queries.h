// Checks that chainrl's dashboards and alert rules work against a live Prometheus: extracts every
// PromQL expression from Grafana dashboard JSON, substitutes Grafana's variables, and evaluates
// them through Prometheus' HTTP API. Also starts a private Prometheus server for tests.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace chainrl::metrics {

// One PromQL expression of a dashboard. `where` names it for messages:
// "chainrl.json: row 'Learner' > panel 'Loss' > target A".
struct DashboardQuery {
  std::string where;
  std::string expr;
};

// A templating variable of a dashboard (type "query", "datasource", "custom", ...).
struct DashboardVariable {
  std::string name;
  std::string type;
  std::string query;  // for type "query": e.g. "label_values(chainrl_steps_total, run_id)"
};

// Every target expression of every panel (rows' nested panels included) in Grafana dashboard
// JSON, in document order. Errors (naming the file) if it does not parse or a target has no expr.
Result<std::vector<DashboardQuery>> DashboardQueries(const std::string& dashboard_json_path);
Result<std::vector<DashboardVariable>> DashboardVariables(const std::string& dashboard_json_path);

// Replaces Grafana variable references `$name`, `${name}`, `${name:format}` and `[[name]]` with
// values[name]. Error (naming the variable) if the expression uses one that `values` lacks.
Result<std::string> SubstituteVariables(const std::string& expr,
                                        const std::map<std::string, std::string>& values);

// Grafana's built-in interval variables ($__rate_interval, $__interval, $__range, ...) set as
// Grafana would for a dashboard whose rate window is `rate_interval` (e.g. "10s").
std::map<std::string, std::string> GrafanaIntervalVariables(const std::string& rate_interval);

// Escapes `text` for use inside a PromQL regex matcher (=~"..."), as Grafana does for a single
// value of a variable.
std::string PromRegexEscape(const std::string& text);

// The result of an instant query: one entry per series (a scalar gives one unlabelled entry).
struct QuerySample {
  std::map<std::string, std::string> labels;
  double value = 0;
};
struct QueryResult {
  std::string result_type;  // "vector", "scalar", "matrix", "string"
  std::vector<QuerySample> samples;
};

// A loaded alerting or recording rule as Prometheus reports it.
struct RuleState {
  std::string group;
  std::string name;
  std::string type;  // "alerting" or "recording"
  std::string query;
  std::string health;  // "ok", "err", "unknown"
  std::string last_error;
  std::string state;  // alerting rules: "inactive", "pending", "firing"
};

struct AlertState {
  std::string name;
  std::string state;  // "pending" or "firing"
  std::map<std::string, std::string> labels;
};

struct TargetState {
  std::string scrape_url;
  std::string health;  // "up", "down", "unknown"
  std::string last_error;
  std::map<std::string, std::string> labels;
};

// A small client for Prometheus' HTTP API (GET only). Thread-compatible. Every error names the
// URL and, for query errors, Prometheus' own message.
class PrometheusClient {
 public:
  explicit PrometheusClient(std::string base_url, double timeout_seconds = 10);

  // GET base_url + path with URL-encoded `params`; the body if the status is 2xx.
  Result<std::string> Get(
      const std::string& path,
      const std::vector<std::pair<std::string, std::string>>& params = {}) const;
  // /-/ready answers 200.
  bool Ready() const;
  // Instant query at the server's current time.
  Result<QueryResult> Query(const std::string& expr) const;
  // Grafana's label_values(metric, label): the values of `label` on series matching `match`.
  Result<std::vector<std::string>> LabelValues(const std::string& label,
                                               const std::string& match) const;
  Result<std::vector<RuleState>> Rules() const;
  Result<std::vector<AlertState>> Alerts() const;
  Result<std::vector<TargetState>> ActiveTargets() const;

  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_;
  double timeout_seconds_;
};

// The outcome of evaluating one dashboard query.
struct QueryCheck {
  DashboardQuery query;
  std::string expanded;  // after variable substitution
  std::string error;     // "" if it evaluated
  std::size_t series = 0;
};

// Substitutes `variables` into each query and evaluates it. Never fails as a whole: each entry
// carries its own error (a bad substitution or a PromQL error).
std::vector<QueryCheck> EvaluateQueries(const PrometheusClient& client,
                                        const std::vector<DashboardQuery>& queries,
                                        const std::map<std::string, std::string>& variables);

// Rewrites chainrl's prometheus.yml for a private server: every `scrape_interval:` and
// `evaluation_interval:` value, the file_sd `files:` list (to `targets_glob`) and the
// `rule_files:` list (to `rules_path`). Error if the template lacks any of them, so a change to
// the shipped file that a test cannot follow is noticed.
struct PrometheusConfigEdits {
  std::string scrape_interval = "1s";
  std::string scrape_timeout = "1s";  // replaces any scrape_timeout (must not exceed the interval)
  std::string evaluation_interval = "1s";
  std::string targets_glob;  // REQUIRED: absolute path or glob of file_sd JSON files
  std::string rules_path;    // REQUIRED: absolute path of the alert rules
};
Result<std::string> RenderPrometheusConfig(const std::string& template_text,
                                           const PrometheusConfigEdits& edits);

// A Prometheus server run as a child process on 127.0.0.1, for tests and local checks.
// Stopped (SIGTERM, then SIGKILL after 5 s) by the destructor.
class PrometheusServer {
 public:
  struct Options {
    std::string binary = "/usr/bin/prometheus";
    std::string config_file;  // REQUIRED
    std::string storage_dir;  // REQUIRED: an empty folder; the server's log goes there too
    double ready_timeout_seconds = 30;
  };
  // Starts the server on a free port and waits until /-/ready answers. Errors: the binary is
  // missing (NotFound), or the server exits or is not ready in time (IoError with its log tail).
  static Result<std::unique_ptr<PrometheusServer>> Start(const Options& options);
  ~PrometheusServer();
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  const std::string& url() const { return url_; }  // "http://127.0.0.1:PORT"
  // The last `max_bytes` of the server's log.
  std::string LogTail(std::size_t max_bytes = 4000) const;

 private:
  PrometheusServer() = default;
  pid_t pid_ = -1;
  std::string url_;
  std::string log_path_;
};

// Starts a private Prometheus for checking chainrl's files against live processes: renders
// `prometheus_yml` (RenderPrometheusConfig) into work_dir/prometheus.yml with the given targets
// glob and `alerts_yml`, and starts the server with storage in work_dir.
struct PrometheusForRunsOptions {
  std::string prometheus_yml;  // REQUIRED: e.g. <source>/dashboards/prometheus/prometheus.yml
  std::string alerts_yml;      // REQUIRED: e.g. <source>/dashboards/prometheus/alerts.yml
  std::string targets_glob;    // REQUIRED: e.g. <runs root>/prometheus/*.json
  std::string work_dir;        // REQUIRED: created if missing
  std::string scrape_interval = "1s";
  std::string binary = "/usr/bin/prometheus";
};
Result<std::unique_ptr<PrometheusServer>> StartPrometheusForRuns(
    const PrometheusForRunsOptions& options);

// Evaluates every panel query of every dashboard in `dashboard_paths` for run `run_id`
// ($run_id set to it, regex-escaped; Grafana's interval variables from `rate_interval`). Also
// checks that each `label_values(metric, label)` variable lists run_id when `label` is run_id.
// Returns one line per problem (a query that fails or returns no series), empty if all is well;
// `checks` (optional) receives every evaluated query.
std::vector<std::string> CheckDashboards(const PrometheusClient& client,
                                         const std::vector<std::string>& dashboard_paths,
                                         const std::string& run_id,
                                         const std::string& rate_interval,
                                         std::vector<QueryCheck>* checks = nullptr);

// Checks every rule Prometheus has loaded: health "ok" with no last error, and its query
// evaluates through the query API. One line per problem; also a problem if no rule is loaded or
// any rule has not been evaluated yet (health "unknown").
std::vector<std::string> CheckRules(const PrometheusClient& client);

}  // namespace chainrl::metrics
