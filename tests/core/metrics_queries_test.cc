// Tests of the dashboard-checking pieces that need no server: expression extraction from Grafana
// JSON, Grafana variable substitution, regex escaping and the Prometheus config rewrite.
#include "core/metrics_queries.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace chainrl::metrics {
namespace {

namespace fs = std::filesystem;

fs::path TempFile(const std::string& name, const std::string& text) {
  fs::path dir =
      fs::temp_directory_path() / ("chainrl_metrics_queries_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

TEST(SubstituteVariables, AllGrafanaSyntaxes) {
  std::map<std::string, std::string> v = {{"run_id", "r1"}, {"__rate_interval", "10s"}};
  auto r = SubstituteVariables(
      R"(rate(x{run_id=~"$run_id", a="${run_id}", b="${run_id:regex}", c="[[run_id]]"}[$__rate_interval]))",
      v);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, R"(rate(x{run_id=~"r1", a="r1", b="r1", c="r1"}[10s]))");
  // A '$' that starts no identifier (regex anchor) is left alone.
  r = SubstituteVariables(R"(x{a=~"foo$"})", v);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, R"(x{a=~"foo$"})");
  r = SubstituteVariables("x{a=\"$actor\"}", v);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("$actor"), std::string::npos) << r.status().message();
  EXPECT_FALSE(SubstituteVariables("x{a=\"${run_id\"}", v).ok());
}

TEST(SubstituteVariables, IntervalVariables) {
  auto v = GrafanaIntervalVariables("15s");
  EXPECT_EQ(v.at("__rate_interval"), "15s");
  EXPECT_EQ(v.at("__interval_ms"), "15000");
  EXPECT_EQ(v.at("__range_s"), "3600");
}

TEST(PromRegexEscape, EscapesMetacharactersForAPromqlString) {
  EXPECT_EQ(PromRegexEscape("run-1_a"), "run-1_a");
  // In the PromQL text each metacharacter gets two backslashes (one escapes the other).
  EXPECT_EQ(PromRegexEscape("a.b"), "a\\\\.b");
  EXPECT_EQ(PromRegexEscape("(x)+"), "\\\\(x\\\\)\\\\+");
}

TEST(DashboardQueries, ExtractsTargetsIncludingCollapsedRows) {
  fs::path p = TempFile("d.json", R"J({
    "panels": [
      {"type": "row", "title": "Top", "panels": []},
      {"type": "stat", "title": "S", "targets": [{"refId": "A", "expr": "up"}]},
      {"type": "row", "title": "Hidden", "collapsed": true, "panels": [
        {"type": "timeseries", "title": "T", "targets": [
          {"refId": "A", "expr": "a"}, {"refId": "B", "expr": "b"}]}]},
      {"type": "text", "title": "no targets"}
    ],
    "templating": {"list": [
      {"name": "datasource", "type": "datasource", "query": "prometheus"},
      {"name": "run_id", "type": "query", "query": {"query": "label_values(m, run_id)"}}]}
  })J");
  auto q = DashboardQueries(p.string());
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_EQ(q->size(), 3u);
  EXPECT_EQ((*q)[0].expr, "up");
  EXPECT_EQ((*q)[0].where, "d.json: row 'Top' > panel 'S' > target A");
  EXPECT_EQ((*q)[2].expr, "b");
  EXPECT_EQ((*q)[2].where, "d.json: row 'Hidden' > panel 'T' > target B");
  auto v = DashboardVariables(p.string());
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v)[0].type, "datasource");
  EXPECT_EQ((*v)[0].query, "prometheus");
  EXPECT_EQ((*v)[1].query, "label_values(m, run_id)");
}

TEST(DashboardQueries, ErrorsNameTheFile) {
  fs::path p = TempFile("broken.json", "{\"panels\": [");
  auto q = DashboardQueries(p.string());
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("broken.json"), std::string::npos);
  p = TempFile("noexpr.json",
               R"({"panels": [{"type": "stat", "title": "S", "targets": [{"refId": "A"}]}]})");
  q = DashboardQueries(p.string());
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("panel 'S' > target A has no 'expr'"), std::string::npos)
      << q.status().message();
  EXPECT_EQ(DashboardQueries("/nonexistent/x.json").status().code(), StatusCode::kNotFound);
}

TEST(RenderPrometheusConfig, RewritesTheShippedConfig) {
  std::ifstream in(std::string(CHAINRL_SOURCE_DIR) + "/dashboards/prometheus/prometheus.yml");
  ASSERT_TRUE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  PrometheusConfigEdits e;
  e.targets_glob = "/tmp/t/*.json";
  e.rules_path = "/x/alerts.yml";
  auto r = RenderPrometheusConfig(ss.str(), e);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->find("scrape_interval: 1s\n"), std::string::npos) << *r;
  EXPECT_NE(r->find("evaluation_interval: 1s\n"), std::string::npos);
  EXPECT_NE(r->find("scrape_timeout: 1s\n"), std::string::npos);  // never above the interval
  EXPECT_NE(r->find("files: ['/tmp/t/*.json']\n"), std::string::npos);
  EXPECT_NE(r->find("rule_files: ['/x/alerts.yml']\n"), std::string::npos);
  // The original list items are gone, everything else stays.
  EXPECT_EQ(r->find("runs/prometheus"), std::string::npos) << *r;
  EXPECT_EQ(r->find("- alerts.yml"), std::string::npos) << *r;
  EXPECT_NE(r->find("honor_labels: true"), std::string::npos);
  EXPECT_NE(r->find("job_name: chainrl"), std::string::npos);

  auto bad = RenderPrometheusConfig("global:\n  scrape_interval: 5s\n", e);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rule_files"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::metrics
