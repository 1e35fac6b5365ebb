// The keys of [actors]: the actor processes and their connection to the learner.
#include "actors/config_keys.h"

#include "core/config_keys.h"

namespace chainrl {

void AddActorKeys(ConfigSchema* schema) {
  AddSection(schema, "actors", "The actor processes and their connection to the learner.");
  auto& k = schema->keys;
  k.push_back(Int("actors.count", 2, 0, 1024, "Actor processes started by `chainrl train`."));
  k.push_back(Checked(Str("actors.connect", "",
                          "Learner endpoint for `chainrl actor` (tcp://HOST:PORT or ipc://PATH)."),
                      CheckEndpoint));
  k.push_back(Int("actors.threads", 0, 0, 1024,
                  "Intra-op (LibTorch and OpenBLAS) compute threads of each actor process; 0: an "
                  "equal share of the physical cores this host allows (affinity and cgroup quota) "
                  "among the run's compute processes on it (learner ranks and actors, as `chainrl "
                  "train` counts them; 1 process for `chainrl actor` alone). The environment "
                  "variable CHAINRL_THREADS, when it holds a positive integer, overrides it (as it "
                  "does learner.threads)."));
  k.push_back(Int(
      "actors.credits", 2, 1, 1024,
      "Work items an actor may hold at once; the learner gives no actor more, whatever it asks."));
  k.push_back(Float("actors.heartbeat_interval_seconds", 1.0, 0.01, 3600.0,
                    "Interval between an actor's heartbeats."));
  k.push_back(
      Float("actors.heartbeat_timeout_seconds", 10.0, 0.05, 86400.0,
            "Silence after which the learner declares an actor dead and re-leases its work."));
  k.push_back(Int("actors.max_restarts", 10, 0, std::nullopt,
                  "Restarts of one actor by the launcher before the run fails."));
  k.push_back(Float("actors.restart_backoff_seconds", 1.0, 0.0, 3600.0,
                    "First restart delay; doubles on each restart of the same actor."));
}

}  // namespace chainrl
