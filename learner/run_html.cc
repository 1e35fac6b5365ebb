// The run report page (see run_html.h): the run's files read with bounds, then HTML with inline
// CSS and server-side SVG charts.
#include "learner/run_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "core/file_io.h"
#include "core/json_file.h"
#include "learner/eval_samples.h"
#include "learner/run_report.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- reading ------------------------------------------------------------------------------------

// summary.json or progress.json: null when absent; errors (InvalidArgument) name the file.
Result<json> ReadRecordFile(const std::string& path, bool summary) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return json(nullptr);
  CHAINRL_ASSIGN_OR_RETURN(json j, ReadJsonFile(path, kMaxLargeJsonBytes));
  if (!j.is_object()) return InvalidArgument(path + ": not a JSON object");
  // The typed records name a key of the wrong type.
  const Status typed =
      summary ? RunSummary::FromJson(j).status() : ProgressRecord::FromJson(j).status();
  if (!typed.ok()) return InvalidArgument(path + ": " + typed.message());
  return j;
}

// The key an evaluation or its samples are told apart by: label and step.
std::pair<std::string, int64_t> EvalKey(const json& j) {
  const json label = j.value("label", json(""));
  const json step = j.value("step", json(0));
  return {label.is_string() ? label.get<std::string>() : label.dump(),
          step.is_number_integer() ? step.get<int64_t>() : 0};
}

// Appends `j` to `list`, replacing an earlier entry with its label and step.
void PutLast(std::vector<json>* list, json j) {
  const auto key = EvalKey(j);
  list->erase(
      std::remove_if(list->begin(), list->end(), [&](const json& e) { return EvalKey(e) == key; }),
      list->end());
  list->push_back(std::move(j));
}

// ---- formatting ---------------------------------------------------------------------------------

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

std::string Printf(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

// A figure for people: integers and anything from 1000 up whole (grouped by thousands from
// 10,000), others to 4 significant digits.
std::string Num(double v) {
  if (!std::isfinite(v)) return v != v ? "NaN" : (v > 0 ? "inf" : "-inf");
  if (std::fabs(v) >= 1000 && std::fabs(v) < 1e15) v = std::round(v);
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::string digits = Printf("%.0f", std::fabs(v));
    if (digits.size() > 4)
      for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
    return (v < 0 ? "-" : "") + digits;
  }
  return Printf("%.4g", v);
}

std::string Percent(double v) { return Printf("%.1f%%", 100.0 * v); }

bool IsFraction(const std::string& key) {
  return key.rfind("accuracy", 0) == 0 || key == "accuracy" ||
         (key.size() > 9 && key.compare(key.size() - 9, 9, "_fraction") == 0);
}

// One value of summary.json as HTML: objects and arrays of objects as nested tables.
std::string FormatValue(const json& v, const std::string& key, int depth) {
  if (v.is_null()) return "<span class=\"none\" title=\"null: not known\">&mdash;</span>";
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) {
    const double d = v.get<double>();
    if (v.is_number_float() && IsFraction(key)) return Percent(d) + " (" + Num(d) + ")";
    const bool seconds = key.size() >= 7 && key.compare(key.size() - 7, 7, "seconds") == 0;
    return Num(d) + (seconds ? " s" : "");
  }
  if (v.is_string()) return Escape(v.get<std::string>());
  if (depth >= 3)
    return "<code>" + Escape(v.dump(-1, ' ', false, json::error_handler_t::replace)) + "</code>";
  if (v.is_object()) {
    if (v.empty()) return "{}";
    std::string out = "<table class=\"inner\">";
    for (const auto& [k, x] : v.items())
      out += "<tr><th>" + Escape(k) + "</th><td>" + FormatValue(x, k, depth + 1) + "</td></tr>";
    return out + "</table>";
  }
  // An array.
  if (v.empty()) return "[]";
  const bool objects = std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_object(); });
  if (!objects) {
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ", ") + FormatValue(e, key, depth + 1);
    return out;
  }
  std::vector<std::string> columns;
  for (const auto& e : v)
    for (const auto& [k, x] : e.items())
      if (std::find(columns.begin(), columns.end(), k) == columns.end()) columns.push_back(k);
  std::string out = "<table class=\"inner\"><tr>";
  for (const auto& c : columns) out += "<th>" + Escape(c) + "</th>";
  out += "</tr>";
  for (const auto& e : v) {
    out += "<tr>";
    for (const auto& c : columns)
      out += "<td>" + (e.contains(c) ? FormatValue(e[c], c, depth + 1) : std::string()) + "</td>";
    out += "</tr>";
  }
  return out + "</table>";
}

// ---- charts -------------------------------------------------------------------------------------

struct Series {
  std::string key, label, color;
  std::vector<std::pair<double, double>> points;  // (step, value)
};

struct Chart {
  std::string id, title, y_label;
  std::vector<Series> series;
  bool markers = false;  // a dot on every point (evaluations)
};

std::optional<double> Finite(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

Series StepSeries(const std::vector<json>& steps, const char* key, std::string label,
                  std::string color) {
  Series s{key, std::move(label), std::move(color), {}};
  for (const auto& h : steps)
    if (auto v = Finite(h, key)) s.points.emplace_back(h["step"].get<double>(), *v);
  return s;
}

// Tokens trained per second of training: tokens / train_seconds.
Series TrainTokensPerSecond(const std::vector<json>& steps, std::string color) {
  Series s{"train_tokens_per_s", "training (tokens / train_seconds)", std::move(color), {}};
  for (const auto& h : steps) {
    auto tokens = Finite(h, "tokens");
    auto seconds = Finite(h, "train_seconds");
    if (tokens && seconds && *seconds > 0)
      s.points.emplace_back(h["step"].get<double>(), *tokens / *seconds);
  }
  return s;
}

// Ticks at 0 and every multiple of the smallest of 1, 2, 5, 10, 20, 50, ... that gives at most 8
// intervals up to `max_step`.
std::vector<double> StepTicks(double max_step) {
  double unit = 1;
  for (double decade = 1;; decade *= 10) {
    unit = decade;
    if (max_step / unit <= 8) break;
    unit = 2 * decade;
    if (max_step / unit <= 8) break;
    unit = 5 * decade;
    if (max_step / unit <= 8) break;
  }
  std::vector<double> ticks;
  for (int i = 0; i * unit <= max_step + 1e-9; ++i) ticks.push_back(i * unit);
  return ticks;
}

// A y axis: [lo, hi] widened to multiples of a step of 1, 2, 2.5 or 5 times a power of ten,
// the smallest that divides it into at most 4 intervals.
struct Axis {
  double lo = 0, hi = 1, step = 0.25;
};

Axis NiceAxis(double lo, double hi) {
  const double rough = (hi - lo) / 4;
  const double decade = std::pow(10.0, std::floor(std::log10(rough)));
  double step = 10 * decade;
  for (double m : {1.0, 2.0, 2.5, 5.0})
    if (m * decade >= rough * (1 - 1e-9)) {
      step = m * decade;
      break;
    }
  // The 1e-9 keeps a bound that is a multiple already (0.1 * 3 / 0.1) where it is.
  const Axis nice{std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
  // Ranges near the ends of double (1e-320, 1e308) have no nice step: the range as it is.
  if (!(step > 0) || !std::isfinite(nice.lo) || !std::isfinite(nice.hi) || nice.hi <= nice.lo)
    return {lo, hi, (hi - lo) / 4};
  return nice;
}

std::string ChartSvg(const Chart& c, double max_step) {
  double lo = 0, hi = 0;
  bool any = false;
  for (const auto& s : c.series)
    for (const auto& [x, y] : s.points) {
      lo = std::min(lo, y);
      hi = std::max(hi, y);
      any = true;
    }
  if (hi == lo) hi = lo + 1;
  const Axis axis = NiceAxis(lo, hi);
  lo = axis.lo;
  hi = axis.hi;
  const auto px = [&](double step) {
    return kPlotLeft + step / max_step * (kPlotRight - kPlotLeft);
  };
  const auto py = [&](double v) {
    // Where v lies in [lo, hi], halved first when hi - lo overflows (values near +-1e308).
    double t = std::isfinite(hi - lo) ? (v - lo) / (hi - lo) : (v / 2 - lo / 2) / (hi / 2 - lo / 2);
    if (!(t >= 0)) t = 0;
    return kPlotBottom - std::min(t, 1.0) * (kPlotBottom - kPlotTop);
  };
  const auto f1 = [](double v) { return Printf("%.1f", v); };

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Num(kChartWidth) +
                    "\" height=\"" + Num(kChartHeight) + "\" viewBox=\"0 0 " + Num(kChartWidth) +
                    " " + Num(kChartHeight) + "\" role=\"img\" aria-label=\"" + Escape(c.title) +
                    "\">";
  svg += "<rect x=\"" + f1(kPlotLeft) + "\" y=\"" + f1(kPlotTop) + "\" width=\"" +
         f1(kPlotRight - kPlotLeft) + "\" height=\"" + f1(kPlotBottom - kPlotTop) +
         "\" class=\"plot\"/>";
  // y grid at every multiple of the axis step, labelled.
  for (int i = 0; i <= 8 && lo + i * axis.step <= hi + axis.step * 1e-6; ++i) {
    const double v = lo + i * axis.step;
    const std::string y = f1(py(v));
    svg += "<line x1=\"" + f1(kPlotLeft) + "\" x2=\"" + f1(kPlotRight) + "\" y1=\"" + y +
           "\" y2=\"" + y + "\" class=\"grid\"/>";
    svg += "<text x=\"" + f1(kPlotLeft - 6) + "\" y=\"" + y +
           "\" class=\"ytick\" text-anchor=\"end\" dominant-baseline=\"middle\">" +
           (any ? Escape(Num(std::fabs(v) < axis.step * 1e-6 ? 0.0 : v)) : "") + "</text>";
  }
  for (double t : StepTicks(max_step)) {
    const std::string x = f1(px(t));
    svg += "<line x1=\"" + x + "\" x2=\"" + x + "\" y1=\"" + f1(kPlotBottom) + "\" y2=\"" +
           f1(kPlotBottom + 4) + "\" class=\"axis\"/>";
    svg += "<text x=\"" + x + "\" y=\"" + f1(kPlotBottom + 18) +
           "\" class=\"xtick\" text-anchor=\"middle\">" + Num(t) + "</text>";
  }
  svg += "<text x=\"" + f1(kPlotRight) + "\" y=\"" + f1(kChartHeight - 2) +
         "\" class=\"xlabel\" text-anchor=\"end\">RL step</text>";
  if (!c.y_label.empty())
    svg += "<text x=\"12\" y=\"" + f1((kPlotTop + kPlotBottom) / 2) + "\" class=\"ylabel\" " +
           "text-anchor=\"middle\" transform=\"rotate(-90 12 " + f1((kPlotTop + kPlotBottom) / 2) +
           ")\">" + Escape(c.y_label) + "</text>";
  if (!any)
    svg += "<text x=\"" + f1((kPlotLeft + kPlotRight) / 2) + "\" y=\"" +
           f1((kPlotTop + kPlotBottom) / 2) +
           "\" class=\"empty\" text-anchor=\"middle\">not recorded in this run</text>";
  for (const auto& s : c.series) {
    if (s.points.empty()) continue;
    std::string points;
    for (const auto& [x, y] : s.points)
      points += (points.empty() ? "" : " ") + f1(px(x)) + "," + f1(py(y));
    svg += "<polyline data-series=\"" + Escape(s.key) + "\" fill=\"none\" stroke=\"" + s.color +
           "\" stroke-width=\"1.6\" stroke-linejoin=\"round\" points=\"" + points + "\"/>";
    // Dots where a line alone would not show a point (one point, or evaluations).
    if (c.markers || s.points.size() == 1)
      for (const auto& [x, y] : s.points)
        svg += "<circle cx=\"" + f1(px(x)) + "\" cy=\"" + f1(py(y)) + "\" r=\"3\" fill=\"" +
               s.color + "\"><title>step " + Num(x) + ": " + Escape(Num(y)) + "</title></circle>";
  }
  return svg + "</svg>";
}

std::string ChartHtml(const Chart& c, double max_step) {
  std::string out = "<figure class=\"chart\" id=\"chart-" + c.id + "\"><figcaption>" +
                    Escape(c.title) + "</figcaption>" + ChartSvg(c, max_step) +
                    "<div class=\"legend\">";
  for (const auto& s : c.series) {
    out += "<span class=\"key\"><span class=\"swatch\" style=\"background:" + s.color +
           "\"></span>" + Escape(s.label) + " <code>" + Escape(s.key) + "</code> ";
    if (s.points.empty()) {
      out += "<em>not recorded</em>";
    } else {
      out += "(" + Num(static_cast<double>(s.points.size())) + " point" +
             (s.points.size() == 1 ? "" : "s") + "; last " + Escape(Num(s.points.back().second)) +
             ")";
    }
    out += "</span>";
  }
  return out + "</div></figure>";
}

// ---- sections -----------------------------------------------------------------------------------

const char* kStyle = R"css(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:0 auto;max-width:1600px;padding:16px 24px;background:#fafbfc}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dde5}
.meta{color:#586174;margin:0 0 8px}.note{background:#fff7e0;border:1px solid #f0d890;padding:8px 12px;
border-radius:4px}.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid
#d8dde5;border-radius:6px;padding:8px 12px;min-width:170px}.card b{display:block;font-size:18px}
.card span{color:#586174;font-size:12px}.charts{display:flex;flex-wrap:wrap;gap:14px}
figure.chart{background:#fff;border:1px solid #d8dde5;border-radius:6px;margin:0;padding:8px;
flex:1 1 560px;max-width:760px}figure.chart svg{width:100%;height:auto;display:block}
figcaption{font-weight:600;margin:0 0 4px}.plot{fill:#fff;stroke:#c9d0da}.grid{stroke:#eceff3}
.axis{stroke:#8a93a3}.ytick,.xtick,.xlabel,.ylabel{font-size:11px;fill:#586174}
.empty{font-size:13px;fill:#8a93a3}.legend{font-size:12px;color:#39414f;display:flex;flex-wrap:wrap;
gap:4px 14px;max-width:720px}.swatch{display:inline-block;width:12px;height:3px;margin:0 4px 3px 0;
vertical-align:middle}table{border-collapse:collapse;background:#fff}th,td{border:1px solid #d8dde5;
padding:3px 8px;text-align:left;vertical-align:top}th{background:#f1f3f6;font-weight:600}
table.inner{font-size:12px}table.summary>tbody>tr>th{white-space:nowrap}.none{color:#8a93a3}
details{background:#fff;border:1px solid #d8dde5;border-radius:6px;margin:8px 0;padding:6px 10px}
summary{cursor:pointer;font-weight:600}.sample{border-left:4px solid #8a93a3;margin:10px 0;
padding:2px 10px}.sample.correct{border-color:#2e8b57}.sample.incorrect{border-color:#c0392b}
.verdict{font-weight:600}.correct .verdict{color:#2e8b57}.incorrect .verdict{color:#c0392b}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid #e3e7ed;
padding:6px 8px;margin:2px 0 8px;max-height:360px;overflow:auto;font-size:12.5px}
.label{color:#586174;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
footer{color:#8a93a3;font-size:12px;margin:30px 0 10px})css";

// One headline figure.
std::string Card(const std::string& title, const std::string& value, const std::string& detail) {
  return "<div class=\"card\"><span>" + Escape(title) + "</span><b>" + value + "</b><span>" +
         detail + "</span></div>";
}

std::string OptionalPercent(const json& j, const char* key) {
  auto v = Finite(j, key);
  return v ? Percent(*v) : "&mdash;";
}
std::string OptionalNum(const json& j, const char* key) {
  auto v = Finite(j, key);
  return v ? Num(*v) : "&mdash;";
}

std::string Headline(const RunRecords& r) {
  const json& s = r.summary;
  std::string out = "<div class=\"cards\">";
  if (s.is_object()) {
    out += Card("held-out accuracy",
                OptionalPercent(s, "accuracy_after_sft") + " &rarr; " +
                    OptionalPercent(s, "accuracy_after_rl"),
                "after SFT &rarr; after RL");
    if (Finite(s, "accuracy_best"))
      out += Card("best held-out accuracy", OptionalPercent(s, "accuracy_best"),
                  "at step " + OptionalNum(s, "accuracy_best_step"));
    out += Card("held-out length (tokens)",
                OptionalNum(s, "mean_length_after_sft") + " &rarr; " +
                    OptionalNum(s, "mean_length_after_rl"),
                "after SFT &rarr; after RL");
    out +=
        Card("rollout length (tokens)",
             OptionalNum(s, "mean_length_peak") + " &rarr; " + OptionalNum(s, "mean_length_final"),
             "peak &rarr; final (5-step mean)");
    out += Card("groups trained", OptionalNum(s, "groups_trained"),
                "lost " + OptionalNum(s, "groups_lost") + ", duplicated " +
                    OptionalNum(s, "groups_duplicated"));
    const json wall = s.contains("launcher_wall_seconds") ? s["launcher_wall_seconds"]
                                                          : s.value("wall_seconds", json());
    out +=
        Card("wall time", wall.is_number() ? Num(std::round(wall.get<double>())) + " s" : "&mdash;",
             "tokens trained " + OptionalNum(s, "tokens_trained"));
  }
  if (!r.steps.empty()) {
    const json& last = r.steps.back();
    out += Card(
        "last step", Num(last["step"].get<double>()),
        "reward " + OptionalNum(last, "reward") + ", length " + OptionalNum(last, "mean_length"));
  }
  return out + "</div>";
}

std::string SummaryTable(const RunRecords& r) {
  if (!r.summary.is_object()) {
    std::string out =
        "<p class=\"note\">No summary.json yet: the run is in progress, or stopped before its "
        "learner wrote one.";
    if (r.progress.is_object())
      out += " progress.json says: phase <code>" + Escape(r.progress.value("phase", "?")) +
             "</code>, step " + OptionalNum(r.progress, "step") + " of " +
             OptionalNum(r.progress, "total_steps") + ", SFT step " +
             OptionalNum(r.progress, "sft_step") + " of " + OptionalNum(r.progress, "sft_steps") +
             ".";
    return out + "</p>";
  }
  std::string out = "<table class=\"summary\"><tbody>";
  for (const auto& [k, v] : r.summary.items())
    out += "<tr><th>" + Escape(k) + "</th><td>" + FormatValue(v, k, 0) + "</td></tr>";
  return out + "</tbody></table>";
}

std::string SamplesSection(const RunRecords& r) {
  if (r.samples.empty())
    return "<p class=\"note\">This run recorded no sample generations (its learner writes an "
           "<code>eval_samples</code> event at each held-out evaluation; a run without held-out "
           "data, or written by an older chainrl, has none).</p>";
  std::string out;
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const json& rec = r.samples[i];
    const auto [label, step] = EvalKey(rec);
    std::vector<std::string> items;
    int correct = 0, total = 0;
    if (const auto it = rec.find("samples"); it != rec.end() && it->is_array())
      for (const auto& j : *it) {
        auto s = EvalSample::FromJson(j);
        if (!s.ok()) {
          items.push_back("<p class=\"note\">A sample the report could not read: " +
                          Escape(s.status().message()) + "</p>");
          continue;
        }
        ++total;
        correct += s->correct ? 1 : 0;
        const char* verdict = s->correct ? "correct" : "incorrect";
        items.push_back(
            "<div class=\"sample " + std::string(verdict) + "\"><p><span class=\"verdict\">" +
            verdict + "</span> &middot; example <code>" + Escape(s->id) +
            "</code> &middot; reward " + Escape(Num(s->reward)) + " &middot; " +
            Num(static_cast<double>(s->tokens)) + " tokens &middot; finish <code>" +
            Escape(s->finish) + "</code></p><div class=\"label\">prompt</div><pre>" +
            Escape(s->prompt) + "</pre><div class=\"label\">response</div><pre>" +
            Escape(s->response) + "</pre><div class=\"label\">reference answer</div><pre>" +
            Escape(s->reference) + "</pre></div>");
      }
    out += std::string("<details") + (i + 1 == r.samples.size() ? " open" : "") + "><summary>" +
           Escape(label) + ", step " + Num(static_cast<double>(step)) + ": " + Num(correct) +
           " of " + Num(total) + " correct</summary>";
    for (const auto& item : items) out += item;
    out += "</details>";
  }
  return out;
}

}  // namespace

Result<RunRecords> ReadRunRecords(const std::string& run_dir) {
  RunRecords r;
  r.run_dir = run_dir;
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return NotFound(run_dir + ": no such run directory");
  const std::string events_path = (fs::path(run_dir) / "events.jsonl").string();
  if (!fs::exists(events_path, ec))
    return NotFound(events_path +
                    ": no such file (every run writes its events there from its start: is " +
                    run_dir + " a run directory?)");
  CHAINRL_ASSIGN_OR_RETURN(const std::string text,
                           ReadFileBounded(events_path, kMaxLargeJsonBytes));

  std::map<int64_t, json> steps;
  std::vector<json> eval_events;
  size_t begin = 0;
  for (int64_t line_no = 1; begin < text.size(); ++line_no) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    const bool wanted = line.find("\"event\":\"step\"") != std::string_view::npos ||
                        line.find("\"event\":\"eval") != std::string_view::npos;
    if (line_no == 1 || wanted) {
      auto j = ParseJson(line, events_path + ":" + std::to_string(line_no));
      if (line_no == 1 && (!j.ok() || !j->is_object()))
        return InvalidArgument(events_path +
                               ":1: not a chainrl event log (one JSON object per line)" +
                               (j.ok() ? std::string() : ": " + j.status().message()));
      if (!wanted) continue;
      if (!j.ok() || !j->is_object()) {
        if (r.event_lines_skipped++ == 0) r.first_skipped_line = line_no;
        continue;
      }
      const std::string event = j->value("event", "");
      if (event == "step") {
        auto it = j->find("step");
        if (it != j->end() && it->is_number_integer()) {
          const int64_t step = it->get<int64_t>();
          steps[step] = std::move(*j);
        }
      } else if (event == "eval") {
        PutLast(&eval_events, std::move(*j));
      } else if (event == kEvalSamplesEvent) {
        PutLast(&r.samples, std::move(*j));
      }
    }
  }
  for (auto& [step, h] : steps) r.steps.push_back(std::move(h));

  CHAINRL_ASSIGN_OR_RETURN(r.summary, ReadRecordFile(SummaryPath(run_dir), true));
  if (r.summary.is_null()) {
    CHAINRL_ASSIGN_OR_RETURN(r.progress,
                             ReadRecordFile((fs::path(run_dir) / "progress.json").string(), false));
  }
  if (r.summary.is_object() && r.summary.contains("evals") && r.summary["evals"].is_array()) {
    for (const auto& e : r.summary["evals"])
      if (e.is_object()) r.evals.push_back(e);
  } else {
    r.evals = std::move(eval_events);
  }
  return r;
}

std::string RunReportHtml(const RunRecords& r) {
  const json& s = r.summary;
  std::string name = s.is_object() && s.value("run", json()).is_string()
                         ? s["run"].get<std::string>()
                         : fs::path(r.run_dir).filename().string();
  if (name.empty()) name = r.run_dir;
  std::string status;
  if (s.is_object()) {
    status =
        s.value("completed", json(false)) == json(true) ? "completed" : "stopped before its end";
    status += " &middot; " + OptionalNum(s, "steps") + " of " + OptionalNum(s, "total_steps") +
              " RL steps after " + OptionalNum(s, "sft_steps") + " SFT steps";
  } else {
    status = "in progress (no summary.json yet)";
  }

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>chainrl report: " +
      Escape(name) + "</title><style>" + kStyle + "</style></head><body>\n";
  html += "<header><h1>Run " + Escape(name) + "</h1><p class=\"meta\"><code>" + Escape(r.run_dir) +
          "</code> &middot; " + status + "</p></header>\n";
  html += "<section id=\"headline\">" + Headline(r) + "</section>\n";
  if (r.event_lines_skipped > 0)
    html += "<p class=\"note\">" + Num(static_cast<double>(r.event_lines_skipped)) +
            " step or evaluation line(s) of events.jsonl did not parse and were left out (the "
            "first: line " +
            Num(static_cast<double>(r.first_skipped_line)) +
            "; a process stopped while writing one leaves such a line).</p>\n";

  // Curves. The x axis is shared by every chart, so they line up.
  double max_step = 1;
  for (const auto& h : r.steps) max_step = std::max(max_step, h["step"].get<double>());
  Series eval{"eval_accuracy", "held-out accuracy", "#2e8b57", {}};
  for (const auto& e : r.evals) {
    auto v = Finite(e, "accuracy");
    const json step = e.value("step", json(0));
    if (!v || !step.is_number()) continue;
    eval.points.emplace_back(step.get<double>(), *v);
    max_step = std::max(max_step, step.get<double>());
  }
  std::vector<Chart> charts;
  charts.push_back({"reward",
                    "Reward (mean over the step's samples)",
                    "reward",
                    {StepSeries(r.steps, "reward", "reward", "#1f6fd1")}});
  Chart held_out{
      "eval", "Held-out accuracy (evaluations: after_sft, periodic, after_rl)", "accuracy", {eval}};
  held_out.markers = true;
  charts.push_back(held_out);
  charts.push_back({"length",
                    "Response length against the token budget",
                    "tokens",
                    {StepSeries(r.steps, "mean_length", "mean response length", "#1f6fd1"),
                     StepSeries(r.steps, "budget", "token budget", "#d9822b")}});
  charts.push_back({"kl",
                    "KL to the sampling policy (approximate)",
                    "KL",
                    {StepSeries(r.steps, "approx_kl", "approx. KL", "#8e44ad")}});
  charts.push_back({"entropy",
                    "Entropy (mean per token)",
                    "nats",
                    {StepSeries(r.steps, "entropy_mean", "mean entropy", "#16a085")}});
  charts.push_back({"throughput",
                    "Tokens per second",
                    "tokens/s",
                    {StepSeries(r.steps, "rollout_tokens_per_s", "generation (actors)", "#1f6fd1"),
                     TrainTokensPerSecond(r.steps, "#c0392b")}});
  charts.push_back(
      {"staleness",
       "Staleness (policy versions behind the trained policy)",
       "versions",
       {StepSeries(r.steps, "token_staleness_mean", "token staleness, mean", "#1f6fd1"),
        StepSeries(r.steps, "token_staleness_max", "token staleness, max", "#c0392b"),
        StepSeries(r.steps, "max_staleness", "group staleness, max", "#7f8c8d")}});
  charts.push_back({"loss", "Loss", "loss", {StepSeries(r.steps, "loss", "loss", "#34495e")}});

  html += "<section id=\"curves\"><h2>Curves</h2>";
  if (r.steps.empty())
    html +=
        "<p class=\"note\">No RL steps yet: events.jsonl has no step event (the run is in its "
        "SFT warm-up, or stopped before its first update).</p>";
  html += "<div class=\"charts\">";
  for (const auto& c : charts) {
    // Without steps only the evaluations have anything to show.
    if (r.steps.empty() && c.id != "eval") continue;
    html += ChartHtml(c, max_step);
  }
  html += "</div></section>\n";
  html +=
      "<section id=\"summary\"><h2>Summary (summary.json)</h2>" + SummaryTable(r) + "</section>\n";
  html += "<section id=\"samples\"><h2>Sample generations (held-out evaluations)</h2>" +
          SamplesSection(r) + "</section>\n";
  html += "<footer>Written by <code>chainrl report</code> from " + Escape(r.run_dir) +
          "/events.jsonl and summary.json.</footer>\n</body></html>\n";
  return html;
}

std::string ReportPath(const std::string& run_dir) {
  return (fs::path(run_dir) / "report.html").string();
}

Status WriteRunReport(const std::string& run_dir, const std::string& out_path) {
  CHAINRL_ASSIGN_OR_RETURN(const RunRecords r, ReadRunRecords(run_dir));
  return WriteFileAtomic(out_path, RunReportHtml(r));
}

}  // namespace chainrl::learner
