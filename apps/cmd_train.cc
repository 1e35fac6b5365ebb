// `chainrl train RUN.toml`: a whole training run on this machine (launcher of learner + actors).
#include <cstdio>

#include "apps/args.h"
#include "apps/run_dir.h"
#include "core/config.h"
#include "core/log.h"
#include "rewards/reward_config.h"

namespace chainrl::app {
namespace {

int RunTrain(const std::vector<std::string>& argv) {
  std::string path, run_dir_flag;
  std::vector<std::string> sets;
  bool check_only = false;
  Args a("chainrl train", "RUN.toml [--set KEY=VALUE]... [--run-dir DIR]",
         "Run a whole training job on this machine: the learner and `actors.count` actor\n"
         "processes, supervised by this launcher. The config is validated before anything starts.");
  a.Positional("RUN.toml", &path, "the run configuration");
  a.Repeated("set", &sets, "override a key, e.g. --set learner.lr=1e-6");
  a.Option("run-dir", &run_dir_flag,
           "output directory (default: run.run_dir, else runs/NAME-TIME)");
  a.Flag("check", &check_only, "validate the configuration (reward plugins loaded) and exit");
  return ParseAndRun(a, argv, [&] {
    log::SetRole("launcher");
    auto cfg = LoadConfig(path, sets);
    if (!cfg.ok()) return ReportError(cfg.status());
    // Reward plugins are loaded (in worker processes) and checked before anything starts: a
    // missing file, a non-library, a missing entry point or another ABI version is exit 2.
    auto rewards = rewards::CreateRewardPool(*cfg);
    if (!rewards.ok()) return ReportError(rewards.status());
    if (check_only) {
      std::printf("%s: OK\n", path.c_str());
      return kExitOk;
    }
    auto lvl = log::ParseLevel(cfg->GetString("run.log_level"));
    if (lvl.ok()) log::SetLevel(*lvl);
    auto dir = PrepareRunDir(*cfg, run_dir_flag, "launcher");
    if (!dir.ok()) return ReportError(dir.status());
    CHAINRL_LOG(kInfo) << "run directory " << *dir;
    CHAINRL_LOG(kError) << "the training loop is not implemented yet";
    return kExitFailure;
  });
}

}  // namespace

CHAINRL_COMMAND("train", "run a whole training job on this machine", RunTrain);

}  // namespace chainrl::app
