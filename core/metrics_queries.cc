// Dashboard expression extraction, Grafana variable substitution, a Prometheus HTTP API client
// (libcurl) and a child-process Prometheus server for tests.
#include "core/metrics_queries.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "core/endpoints.h"
#include "core/json_file.h"

namespace chainrl::metrics {
namespace {

using nlohmann::json;

std::string Basename(const std::string& path) {
  std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Result<json> ReadDashboardFile(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(
      json j, ReadJsonFile(path, kMaxSmallJsonBytes, kMaxJsonDepth, StatusCode::kCorrupt));
  if (!j.is_object()) return Corrupt(path + ": top level is not a JSON object");
  return j;
}

std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Status CollectPanels(const std::string& file, const json& panels, const std::string& row,
                     std::vector<DashboardQuery>* out) {
  if (!panels.is_array()) return Corrupt(file + ": 'panels' is not an array");
  std::string current_row = row;
  for (const json& p : panels) {
    const std::string type = StringField(p, "type");
    const std::string title = StringField(p, "title");
    if (type == "row") {
      current_row = title;
      if (p.contains("panels"))
        CHAINRL_RETURN_IF_ERROR(CollectPanels(file, p["panels"], title, out));
      continue;
    }
    if (!p.contains("targets")) continue;
    const json& targets = p["targets"];
    if (!targets.is_array()) return Corrupt(file + ": panel '" + title + "': targets not an array");
    for (const json& t : targets) {
      std::string where = Basename(file) + ": row '" + current_row + "' > panel '" + title +
                          "' > target " + StringField(t, "refId");
      const std::string expr = StringField(t, "expr");
      if (expr.empty()) return Corrupt(where + " has no 'expr'");
      out->push_back({where, expr});
    }
  }
  return Status::Ok();
}

std::once_flag curl_once;

size_t AppendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

std::string UrlEscape(CURL* curl, const std::string& s) {
  char* e = curl_easy_escape(curl, s.data(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

// Parses "10s", "1m", "2h", "500ms" into milliseconds; -1 if malformed.
long long DurationMs(const std::string& d) {
  std::size_t i = 0;
  while (i < d.size() && std::isdigit(static_cast<unsigned char>(d[i]))) ++i;
  if (i == 0) return -1;
  long long n = std::stoll(d.substr(0, i));
  std::string unit = d.substr(i);
  if (unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60000;
  if (unit == "h") return n * 3600000;
  if (unit == "d") return n * 86400000;
  return -1;
}

double ParseValue(const json& v) {
  // Prometheus encodes sample values as strings ("1.5", "NaN", "+Inf").
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "NaN") return std::nan("");
    if (s == "+Inf") return INFINITY;
    if (s == "-Inf") return -INFINITY;
    return std::strtod(s.c_str(), nullptr);
  }
  return v.is_number() ? v.get<double>() : std::nan("");
}

std::map<std::string, std::string> LabelMap(const json& j) {
  std::map<std::string, std::string> m;
  if (!j.is_object()) return m;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.value().is_string()) m[it.key()] = it.value().get<std::string>();
  }
  return m;
}

// Parses an API answer {"status":"success","data":...}; the error names what was asked.
Result<json> ApiData(const std::string& body, const std::string& what) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Corrupt(what + ": answer is not JSON");
  if (StringField(j, "status") != "success") {
    return InvalidArgument(what + ": " + StringField(j, "errorType") + ": " +
                           StringField(j, "error"));
  }
  return j.value("data", json());
}

}  // namespace

Result<std::vector<DashboardQuery>> DashboardQueries(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(json j, ReadDashboardFile(path));
  std::vector<DashboardQuery> out;
  if (!j.contains("panels")) return Corrupt(path + ": no 'panels'");
  CHAINRL_RETURN_IF_ERROR(CollectPanels(path, j["panels"], "", &out));
  return out;
}

Result<std::vector<DashboardVariable>> DashboardVariables(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(json j, ReadDashboardFile(path));
  std::vector<DashboardVariable> out;
  const json list = j.value("templating", json::object()).value("list", json::array());
  if (!list.is_array()) return Corrupt(path + ": templating.list is not an array");
  for (const json& v : list) {
    DashboardVariable var{StringField(v, "name"), StringField(v, "type"), ""};
    if (v.contains("query")) {
      const json& q = v["query"];
      // Newer schemas store a query variable's query as {"query": "...", "refId": ...}.
      var.query = q.is_string() ? q.get<std::string>() : StringField(q, "query");
    }
    out.push_back(var);
  }
  return out;
}

Result<std::string> SubstituteVariables(const std::string& expr,
                                        const std::map<std::string, std::string>& values) {
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  std::string out;
  std::size_t i = 0;
  while (i < expr.size()) {
    std::string name;
    std::size_t end = i;
    if (expr[i] == '$' && i + 1 < expr.size() && expr[i + 1] == '{') {
      std::size_t close = expr.find('}', i + 2);
      if (close == std::string::npos) return InvalidArgument("unclosed ${ in: " + expr);
      name = expr.substr(i + 2, close - i - 2);
      name = name.substr(0, name.find(':'));  // ${name:format}
      end = close + 1;
    } else if (expr[i] == '$' && i + 1 < expr.size() && ident(expr[i + 1])) {
      end = i + 1;
      while (end < expr.size() && ident(expr[end])) ++end;
      name = expr.substr(i + 1, end - i - 1);
    } else if (expr.compare(i, 2, "[[") == 0) {
      std::size_t close = expr.find("]]", i + 2);
      // PromQL has no "[[", so this can only be the old Grafana variable syntax.
      if (close == std::string::npos) return InvalidArgument("unclosed [[ in: " + expr);
      name = expr.substr(i + 2, close - i - 2);
      end = close + 2;
    } else {
      out.push_back(expr[i++]);
      continue;
    }
    auto it = values.find(name);
    if (it == values.end()) return InvalidArgument("unknown variable $" + name + " in: " + expr);
    out += it->second;
    i = end;
  }
  return out;
}

std::map<std::string, std::string> GrafanaIntervalVariables(const std::string& rate_interval) {
  long long ms = DurationMs(rate_interval);
  if (ms < 0) ms = 60000;
  const long long range_ms = 3600000;
  return {{"__rate_interval", rate_interval},
          {"__interval", rate_interval},
          {"__interval_ms", std::to_string(ms)},
          {"__range", "1h"},
          {"__range_s", std::to_string(range_ms / 1000)},
          {"__range_ms", std::to_string(range_ms)}};
}

std::string PromRegexEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::strchr("\\^$.|?*+()[]{}", c)) out += "\\\\";  // a backslash inside a PromQL string
    out.push_back(c);
  }
  return out;
}

PrometheusClient::PrometheusClient(std::string base_url, double timeout_seconds)
    : base_url_(std::move(base_url)), timeout_seconds_(timeout_seconds) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

Result<std::string> PrometheusClient::Get(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& params) const {
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) return Internal("curl_easy_init failed");
  std::string url = base_url_ + path;
  for (std::size_t i = 0; i < params.size(); ++i) {
    url += (i == 0 ? "?" : "&") + UrlEscape(curl, params[i].first) + "=" +
           UrlEscape(curl, params[i].second);
  }
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_seconds_ * 1000));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return IoError("GET " + base_url_ + path + ": " + curl_easy_strerror(rc));
  }
  if (status < 200 || status >= 300) {
    // Prometheus' API explains its 4xx answers in the body; keep it for the caller.
    json j = json::parse(body, nullptr, false);
    std::string why = (!j.is_discarded() && j.is_object()) ? StringField(j, "error") : body;
    return InvalidArgument("GET " + base_url_ + path + ": HTTP " + std::to_string(status) + ": " +
                           why.substr(0, 500));
  }
  return body;
}

bool PrometheusClient::Ready() const { return Get("/-/ready").ok(); }

Result<QueryResult> PrometheusClient::Query(const std::string& expr) const {
  CHAINRL_ASSIGN_OR_RETURN(std::string body, Get("/api/v1/query", {{"query", expr}}));
  CHAINRL_ASSIGN_OR_RETURN(json data, ApiData(body, "query " + expr));
  QueryResult r;
  r.result_type = StringField(data, "resultType");
  const json& result = data["result"];
  if (r.result_type == "scalar" || r.result_type == "string") {
    if (result.is_array() && result.size() == 2) r.samples.push_back({{}, ParseValue(result[1])});
    return r;
  }
  for (const json& s : result) {
    QuerySample q;
    q.labels = LabelMap(s.value("metric", json::object()));
    if (s.contains("value") && s["value"].is_array() && s["value"].size() == 2) {
      q.value = ParseValue(s["value"][1]);
    } else if (s.contains("values") && s["values"].is_array() && !s["values"].empty()) {
      q.value = ParseValue(s["values"].back()[1]);  // matrix: the latest sample
    }
    r.samples.push_back(std::move(q));
  }
  return r;
}

Result<std::vector<std::string>> PrometheusClient::LabelValues(const std::string& label,
                                                               const std::string& match) const {
  CHAINRL_ASSIGN_OR_RETURN(std::string body,
                           Get("/api/v1/label/" + label + "/values", {{"match[]", match}}));
  CHAINRL_ASSIGN_OR_RETURN(json data, ApiData(body, "label values of " + label));
  std::vector<std::string> out;
  for (const json& v : data) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::vector<RuleState>> PrometheusClient::Rules() const {
  CHAINRL_ASSIGN_OR_RETURN(std::string body, Get("/api/v1/rules"));
  CHAINRL_ASSIGN_OR_RETURN(json data, ApiData(body, "rules"));
  std::vector<RuleState> out;
  for (const json& g : data.value("groups", json::array())) {
    for (const json& r : g.value("rules", json::array())) {
      out.push_back({StringField(g, "name"), StringField(r, "name"), StringField(r, "type"),
                     StringField(r, "query"), StringField(r, "health"), StringField(r, "lastError"),
                     StringField(r, "state")});
    }
  }
  return out;
}

Result<std::vector<AlertState>> PrometheusClient::Alerts() const {
  CHAINRL_ASSIGN_OR_RETURN(std::string body, Get("/api/v1/alerts"));
  CHAINRL_ASSIGN_OR_RETURN(json data, ApiData(body, "alerts"));
  std::vector<AlertState> out;
  for (const json& a : data.value("alerts", json::array())) {
    auto labels = LabelMap(a.value("labels", json::object()));
    out.push_back({labels["alertname"], StringField(a, "state"), labels});
  }
  return out;
}

Result<std::vector<TargetState>> PrometheusClient::ActiveTargets() const {
  CHAINRL_ASSIGN_OR_RETURN(std::string body, Get("/api/v1/targets", {{"state", "active"}}));
  CHAINRL_ASSIGN_OR_RETURN(json data, ApiData(body, "targets"));
  std::vector<TargetState> out;
  for (const json& t : data.value("activeTargets", json::array())) {
    out.push_back({StringField(t, "scrapeUrl"), StringField(t, "health"),
                   StringField(t, "lastError"), LabelMap(t.value("labels", json::object()))});
  }
  return out;
}

std::vector<QueryCheck> EvaluateQueries(const PrometheusClient& client,
                                        const std::vector<DashboardQuery>& queries,
                                        const std::map<std::string, std::string>& variables) {
  std::vector<QueryCheck> out;
  for (const DashboardQuery& q : queries) {
    QueryCheck c{q, "", "", 0};
    Result<std::string> expanded = SubstituteVariables(q.expr, variables);
    if (!expanded.ok()) {
      c.error = expanded.status().message();
    } else {
      c.expanded = *expanded;
      Result<QueryResult> r = client.Query(c.expanded);
      if (r.ok()) {
        c.series = r->samples.size();
      } else {
        c.error = r.status().message();
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::string> RenderPrometheusConfig(const std::string& template_text,
                                           const PrometheusConfigEdits& edits) {
  if (edits.targets_glob.empty() || edits.rules_path.empty()) {
    return InvalidArgument("prometheus config: targets_glob and rules_path are required");
  }
  std::istringstream in(template_text);
  std::ostringstream out;
  std::string line;
  int scrape = 0, evaluation = 0, files = 0, rules = 0;
  // Which list the following "- item" lines belong to, and its indentation.
  enum class List { kNone, kFiles, kRules } list = List::kNone;
  std::size_t list_indent = 0;
  auto indent_of = [](const std::string& l) { return l.find_first_not_of(' '); };
  auto value_after = [](const std::string& l, const std::string& key) -> std::string {
    return l.substr(0, l.find(key) + key.size()) + " ";
  };
  while (std::getline(in, line)) {
    const std::size_t ind = indent_of(line);
    const std::string trimmed = ind == std::string::npos ? "" : line.substr(ind);
    if (list != List::kNone) {
      // The list continues while lines are "- ..." items (or blank/comments) at deeper or equal
      // indentation than its key.
      bool item = !trimmed.empty() && trimmed[0] == '-' && ind >= list_indent;
      if (item) continue;  // replaced as a whole below
      if (trimmed.empty() || trimmed[0] == '#') {
        out << line << "\n";
        continue;
      }
      list = List::kNone;
    }
    if (trimmed.rfind("scrape_interval:", 0) == 0) {
      out << value_after(line, "scrape_interval:") << edits.scrape_interval << "\n";
      ++scrape;
    } else if (trimmed.rfind("scrape_timeout:", 0) == 0) {
      out << value_after(line, "scrape_timeout:") << edits.scrape_timeout << "\n";
    } else if (trimmed.rfind("evaluation_interval:", 0) == 0) {
      out << value_after(line, "evaluation_interval:") << edits.evaluation_interval << "\n";
      ++evaluation;
    } else if (trimmed.rfind("files:", 0) == 0) {
      out << line.substr(0, ind) << "files: ['" << edits.targets_glob << "']\n";
      list = List::kFiles;
      list_indent = ind;
      ++files;
    } else if (trimmed.rfind("rule_files:", 0) == 0) {
      out << line.substr(0, ind) << "rule_files: ['" << edits.rules_path << "']\n";
      list = List::kRules;
      list_indent = ind;
      ++rules;
    } else {
      out << line << "\n";
    }
  }
  if (scrape == 0 || evaluation == 0 || files != 1 || rules != 1) {
    return InvalidArgument(
        "prometheus config template: expected scrape_interval, evaluation_interval, one "
        "file_sd 'files:' list and one 'rule_files:' list (found " +
        std::to_string(scrape) + ", " + std::to_string(evaluation) + ", " + std::to_string(files) +
        ", " + std::to_string(rules) + ")");
  }
  return out.str();
}

Result<std::unique_ptr<PrometheusServer>> PrometheusServer::Start(const Options& options) {
  if (access(options.binary.c_str(), X_OK) != 0) {
    return NotFound("prometheus binary " + options.binary + " is missing or not executable");
  }
  if (options.config_file.empty() || options.storage_dir.empty()) {
    return InvalidArgument("PrometheusServer: config_file and storage_dir are required");
  }
  Status last = Status::Ok();
  // A port picked free can be taken by someone else before the server binds it; try a few.
  for (int attempt = 0; attempt < 3; ++attempt) {
    CHAINRL_ASSIGN_OR_RETURN(int port, PickFreePort());
    std::unique_ptr<PrometheusServer> s(new PrometheusServer());
    s->url_ = "http://127.0.0.1:" + std::to_string(port);
    s->log_path_ = options.storage_dir + "/prometheus.log";
    std::vector<std::string> args = {
        options.binary,
        "--config.file=" + options.config_file,
        "--storage.tsdb.path=" + options.storage_dir + "/data",
        "--web.listen-address=127.0.0.1:" + std::to_string(port),
        "--log.level=warn",
        "--storage.tsdb.retention.time=1h",
    };
    // Everything the child needs is prepared before fork(): in a process with other threads the
    // child may only make async-signal-safe calls until it execs.
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const char* log_path = s->log_path_.c_str();
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // Child: never outlive the test that started it.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(127);
      int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    s->pid_ = pid;
    PrometheusClient client(s->url_, 2);
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::milliseconds(static_cast<long long>(options.ready_timeout_seconds * 1000));
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int wstatus = 0;
      if (waitpid(pid, &wstatus, WNOHANG) == pid) {
        exited = true;
        s->pid_ = -1;
        break;
      }
      if (client.Ready()) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::string tail = s->LogTail();
    if (!exited) {
      return IoError("prometheus on " + s->url_ + " not ready after " +
                     std::to_string(options.ready_timeout_seconds) + " s; log:\n" + tail);
    }
    last = IoError("prometheus on " + s->url_ + " exited at start; log:\n" + tail);
    if (tail.find("address already in use") == std::string::npos) return last;
  }
  return last;
}

PrometheusServer::~PrometheusServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

std::string PrometheusServer::LogTail(std::size_t max_bytes) const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

Result<std::unique_ptr<PrometheusServer>> StartPrometheusForRuns(
    const PrometheusForRunsOptions& o) {
  if (o.prometheus_yml.empty() || o.alerts_yml.empty() || o.targets_glob.empty() ||
      o.work_dir.empty()) {
    return InvalidArgument(
        "StartPrometheusForRuns: prometheus_yml, alerts_yml, targets_glob, work_dir are required");
  }
  std::ifstream in(o.prometheus_yml);
  if (!in) return NotFound("cannot open " + o.prometheus_yml);
  std::stringstream ss;
  ss << in.rdbuf();
  PrometheusConfigEdits edits;
  edits.scrape_interval = o.scrape_interval;
  edits.scrape_timeout = o.scrape_interval;
  edits.evaluation_interval = o.scrape_interval;
  edits.targets_glob = o.targets_glob;
  edits.rules_path = o.alerts_yml;
  Result<std::string> config = RenderPrometheusConfig(ss.str(), edits);
  if (!config.ok()) return config.status().WithPrefix(o.prometheus_yml);
  if (mkdir(o.work_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return IoError("cannot create " + o.work_dir + ": " + std::strerror(errno));
  }
  const std::string config_path = o.work_dir + "/prometheus.yml";
  {
    std::ofstream out(config_path);
    out << *config;
    if (!out) return IoError("cannot write " + config_path);
  }
  PrometheusServer::Options so;
  so.binary = o.binary;
  so.config_file = config_path;
  so.storage_dir = o.work_dir;
  return PrometheusServer::Start(so);
}

std::vector<std::string> CheckDashboards(const PrometheusClient& client,
                                         const std::vector<std::string>& dashboard_paths,
                                         const std::string& run_id,
                                         const std::string& rate_interval,
                                         std::vector<QueryCheck>* checks) {
  std::vector<std::string> problems;
  std::map<std::string, std::string> vars = GrafanaIntervalVariables(rate_interval);
  vars["run_id"] = PromRegexEscape(run_id);
  for (const std::string& path : dashboard_paths) {
    Result<std::vector<DashboardVariable>> variables = DashboardVariables(path);
    if (!variables.ok()) {
      problems.push_back(variables.status().message());
      continue;
    }
    for (const DashboardVariable& v : *variables) {
      if (v.type == "datasource") {
        vars[v.name] = "prometheus";  // only ever used as a datasource uid, never in PromQL
        continue;
      }
      if (v.type != "query") continue;
      // label_values(metric, label) -> the label's values on the metric's series.
      const std::string prefix = "label_values(";
      if (v.query.rfind(prefix, 0) != 0 || v.query.back() != ')' ||
          v.query.find(',') == std::string::npos) {
        problems.push_back(Basename(path) + ": variable $" + v.name + ": unsupported query '" +
                           v.query + "'");
        continue;
      }
      std::string inner = v.query.substr(prefix.size(), v.query.size() - prefix.size() - 1);
      std::size_t comma = inner.rfind(',');
      auto trim = [](std::string t) {
        t.erase(0, t.find_first_not_of(' '));
        t.erase(t.find_last_not_of(' ') + 1);
        return t;
      };
      const std::string metric = trim(inner.substr(0, comma));
      const std::string label = trim(inner.substr(comma + 1));
      Result<std::vector<std::string>> values = client.LabelValues(label, metric);
      if (!values.ok()) {
        problems.push_back(Basename(path) + ": variable $" + v.name + ": " +
                           values.status().message());
      } else if (label == "run_id" &&
                 std::find(values->begin(), values->end(), run_id) == values->end()) {
        problems.push_back(Basename(path) + ": variable $" + v.name + " (" + v.query +
                           ") does not list run " + run_id);
      }
    }
    Result<std::vector<DashboardQuery>> queries = DashboardQueries(path);
    if (!queries.ok()) {
      problems.push_back(queries.status().message());
      continue;
    }
    for (QueryCheck& c : EvaluateQueries(client, *queries, vars)) {
      if (!c.error.empty()) {
        problems.push_back(c.query.where + ": " + c.error);
      } else if (c.series == 0) {
        problems.push_back(c.query.where + ": no data for " + c.expanded);
      }
      if (checks) checks->push_back(std::move(c));
    }
  }
  return problems;
}

std::vector<std::string> CheckRules(const PrometheusClient& client) {
  std::vector<std::string> problems;
  Result<std::vector<RuleState>> rules = client.Rules();
  if (!rules.ok()) return {rules.status().message()};
  if (rules->empty()) return {"no rules loaded at " + client.base_url()};
  for (const RuleState& r : *rules) {
    const std::string name = r.group + "/" + r.name;
    if (r.health != "ok") {
      problems.push_back(name + ": health '" + r.health + "'" +
                         (r.last_error.empty() ? "" : ": " + r.last_error));
    }
    Result<QueryResult> q = client.Query(r.query);
    if (!q.ok()) problems.push_back(name + ": " + q.status().message());
  }
  return problems;
}

}  // namespace chainrl::metrics
