// `chainrl learner RUN.toml`: the learner process of a run (see learner/learner_process.h).
#include "apps/args.h"
#include "apps/run_config.h"
#include "apps/run_dir.h"
#include "apps/stop_signal.h"
#include "core/log.h"
#include "learner/data_parallel.h"
#include "learner/learner_process.h"

namespace chainrl::app {
namespace {

int RunLearnerCommand(const std::vector<std::string>& argv) {
  std::string path, run_dir_flag, resume;
  std::vector<std::string> sets;
  Args a("chainrl learner", "RUN.toml [--run-dir DIR] [--resume latest|DIR] [--set KEY=VALUE]...",
         "Run the learner of a run: it binds learner.bind (ipc sockets in the run directory by\n"
         "default; tcp://HOST:PORT uses PORT, PORT+1 and PORT+2), serves work to the actors that\n"
         "connect (`chainrl actor RUN.toml --connect ADDRESS`), trains, publishes weights and\n"
         "writes RUN_DIR/summary.json. Ctrl-C stops after a checkpoint.\n"
         "Started by torchrun (or any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and\n"
         "MASTER_PORT), the ranks train as one data-parallel learner: rank 0 does the above and\n"
         "splits every batch across the ranks; the others only compute their shards.");
  a.Positional("RUN.toml", &path, "the run configuration");
  a.Option("run-dir", &run_dir_flag, "output directory (default: run.run_dir, else runs/NAME-TIME)");
  a.Option("resume", &resume, "resume from 'latest' (in checkpoint.dir) or a checkpoint directory");
  a.Repeated("set", &sets, "override a key, e.g. --set learner.lr=1e-6");
  return ParseAndRun(a, argv, [&] {
    std::atomic<bool>& stop = InstallStopHandlers();
    log::SetRole("learner");
    auto cfg = LoadConfig(path, sets);
    if (!cfg.ok()) return ReportError(cfg.status());
    auto lvl = log::ParseLevel(cfg->GetString("run.log_level"));
    if (lvl.ok()) log::SetLevel(*lvl);
    learner::LearnerProcessOptions o;
    // Under a torchrun-style launcher, ranks other than 0 follow rank 0 and write nothing of their
    // own: only rank 0 prepares the run directory.
    auto who = learner::RankInfoFromEnvironment();
    if (!who.ok()) return ReportError(who.status());
    if (who->world_size > 1) {  // a backend this build lacks: exit 2 before joining the group
      auto dpo = learner::DataParallelOptionsFromConfig(*cfg);
      if (!dpo.ok()) return ReportError(dpo.status());
    }
    if (who->rank == 0) {
      auto dir = PrepareRunDir(*cfg, run_dir_flag, "learner");
      if (!dir.ok()) return ReportError(dir.status());
      o.run_dir = *dir;
    }
    o.resume = resume;
    Status st = learner::RunLearner(*cfg, o, stop);
    if (!st.ok()) return ReportError(st);
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("learner", "run the learner of a run (actors connect to it)", RunLearnerCommand);

}  // namespace chainrl::app
