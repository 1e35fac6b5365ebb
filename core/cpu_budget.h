// The CPU a process may use, and how many compute threads each of the processes of a run on this
// host gets: the CPUs of its affinity mask, capped by a cgroup CPU quota, counted in physical
// cores (SMT siblings share one core's arithmetic units: a second thread on a sibling slows a
// GEMM-bound step down rather than up). No LibTorch.
#pragma once

#include <string>

namespace chainrl {

struct CpuBudget {
  int online = 0;    // CPUs online on the machine
  int allowed = 0;   // CPUs in this process's affinity mask
  int physical = 0;  // distinct physical cores among the allowed CPUs
  double quota = 0;  // cgroup CPU quota in CPUs (cpu.max or cfs_quota/period); 0: none
  // CPUs this process can keep busy at once: the allowed ones, at most the quota (rounded up).
  int usable() const;
  // Physical cores among them (what compute threads should be sized by).
  int usable_cores() const;
  // "2 cores (2 CPUs allowed of 2, 2 physical, no cgroup quota)"
  std::string Describe() const;
};

// The budget of this process, read from sched_getaffinity, /sys/devices/system/cpu/*/topology and
// the cgroup's cpu.max (v2) or cpu.cfs_quota_us (v1). Never fails: what cannot be read is left out
// (no topology: each CPU counts as a core; no cgroup: no quota).
CpuBudget ReadCpuBudget();

// Compute threads for each of `processes` processes that share `budget` and compute at the same
// time: an equal share of its physical cores, at least 1.
int ThreadShare(const CpuBudget& budget, int processes);

// The environment variable by which `chainrl train` tells each process it starts how many compute
// processes share this host's cores (learner ranks + actors).
inline constexpr const char* kCpuProcessesEnv = "CHAINRL_CPU_PROCESSES";

// `text` (an environment variable's value, may be null) as an integer in [1, 2^20], else 0.
int PositiveCount(const char* text);

// kCpuProcessesEnv when it is set to a positive integer, else `fallback`.
int CpuProcessesFromEnv(int fallback);

// The compute threads of one process and why: CHAINRL_THREADS when it holds a positive integer;
// else `configured` (the role's config key `key`) when it is positive; else, for 0, ThreadShare of
// this process's budget among CpuProcessesFromEnv(`processes`) processes, or among `processes`
// alone when `run_processes` is false (a phase in which the run's other processes are idle).
struct ThreadChoice {
  int threads = 1;
  std::string why;  // e.g. "learner.threads = 0: 2 cores (...) shared by 3 compute processes"
};
ThreadChoice ChooseThreads(const std::string& key, long long configured, int processes,
                           bool run_processes = true);

}  // namespace chainrl
