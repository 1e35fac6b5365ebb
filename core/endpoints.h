// The three endpoints of a learner (work, trajectories, weights): derived from one address given to
// `chainrl actor --connect`, or read from the endpoints.json the learner writes in its run
// directory. Also free local TCP ports, for endpoints a process picks itself (rendezvous, tests).
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace chainrl {

struct LearnerEndpoints {
  std::string work;          // ROUTER: work requests, heartbeats, join/leave
  std::string trajectories;  // PULL: trajectories
  std::string weights;       // ROUTER: weight announcements and chunks
};

// From one address: tcp://HOST:PORT gives PORT, PORT+1, PORT+2; ipc://PATH gives PATH,
// PATH.traj, PATH.weights. A path ending in .json is read as an endpoints file. Error naming the
// address when it is none of these (or a tcp port is 0 or above 65533).
Result<LearnerEndpoints> ResolveLearnerEndpoints(const std::string& address);
// The endpoints file: {"work": ..., "trajectories": ..., "weights": ..., "pid": ...}.
Result<LearnerEndpoints> ReadEndpointsFile(const std::string& path);
// The same from the file's contents; `path` names it in errors.
Result<LearnerEndpoints> ParseEndpointsJson(std::string_view text, const std::string& path);
Status WriteEndpointsFile(const std::string& path, const LearnerEndpoints& endpoints, int pid);

// A TCP port on 127.0.0.1 that is free at the time of the call (bind to port 0, read it, close):
// another process may take it before the caller binds it. IoError if no socket can be bound.
// Thread-safe.
Result<int> PickFreePort();

}  // namespace chainrl
