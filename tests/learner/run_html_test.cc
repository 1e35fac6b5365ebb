// Tests for learner/run_html.h and learner/eval_samples.h on synthetic run directories: every
// curve's polyline has one point per step that has its figure, at the pixels the documented chart
// geometry gives; the last event of a step wins; text from the run is escaped; every summary key is
// in the table; a run without RL steps still gets a page; missing and malformed files are errors
// naming the file; eval samples are cut at character boundaries and round-trip.
#include "learner/run_html.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "learner/eval_samples.h"
#include "learner/run_report.h"

namespace chainrl::learner {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const auto dir =
      fs::temp_directory_path() / ("chainrl-run-html-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// An event line as core/log.h writes it (compact, keys sorted).
std::string EventLine(const std::string& name, json fields) {
  fields["event"] = name;
  fields["ts"] = "2026-01-01T00:00:00.000Z";
  fields["role"] = "learner";
  return fields.dump() + "\n";
}

std::string LogLine(const std::string& msg) {
  return json({{"ts", "2026-01-01T00:00:00.000Z"},
               {"level", "INFO"},
               {"role", "launcher"},
               {"msg", msg}})
             .dump() +
         "\n";
}

// Step s (1..6): reward 0.1 s, mean_length 100 - 5 s, budget 160, approx_kl s / 1000, loss,
// group staleness and generation speed on every step; token staleness on steps 2 and 5 only;
// training speed (tokens / train_seconds) on every step but 4 (train_seconds 0); no entropy.
json Step(int s) {
  json h = {{"phase", "rl"},
            {"step", s},
            {"reward", 0.1 * s},
            {"mean_length", 100.0 - 5 * s},
            {"budget", 160},
            {"approx_kl", s / 1000.0},
            {"loss", -0.01 * s},
            {"max_staleness", s % 2},
            {"rollout_tokens_per_s", 5000.0 + s},
            {"tokens", 1000},
            {"train_seconds", s == 4 ? 0.0 : 0.5}};
  if (s == 2 || s == 5) {
    h["token_staleness_mean"] = 0.25 * s;
    h["token_staleness_max"] = s;
  }
  return h;
}

json Eval(const std::string& label, int step, double accuracy) {
  return {{"label", label},       {"step", step},        {"examples", 8},
          {"accuracy", accuracy}, {"mean_length", 90.0}, {"mean_reward", accuracy}};
}

EvalSample Sample(const std::string& id, const std::string& response, bool correct) {
  data::Example e;
  e.id = id;
  e.prompt = "What is 2 + 2? Say \"4\" & stop.";
  e.answer = "4";
  return EvalSample::Of(e, response, correct, correct ? 1.0 : 0.0, 7, "stop");
}

// A finished run: 6 RL steps (step 3 written twice: the first, from before a restart, is
// replaced), a line cut by a killed process, three evaluations and their samples.
std::string WriteFinishedRun(const std::string& name) {
  const std::string dir = TempDir(name);
  std::string events = LogLine("run directory: " + dir);
  json stale = Step(3);
  stale["reward"] = 9.9;
  events += EventLine("step", stale);
  for (int s = 1; s <= 6; ++s) {
    events += EventLine("step", Step(s));
    if (s == 1) events += "{\"event\":\"step\",\"step\":7,\"rew\n";  // line 5: cut
    if (s == 3) events += EventLine("eval", Eval("periodic", 3, 0.2));
  }
  events = EventLine("eval", Eval("after_sft", 0, 0.1)) + events;
  events += EventLine("eval", Eval("after_rl", 6, 0.3));
  events +=
      EventLine(kEvalSamplesEvent, EvalSamplesRecord("after_sft", 0, {Sample("q0", "5", false)}));
  events += EventLine(kEvalSamplesEvent,
                      EvalSamplesRecord("after_rl", 6,
                                        {Sample("q0", "<script>alert('x')</script> & 4", true),
                                         Sample("q1", "3", false)}));
  events += LogLine("the end");
  WriteText(dir + "/events.jsonl", events);

  RunSummary s;
  s.run = "demo <b>run</b>";
  s.completed = true;
  s.steps = 6;
  s.total_steps = 6;
  s.accuracy_after_sft = 0.1;
  s.accuracy_after_rl = 0.3;
  s.evals =
      json::array({Eval("after_sft", 0, 0.1), Eval("periodic", 3, 0.2), Eval("after_rl", 6, 0.3)});
  s.final_step = Step(6);
  s.SetBestAccuracy();
  s.actor_restarts = 0;
  s.actors = {{"actor-0", {{"restarts", 0}, {"deaths", 0}}}};
  s.other["a_key_from_a_newer_learner"] = "<kept>";
  EXPECT_TRUE(WriteSummary(dir, s).ok());
  return dir;
}

// data-series -> the points of its polyline.
std::map<std::string, std::vector<std::pair<double, double>>> Polylines(const std::string& html) {
  std::map<std::string, std::vector<std::pair<double, double>>> out;
  for (size_t at = html.find("<polyline"); at != std::string::npos;
       at = html.find("<polyline", at + 1)) {
    const size_t end = html.find("/>", at);
    const std::string tag = html.substr(at, end - at);
    const size_t k = tag.find("data-series=\"") + 13;
    const std::string key = tag.substr(k, tag.find('"', k) - k);
    const size_t p = tag.find("points=\"") + 8;
    std::stringstream points(tag.substr(p, tag.find('"', p) - p));
    EXPECT_EQ(out.count(key), 0u) << "two polylines of " << key;
    auto& list = out[key];
    for (std::string xy; points >> xy;) {
      const size_t comma = xy.find(',');
      list.emplace_back(std::stod(xy.substr(0, comma)), std::stod(xy.substr(comma + 1)));
    }
  }
  return out;
}

std::string PointsText(const std::vector<std::pair<double, double>>& points) {
  std::string out;
  char buf[64];
  for (const auto& [x, y] : points) {
    std::snprintf(buf, sizeof(buf), "%s%.1f,%.1f", out.empty() ? "" : " ", x, y);
    out += buf;
  }
  return out;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(RunHtmlTest, EveryCurveHasOnePointPerStepWithItsFigure) {
  const std::string dir = WriteFinishedRun("curves");
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->steps.size(), 6u);
  EXPECT_EQ(r->steps[2]["reward"].get<double>(), 0.1 * 3) << "the last event of step 3 wins";
  EXPECT_EQ(r->event_lines_skipped, 1);
  EXPECT_EQ(r->first_skipped_line, 5);
  ASSERT_EQ(r->evals.size(), 3u);
  ASSERT_EQ(r->samples.size(), 2u);

  const std::string html = RunReportHtml(*r);
  const auto lines = Polylines(html);
  const std::map<std::string, size_t> expected = {{"reward", 6},
                                                  {"eval_accuracy", 3},
                                                  {"mean_length", 6},
                                                  {"budget", 6},
                                                  {"approx_kl", 6},
                                                  {"rollout_tokens_per_s", 6},
                                                  {"loss", 6},
                                                  {"train_tokens_per_s", 5},
                                                  {"token_staleness_mean", 2},
                                                  {"token_staleness_max", 2},
                                                  {"max_staleness", 6}};
  for (const auto& [key, n] : expected) {
    ASSERT_EQ(lines.count(key), 1u) << key;
    EXPECT_EQ(lines.at(key).size(), n) << key;
  }
  EXPECT_EQ(lines.size(), expected.size()) << "entropy_mean is not recorded: no polyline";
  EXPECT_EQ(lines.count("entropy_mean"), 0u);
  EXPECT_NE(html.find("mean entropy <code>entropy_mean</code> <em>not recorded</em>"),
            std::string::npos);

  // x: steps [0, 6] onto [64, 700]; y: [0, 0.6] onto [208, 16] for the reward.
  EXPECT_EQ(PointsText(lines.at("reward")),
            "170.0,176.0 276.0,144.0 382.0,112.0 488.0,80.0 594.0,48.0 700.0,16.0");
  // Evaluations at steps 0, 3, 6 with accuracy 0.1, 0.2, 0.3: y over [0, 0.3].
  EXPECT_EQ(PointsText(lines.at("eval_accuracy")), "64.0,144.0 382.0,80.0 700.0,16.0");
  // Token staleness on steps 2 and 5 only, on one axis with the group staleness: values 0..5 give
  // [0, 6] in steps of 2.
  EXPECT_EQ(PointsText(lines.at("token_staleness_max")), "276.0,144.0 594.0,48.0");
  EXPECT_EQ(PointsText(lines.at("token_staleness_mean")), "276.0,192.0 594.0,168.0");
  // Training speed skips step 4 (train_seconds 0): 2000 tokens/s at the others.
  const auto& train = lines.at("train_tokens_per_s");
  EXPECT_EQ(train[2].first, 382.0);
  EXPECT_EQ(train[3].first, 594.0);
  // Length and budget share an axis: values 0..160 give [0, 200] in steps of 50.
  for (const auto& [x, y] : lines.at("budget")) EXPECT_EQ(y, 54.4);
  EXPECT_EQ(lines.at("mean_length").front().second, 116.8);  // 95 tokens: 208 - 95 / 200 * 192
  EXPECT_NE(html.find("(the first: line 5;"), std::string::npos) << "the cut line is named";

  // The reward's y ticks: [0, 0.6] in steps of 0.2, at y 208, 144, 80, 16.
  const size_t reward = html.find("<figure class=\"chart\" id=\"chart-reward\">");
  ASSERT_NE(reward, std::string::npos);
  const std::string chart = html.substr(reward, html.find("</figure>", reward) - reward);
  std::vector<std::string> ticks;
  for (size_t at = chart.find("class=\"ytick\""); at != std::string::npos;
       at = chart.find("class=\"ytick\"", at + 1)) {
    const size_t y = chart.rfind(" y=\"", at) + 4;
    const size_t text = chart.find('>', at) + 1;
    ticks.push_back(chart.substr(y, chart.find('"', y) - y) + ":" +
                    chart.substr(text, chart.find('<', text) - text));
  }
  EXPECT_EQ(ticks, (std::vector<std::string>{"208.0:0", "144.0:0.2", "80.0:0.4", "16.0:0.6"}));
  // Figures from 1000 up are whole: the generation speed's legend.
  EXPECT_NE(html.find("generation (actors) <code>rollout_tokens_per_s</code> (6 points; last "
                      "5006)"),
            std::string::npos);
}

TEST(RunHtmlTest, TextFromTheRunIsEscaped) {
  const std::string dir = WriteFinishedRun("escape");
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string html = RunReportHtml(*r);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; 4"),
            std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "the page has no script at all";
  EXPECT_EQ(html.find("<b>run</b>"), std::string::npos);
  EXPECT_NE(html.find("<title>chainrl report: demo &lt;b&gt;run&lt;/b&gt;</title>"),
            std::string::npos);
  EXPECT_NE(html.find("What is 2 + 2? Say &quot;4&quot; &amp; stop."), std::string::npos);
  EXPECT_NE(html.find("<td>&lt;kept&gt;</td>"), std::string::npos);
}

TEST(RunHtmlTest, SummaryTableHasEveryKeyAndSamplesTheirVerdicts) {
  const std::string dir = WriteFinishedRun("summary");
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string html = RunReportHtml(*r);
  ASSERT_TRUE(r->summary.is_object());
  EXPECT_GT(r->summary.size(), 45u);
  for (const auto& [key, value] : r->summary.items())
    EXPECT_NE(html.find("<tr><th>" + key + "</th><td>"), std::string::npos) << key;
  EXPECT_NE(html.find("<tr><th>accuracy_after_rl</th><td>30.0% (0.3)</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>steps</th><td>6</td></tr>"), std::string::npos);
  // The evaluations as a nested table: one row per evaluation under a header row.
  const std::string evals_row = "<tr><th>evals</th><td><table class=\"inner\">";
  size_t evals = html.find(evals_row);
  ASSERT_NE(evals, std::string::npos);
  evals += evals_row.size();
  EXPECT_EQ(Count(html.substr(evals, html.find("</table>", evals) - evals), "<tr>"), 3u + 1u);
  // Samples: one section per evaluation, the latest open; verdicts and counts.
  EXPECT_EQ(Count(html, "<details"), 2u);
  EXPECT_NE(html.find("<details><summary>after_sft, step 0: 0 of 1 correct</summary>"),
            std::string::npos);
  EXPECT_NE(html.find("<details open><summary>after_rl, step 6: 1 of 2 correct</summary>"),
            std::string::npos);
  EXPECT_EQ(Count(html, "<div class=\"sample correct\">"), 1u);
  EXPECT_EQ(Count(html, "<div class=\"sample incorrect\">"), 2u);
}

TEST(RunHtmlTest, EvaluationsComeFromEventsWithoutASummary) {
  const std::string dir = TempDir("nosummary");
  WriteText(dir + "/events.jsonl",
            LogLine("start") + EventLine("eval", Eval("after_sft", 0, 0.1)) +
                EventLine("step", Step(1)) + EventLine("eval", Eval("periodic", 1, 0.5)) +
                EventLine("eval", Eval("periodic", 1, 0.2)) + EventLine("step", Step(2)));
  WriteText(dir + "/progress.json",
            json({{"phase", "rl"}, {"step", 2}, {"total_steps", 10}}).dump());
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->summary.is_null());
  ASSERT_TRUE(r->progress.is_object());
  ASSERT_EQ(r->evals.size(), 2u) << "the last evaluation of a label and step wins";
  EXPECT_EQ(r->evals[1]["accuracy"], 0.2);
  const std::string html = RunReportHtml(*r);
  const auto lines = Polylines(html);
  // x over [0, 2]; accuracy axis [0, 0.2].
  EXPECT_EQ(PointsText(lines.at("eval_accuracy")), "64.0,112.0 382.0,16.0");
  EXPECT_EQ(lines.at("reward").size(), 2u);
  EXPECT_NE(html.find("No summary.json yet"), std::string::npos);
  EXPECT_NE(html.find("progress.json says: phase <code>rl</code>, step 2 of 10"),
            std::string::npos);
  EXPECT_NE(html.find("This run recorded no sample generations"), std::string::npos);
}

TEST(RunHtmlTest, ARunWithoutRlStepsStillGetsAPage) {
  const std::string dir = TempDir("nosteps");
  WriteText(dir + "/events.jsonl",
            LogLine("SFT warm-up: 10 steps") + EventLine("eval", Eval("after_sft", 0, 0.25)));
  WriteText(dir + "/progress.json",
            json({{"phase", "sft"}, {"sft_step", 3}, {"sft_steps", 10}}).dump());
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string html = RunReportHtml(*r);
  EXPECT_NE(html.find("No RL steps yet"), std::string::npos);
  const auto lines = Polylines(html);
  ASSERT_EQ(lines.size(), 1u) << "only the evaluation after SFT";
  // One point: x at step 0 of [0, 1], y at 0.25 of [0, 0.3]; drawn as a dot too.
  EXPECT_EQ(PointsText(lines.at("eval_accuracy")), "64.0,48.0");
  EXPECT_NE(html.find("<circle cx=\"64.0\" cy=\"48.0\""), std::string::npos);
  EXPECT_EQ(html.find("id=\"chart-reward\""), std::string::npos);
  EXPECT_NE(html.find("SFT step 3 of 10"), std::string::npos);

  // Nothing at all yet but the event log: a page all the same.
  const std::string empty = TempDir("empty");
  WriteText(empty + "/events.jsonl", "");
  auto e = ReadRunRecords(empty);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const std::string page = RunReportHtml(*e);
  EXPECT_NE(page.find("No RL steps yet"), std::string::npos);
  EXPECT_TRUE(Polylines(page).empty());
}

// Figures at the ends of double still give a page with every point on the plot.
TEST(RunHtmlTest, ExtremeFiguresStayOnThePlot) {
  const std::string dir = TempDir("extreme");
  std::string events = LogLine("start");
  const std::vector<std::vector<double>> figures = {
      {0.0, 5e-324, 1e-320}, {-1e308, 1e308, 0.0}, {1e300, 1e300, 1e300}};
  for (int s = 1; s <= 3; ++s)
    events += EventLine("step", {{"phase", "rl"},
                                 {"step", s},
                                 {"reward", figures[0][s - 1]},
                                 {"approx_kl", figures[1][s - 1]},
                                 {"loss", figures[2][s - 1]}});
  WriteText(dir + "/events.jsonl", events);
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto lines = Polylines(RunReportHtml(*r));
  for (const char* key : {"reward", "approx_kl", "loss"}) {
    ASSERT_EQ(lines.count(key), 1u) << key;
    ASSERT_EQ(lines.at(key).size(), 3u) << key;
    for (const auto& [x, y] : lines.at(key)) {
      EXPECT_TRUE(x >= kPlotLeft && x <= kPlotRight) << key << " x " << x;
      EXPECT_TRUE(y >= kPlotTop && y <= kPlotBottom) << key << " y " << y;
    }
  }
  EXPECT_EQ(PointsText(lines.at("approx_kl")), "276.0,208.0 488.0,16.0 700.0,112.0");
  EXPECT_EQ(PointsText(lines.at("loss")), "276.0,16.0 488.0,16.0 700.0,16.0");
}

TEST(RunHtmlTest, MissingAndMalformedFilesAreErrorsNamingTheFile) {
  const std::string root = TempDir("errors");
  auto missing = ReadRunRecords(root + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), root + "/nope: no such run directory");

  auto no_events = ReadRunRecords(root);
  ASSERT_FALSE(no_events.ok());
  EXPECT_EQ(no_events.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(no_events.status().message().rfind(root + "/events.jsonl: no such file", 0), 0u)
      << no_events.status().message();

  WriteText(root + "/events.jsonl", "PK\x03\x04 not an event log\n");
  auto not_log = ReadRunRecords(root);
  ASSERT_FALSE(not_log.ok());
  EXPECT_EQ(not_log.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(not_log.status().message().rfind(
                root + "/events.jsonl:1: not a chainrl event log (one JSON object per line)", 0),
            0u)
      << not_log.status().message();

  WriteText(root + "/events.jsonl", LogLine("start") + EventLine("step", Step(1)));
  const std::vector<std::pair<std::string, std::string>> bad_summaries = {
      {"{\"steps\": 3,", root + "/summary.json: not valid JSON"},
      {"[1, 2]", root + "/summary.json: not a JSON object"},
      {"{\"steps\": \"many\"}", root + "/summary.json: summary: steps: expected a number"},
  };
  for (const auto& [text, message] : bad_summaries) {
    WriteText(root + "/summary.json", text);
    auto r = ReadRunRecords(root);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_EQ(r.status().message().rfind(message, 0), 0u) << r.status().message();
  }
  fs::remove(root + "/summary.json");
  WriteText(root + "/progress.json", "{\"phase\": 3}");
  auto bad_progress = ReadRunRecords(root);
  ASSERT_FALSE(bad_progress.ok());
  EXPECT_EQ(bad_progress.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_progress.status().message().rfind(root + "/progress.json: ", 0), 0u)
      << bad_progress.status().message();

  // WriteRunReport: the same errors, and nothing written.
  Status st = WriteRunReport(root + "/nope", root + "/out.html");
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(root + "/out.html"));
  fs::remove(root + "/progress.json");
  st = WriteRunReport(root, root + "/no-such-dir/out.html");
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find(root + "/no-such-dir/out.html"), std::string::npos) << st.message();
}

TEST(RunHtmlTest, WritesTheReportWhereAsked) {
  const std::string dir = WriteFinishedRun("write");
  ASSERT_EQ(ReportPath(dir), dir + "/report.html");
  ASSERT_TRUE(WriteRunReport(dir, ReportPath(dir)).ok());
  ASSERT_TRUE(WriteRunReport(dir, dir + "/elsewhere.html").ok());
  std::ifstream a(dir + "/report.html"), b(dir + "/elsewhere.html");
  std::stringstream sa, sb;
  sa << a.rdbuf();
  sb << b.rdbuf();
  EXPECT_EQ(sa.str().rfind("<!DOCTYPE html>\n<html lang=\"en\">", 0), 0u);
  EXPECT_EQ(sa.str(), sb.str());
  auto r = ReadRunRecords(dir);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(sa.str(), RunReportHtml(*r));
}

TEST(EvalSamplesTest, TextsAreCutAtCharacterBoundaries) {
  const std::string text = "h\xc3\xa9llo";  // "héllo": 6 bytes, é is two
  EXPECT_EQ(CutText(text, 6), text);
  EXPECT_EQ(CutText(text, 5), "h\xc3\xa9ll\n[... 1 more bytes]");
  EXPECT_EQ(CutText(text, 2), "h\n[... 5 more bytes]") << "not inside the two bytes of é";
  EXPECT_EQ(CutText(text, 3), "h\xc3\xa9\n[... 3 more bytes]");
  EXPECT_EQ(CutText(std::string(5000, 'a')).size(),
            kMaxEvalSampleTextBytes + std::string("\n[... 1000 more bytes]").size());
}

TEST(EvalSamplesTest, SamplesRoundTripAndWrongTypesAreNamed) {
  data::Example e;
  e.id = "q7";
  e.messages = json::array(
      {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "2+2?"}}});
  e.answer = 4;
  const EvalSample s = EvalSample::Of(e, "4", true, 1.0, 3, "stop");
  EXPECT_EQ(s.prompt, "system: Be brief.\nuser: 2+2?");
  EXPECT_EQ(s.reference, "4");
  const json j = s.ToJson();
  EXPECT_EQ(j, json({{"id", "q7"},
                     {"prompt", "system: Be brief.\nuser: 2+2?"},
                     {"response", "4"},
                     {"reference", "4"},
                     {"correct", true},
                     {"reward", 1.0},
                     {"tokens", 3},
                     {"finish", "stop"}}));
  auto back = EvalSample::FromJson(j);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ToJson(), j);
  json bad = j;
  bad["correct"] = "yes";
  EXPECT_EQ(EvalSample::FromJson(bad).status().message(),
            "eval sample: correct: expected a boolean, got string");
  bad = j;
  bad["response"] = 5;
  EXPECT_EQ(EvalSample::FromJson(bad).status().message(),
            "eval sample: response: expected a string, got number");
  EXPECT_EQ(EvalSamplesRecord("after_rl", 9, {s}),
            json({{"label", "after_rl"}, {"step", 9}, {"samples", json::array({j})}}));
}

}  // namespace
}  // namespace chainrl::learner
