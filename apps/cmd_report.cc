// `chainrl report RUN_DIR [--out FILE]`: the run's report as one self-contained HTML page
// (learner/run_html.h).
#include <cstdio>

#include "apps/args.h"
#include "learner/run_html.h"

namespace chainrl::app {
namespace {

int RunReportCommand(const std::vector<std::string>& argv) {
  std::string run_dir, out;
  Args a("chainrl report", "RUN_DIR [--out FILE]",
         "Write a run's report: one self-contained HTML page (no network, scripts, fonts or\n"
         "images) with its curves against the RL step (reward, held-out accuracy, response length\n"
         "against the token budget, KL, entropy, tokens/s, staleness, loss), every key of its\n"
         "summary.json and the sample generations of its held-out evaluations. It reads\n"
         "RUN_DIR/events.jsonl and RUN_DIR/summary.json (progress.json while the run goes on).\n"
         "`chainrl train` writes it at the end of a run.");
  a.Positional("RUN_DIR", &run_dir, "the run directory");
  a.Option("out", &out, "where to write the page (default: RUN_DIR/report.html)");
  return ParseAndRun(a, argv, [&] {
    if (out.empty()) out = learner::ReportPath(run_dir);
    if (Status st = learner::WriteRunReport(run_dir, out); !st.ok()) return ReportError(st);
    std::printf("report: %s\n", out.c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("report", "write a run's report as one self-contained HTML page", RunReportCommand);

}  // namespace chainrl::app
