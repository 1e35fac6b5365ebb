// Containing child processes in cgroup v2: every process a child starts, however it detaches
// (setsid, double fork, a new process group), stays in the child's cgroup, and one write to its
// `cgroup.kill` ends them all. Used for reward workers, whose plugins are code chainrl does not
// control. Needs a writable cgroup v2 hierarchy (root, or a delegated subtree); `Open` says why
// when there is none. No LibTorch.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "core/status.h"

namespace chainrl {

// The cgroup v2 directory this process belongs to ("<mount>/<path from /proc/self/cgroup>"), or
// NotFound saying why there is none (no cgroup2 mount, no "0::" line).
Result<std::string> OwnCgroupV2Dir();

// Kills every process in the cgroup `dir` (its `cgroup.kill`, or SIGKILL to each member of
// `cgroup.procs` on kernels before 5.14) and waits up to `wait_ms` until it is empty. Returns how
// many processes it found there, or an error naming the file it could not use.
Result<int> KillCgroup(const std::string& dir, int wait_ms = 2000);

// A directory of cgroups, one per contained child, created under this process's own cgroup as
// "<own>/<tag>-<pid>-<n>" and removed (after killing what is left) when destroyed. Groups left by a
// process of the same tag that died without cleaning up are removed at Open.
class CgroupNest {
 public:
  // NotFound (no cgroup v2 here) or IoError (not writable: not root, no delegated subtree) saying
  // why cgroups cannot be used.
  static Result<std::unique_ptr<CgroupNest>> Open(const std::string& tag);
  ~CgroupNest();
  CgroupNest(const CgroupNest&) = delete;
  CgroupNest& operator=(const CgroupNest&) = delete;

  // The directory of the child cgroup `name`, created when missing.
  Result<std::string> Child(const std::string& name);
  // Moves process `pid` (and its threads) into the child cgroup `dir`.
  static Status Enter(const std::string& dir, pid_t pid);

  const std::string& dir() const { return dir_; }

 private:
  explicit CgroupNest(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace chainrl
