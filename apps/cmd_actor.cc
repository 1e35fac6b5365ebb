// `chainrl actor RUN.toml --connect ADDRESS`: one rollout actor process (see actors/actor.h).
// `chainrl actor --connect ADDRESS --fetch-run DIR`: the same on a host that has nothing of the run
// but reward plugins: the config and the model's small files come from the learner.
#include <chrono>
#include <cstdio>
#include <thread>

#include "actors/actor.h"
#include "apps/args.h"
#include "apps/run_config.h"
#include "apps/stop_signal.h"
#include "core/channel.h"
#include "core/endpoints.h"
#include "core/log.h"
#include "core/run_files.h"
#include "core/security.h"

namespace chainrl::app {
namespace {

using namespace std::chrono_literals;

// The CURVE keys of --key and --learner-key (both or neither).
Result<transport::CurveKeys> KeysFromFlags(const std::string& key, const std::string& learner_key) {
  if (key.empty() != learner_key.empty())
    return InvalidArgument(
        "--key and --learner-key go together: the actor's key pair and the "
        "learner's public key");
  if (key.empty()) return transport::CurveKeys{};
  auto own = transport::ReadKeyPairFile(key);
  if (!own.ok()) return own.status().WithPrefix("--key");
  auto learner = transport::ReadPublicKey(learner_key);
  if (!learner.ok()) return learner.status().WithPrefix("--learner-key");
  return transport::CurveClient(*own, *learner);
}

// Asks the learner for the run's files and writes them into `dir`; asks again every 2 s while the
// learner is away or still in its warm-up (its endpoints open when RL starts). DIR/run.toml.
Result<std::string> FetchRunFiles(const LearnerEndpoints& endpoints,
                                  const transport::CurveKeys& curve, const std::string& dir,
                                  const std::atomic<bool>& stop) {
  transport::Context ctx;
  transport::ChannelOptions o;
  o.name = "fetch";
  o.curve = curve;
  CHAINRL_ASSIGN_OR_RETURN(
      auto work,
      transport::Channel::Open(ctx, transport::ChannelKind::kWorkClient, endpoints.work, o));
  CHAINRL_LOG(kInfo) << "asking " << endpoints.work << " for the run's files"
                     << (curve.enabled() ? " (CURVE)" : "");
  const wire::Envelope ask = [] {
    wire::Envelope e = wire::MakeEnvelope("fetch");
    e.mutable_run_files_request();
    return e;
  }();
  auto last = std::chrono::steady_clock::now() - 1h;
  while (!stop) {
    if (std::chrono::steady_clock::now() - last > 2s) {
      (void)work->Send(ask);
      last = std::chrono::steady_clock::now();
    }
    CHAINRL_ASSIGN_OR_RETURN(auto m, work->Receive(200ms));
    if (!m) continue;
    CHAINRL_RETURN_IF_ERROR(transport::IsRefusal(m->envelope, endpoints.work));
    if (!m->envelope.has_run_files()) continue;  // e.g. a lease meant for an earlier actor here
    CHAINRL_ASSIGN_OR_RETURN(std::string toml, WriteRunFiles(m->envelope.run_files(), dir));
    CHAINRL_LOG(kInfo) << "the run's config and " << m->envelope.run_files().model_files_size()
                       << " model files written to " << dir;
    return toml;
  }
  return Aborted("stopped while waiting for the learner's run files");
}

// --set KEY=VALUE with the value quoted when it can be (paths, keys).
std::string SetString(const std::string& key, const std::string& value) {
  if (value.find('"') != std::string::npos || value.find('\\') != std::string::npos)
    return key + "=" + value;
  return key + "=\"" + value + "\"";
}

int RunActorCommand(const std::vector<std::string>& argv) {
  std::string path, connect, run_dir, fetch_dir, key, learner_key;
  std::vector<std::string> sets;
  int64_t index = 0;
  Args a("chainrl actor",
         "[RUN.toml] --connect ADDRESS [--index N] [--fetch-run DIR --key FILE --learner-key "
         "KEY] [--set KEY=VALUE]...",
         "Run one rollout actor: take prompt groups from the learner at ADDRESS, generate and\n"
         "score their samples, and send the trajectories back. ADDRESS is tcp://HOST:PORT (the\n"
         "learner's learner.bind; PORT+1 and PORT+2 are its trajectory and weights ports),\n"
         "ipc://PATH, or the learner's RUN_DIR/endpoints.json. HOST is an address, [IPv6] or a\n"
         "DNS name. Against a learner with keys, set security.actor_secret_key_file and\n"
         "security.learner_public_key (docs/SECURITY.md).\n"
         "On a host without the run's files, give no RUN.toml but --fetch-run DIR: the learner\n"
         "sends its config and the model's config and tokenizer files into DIR (weights come as\n"
         "always); --key and --learner-key are then the actor's key pair and the learner's\n"
         "public key. Reward plugins must be installed at the paths the run names.\n"
         "Ctrl-C leaves cleanly.");
  a.Positional("RUN.toml", &path, "the run configuration (the learner's)", /*required=*/false);
  a.Option("connect", &connect, "the learner's address (default: actors.connect)");
  a.Option("index", &index, "actor number: id actor-N (default 0)");
  a.Option("run-dir", &run_dir, "directory for this actor's metrics address file");
  a.Option("fetch-run", &fetch_dir, "fetch the run's config and model files into DIR");
  a.Option("key", &key, "with --fetch-run: this actor's key pair file (chainrl keys)");
  a.Option("learner-key", &learner_key, "with --fetch-run: the learner's public key or .pub file");
  a.Repeated("set", &sets, "override a key, e.g. --set rollout.max_batch_size=16");
  return ParseAndRun(a, argv, [&] {
    std::atomic<bool>& stop = InstallStopHandlers();
    if (path.empty() == fetch_dir.empty())
      return ReportError(InvalidArgument(
          path.empty() ? "no run: give RUN.toml, or --fetch-run DIR to fetch it from the learner"
                       : "give RUN.toml or --fetch-run DIR, not both"));
    if (fetch_dir.empty() && !(key.empty() && learner_key.empty()))
      return ReportError(
          InvalidArgument("--key and --learner-key go with --fetch-run; with RUN.toml set "
                          "security.actor_secret_key_file and security.learner_public_key"));
    if (!fetch_dir.empty()) {
      if (connect.empty())
        return ReportError(InvalidArgument("--fetch-run needs --connect: the learner's address"));
      auto endpoints = ResolveLearnerEndpoints(connect);
      if (!endpoints.ok()) return ReportError(endpoints.status());
      auto curve = KeysFromFlags(key, learner_key);
      if (!curve.ok()) return ReportError(curve.status());
      auto toml = FetchRunFiles(*endpoints, *curve, fetch_dir, stop);
      if (!toml.ok()) return ReportError(toml.status());
      path = *toml;
      // The learner's host paths mean nothing here: this host's model files and keys instead.
      std::vector<std::string> local = {SetString("model.path", fetch_dir + "/model"),
                                        "tokenizer.path=",
                                        "model.reference_path=",
                                        "security.learner_secret_key_file=",
                                        "security.authorized_keys_file=",
                                        SetString("security.actor_secret_key_file", key),
                                        SetString("security.learner_public_key", learner_key)};
      if (key.empty()) local.resize(local.size() - 2);
      sets.insert(sets.begin(), local.begin(), local.end());
    }
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
