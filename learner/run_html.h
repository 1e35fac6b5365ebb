// RUN_DIR/report.html: one self-contained page of how a run went (curves against the RL step, the
// summary, sample generations), written by `chainrl report` and at the end of `chainrl train`.
// The charts are inline SVG drawn here, so the page needs no script, font, image or network. It
// reads the "step", "eval" and "eval_samples" events of RUN_DIR/events.jsonl and summary.json
// (progress.json while the run has no summary). No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace chainrl::learner {

// What the report reads of a run directory.
struct RunRecords {
  std::string run_dir;
  nlohmann::json summary;   // summary.json's object, or null when it is not written yet
  nlohmann::json progress;  // progress.json's object when there is no summary, else null
  // The "step" events (RL or preference updates), one per step number, by step: the last one
  // written of each (a learner resumed from a checkpoint trains the steps after it again).
  std::vector<nlohmann::json> steps;
  // The held-out evaluations: summary.json's "evals" when it has them, else the "eval" events
  // (the last of each label and step), in the order written.
  std::vector<nlohmann::json> evals;
  // The "eval_samples" events (learner/eval_samples.h), the last of each label and step.
  std::vector<nlohmann::json> samples;
  // Step and evaluation lines of events.jsonl that did not parse (a process killed while writing
  // one): skipped, counted, and named on the page by the first one's line number (1-based).
  int64_t event_lines_skipped = 0;
  int64_t first_skipped_line = 0;
};

// Reads RUN_DIR with the bounded readers of core/json_file.h. Errors name the file:
//   NotFound         RUN_DIR is not a directory, or it has no events.jsonl;
//   InvalidArgument  events.jsonl is larger than kMaxLargeJsonBytes or its first line is not a
//                    JSON object; summary.json or progress.json does not parse, is not a JSON
//                    object, or has a key of the wrong type.
Result<RunRecords> ReadRunRecords(const std::string& run_dir);

// The page. Every text taken from the run (names, keys, prompts, responses) is HTML-escaped.
//
// Charts: each is an SVG kChartWidth x kChartHeight whose plot area spans x in [kPlotLeft,
// kPlotRight] and y in [kPlotTop, kPlotBottom] (pixels, y downwards). The x axis spans RL steps
// [0, S], S the highest step of any step event or evaluation (at least 1). A chart's y axis spans
// [min(0, lo), max(0, hi)] over the values of its series ([0, 1] without any), widened to
// multiples of its tick step: 1, 2, 2.5 or 5 times a power of ten, the smallest that makes at most
// 4 intervals (values 0..0.6 give [0, 0.6] in steps of 0.2; 0..5 give [0, 6] in steps of 2). A
// series is one <polyline data-series="KEY" points="x,y x,y ..."> (coordinates with one decimal)
// with one point per step whose event has a finite number for KEY; a series without any is not
// drawn and its legend says "not recorded". The series, by chart:
//   reward: reward                 held-out accuracy: eval_accuracy (the evaluations' accuracy)
//   length: mean_length, budget    KL: approx_kl    entropy: entropy_mean    loss: loss
//   tokens/s: rollout_tokens_per_s (generation), train_tokens_per_s (tokens / train_seconds, on
//             steps with both and train_seconds > 0)
//   staleness: token_staleness_mean, token_staleness_max, max_staleness
std::string RunReportHtml(const RunRecords& run);

inline constexpr double kChartWidth = 720, kChartHeight = 240;
inline constexpr double kPlotLeft = 64, kPlotRight = 700, kPlotTop = 16, kPlotBottom = 208;

// RUN_DIR/report.html.
std::string ReportPath(const std::string& run_dir);

// ReadRunRecords(run_dir), then the page written atomically to `out_path`. ReadRunRecords's
// errors; IoError naming `out_path` when it cannot be written.
Status WriteRunReport(const std::string& run_dir, const std::string& out_path);

}  // namespace chainrl::learner
