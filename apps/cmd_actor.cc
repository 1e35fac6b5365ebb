// `chainrl actor RUN.toml --connect ADDRESS`: one rollout actor process (see actors/actor.h).
#include <cstdio>

#include "actors/actor.h"
#include "apps/args.h"
#include "apps/run_config.h"
#include "apps/stop_signal.h"
#include "core/endpoints.h"
#include "core/log.h"
#include "core/security.h"

namespace chainrl::app {
namespace {

int RunActorCommand(const std::vector<std::string>& argv) {
  std::string path, connect, run_dir;
  std::vector<std::string> sets;
  int64_t index = 0;
  Args a("chainrl actor", "RUN.toml --connect ADDRESS [--index N] [--set KEY=VALUE]...",
         "Run one rollout actor: take prompt groups from the learner at ADDRESS, generate and\n"
         "score their samples, and send the trajectories back. ADDRESS is tcp://HOST:PORT (the\n"
         "learner's learner.bind; PORT+1 and PORT+2 are its trajectory and weights ports),\n"
         "ipc://PATH, or the learner's RUN_DIR/endpoints.json. HOST is an address, [IPv6] or a\n"
         "DNS name. Against a learner with keys, set security.actor_secret_key_file and\n"
         "security.learner_public_key (docs/SECURITY.md). Ctrl-C leaves cleanly.");
  a.Positional("RUN.toml", &path, "the run configuration (the learner's)");
  a.Option("connect", &connect, "the learner's address (default: actors.connect)");
  a.Option("index", &index, "actor number: id actor-N (default 0)");
  a.Option("run-dir", &run_dir, "directory for this actor's metrics address file");
  a.Repeated("set", &sets, "override a key, e.g. --set rollout.max_batch_size=16");
  return ParseAndRun(a, argv, [&] {
    std::atomic<bool>& stop = InstallStopHandlers();
    auto cfg = LoadConfig(path, sets);
    if (!cfg.ok()) return ReportError(cfg.status());
    auto lvl = log::ParseLevel(cfg->GetString("run.log_level"));
    if (lvl.ok()) log::SetLevel(*lvl);
    if (connect.empty()) connect = cfg->GetString("actors.connect");
    if (connect.empty())
      return ReportError(InvalidArgument("no learner address: pass --connect or set actors.connect"));
    auto endpoints = ResolveLearnerEndpoints(connect);
    if (!endpoints.ok()) return ReportError(endpoints.status());
    auto curve = transport::ActorSecurityFromConfig(*cfg);
    if (!curve.ok()) return ReportError(curve.status());
    actors::ActorOptions o;
    o.curve = *curve;
    o.index = index;
    o.endpoints = *endpoints;
    o.run_dir = run_dir;
    Status st = actors::RunActor(*cfg, o, stop);
    if (!st.ok()) return ReportError(st);
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("actor", "run one rollout actor connected to a learner", RunActorCommand);

}  // namespace chainrl::app
