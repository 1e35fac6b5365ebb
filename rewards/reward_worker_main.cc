// chainrl-reward-worker: a small process that loads one reward plugin and scores batches sent by
// RewardPool over a socket (fd given by --fd), so a plugin that crashes or hangs costs only this
// process. Exits when the host closes the socket or dies. Not meant to be run by hand.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "core/cgroup.h"
#include "rewards/plugin_loader.h"
#include "rewards/reward_wire.h"

namespace {

using namespace chainrl::rewards;

int Serve(int fd) {
  std::unique_ptr<LoadedPlugin> plugin;
  for (;;) {
    auto frame = wire::ReadFrame(fd);
    if (!frame.ok()) return 0;  // host closed the socket: done
    const std::string& payload = *frame;
    if (payload.empty()) return 3;
    if (payload[0] == wire::kInit) {
      wire::InitRequest req;
      wire::InitReply reply;
      chainrl::Status st = wire::DecodeInit(payload, &req);
      if (!st.ok()) return 3;
      if (plugin) {
        reply.error = "worker already initialised";
      } else {
        auto p = LoadedPlugin::Open(req.path, req.options_toml);
        if (p.ok()) {
          plugin = std::move(p).value();
          reply.ok = true;
          reply.plugin_name = plugin->name();
          reply.plugin_version = plugin->version();
        } else {
          reply.error = p.status().message();
        }
      }
      if (!wire::WriteFrame(fd, wire::EncodeInitReply(reply)).ok()) return 0;
    } else if (payload[0] == wire::kScore) {
      if (!plugin) return 3;
      std::vector<RewardInput> samples;
      if (!wire::DecodeScore(payload, &samples).ok()) return 3;
      wire::ScoreReply reply = plugin->Score(samples);
      if (!wire::WriteFrame(fd, wire::EncodeScoreReply(reply)).ok()) return 0;
    } else {
      return 3;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int fd = -1;
  std::string cgroup;  // the worker's own cgroup, when the pool contains workers in cgroups
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--fd") == 0) fd = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--cgroup") == 0) cgroup = argv[i + 1];
  }
  if (fd < 0) {
    std::fprintf(stderr,
                 "chainrl-reward-worker: internal helper of chainrl's reward pool; "
                 "usage: chainrl-reward-worker --fd N [--cgroup DIR]\n");
    return 2;
  }
  // Die with the host even while the plugin hangs: a watchdog notices when this process is
  // re-parented. (PR_SET_PDEATHSIG would fire when the spawning *thread* exits, which a host
  // with thread pools does routinely.) An idle worker also exits on end of stream.
  const pid_t host = getppid();
  // The pool spawns the worker as the leader of its own process group, and in its own cgroup when
  // it can: what a plugin started goes with it (never the group of whoever else started it), even
  // a process that left the group with setsid.
  const bool leads_group = getpgrp() == getpid();
  std::thread([host, leads_group, cgroup] {
    for (;;) {
      if (getppid() != host) {
        if (!cgroup.empty()) (void)chainrl::KillCgroup(cgroup, 0);  // this process included
        if (leads_group) ::kill(0, SIGKILL);
        _exit(0);
      }
      usleep(200 * 1000);
    }
  }).detach();
  signal(SIGPIPE, SIG_IGN);
  return Serve(fd);
}
