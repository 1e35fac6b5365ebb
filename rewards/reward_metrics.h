// Counts scored samples into the reward counters of the metrics catalogue, per reward (label
// plugin = the reward's name): chainrl_reward_calls_total (one evaluation per sample the reward
// scored), chainrl_reward_timeouts_total (evaluations stopped at the deadline) and
// chainrl_reward_errors_total (every other failure: crash, plugin error, non-finite score, worker).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/metrics.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards {

// `scores` are one RewardPool::Score call's results, `specs` the pool's specs() (scores[i].rewards
// is in spec order). Creates every reward's series (at 0) on the first call. Thread-safe as the
// registry's counters are.
void CountRewardOutcomes(metrics::MetricsRegistry& registry, const std::vector<RewardSpec>& specs,
                         const std::vector<RewardResult>& scores);

// The reward workers' own figures, exported by their host (the worker processes serve no
// endpoint of their own: they are children of the actor or learner that scores with them, which
// reads each one's /proc/PID/stat on every scrape of its /metrics):
// chainrl_reward_worker_up, chainrl_reward_worker_resident_memory_bytes and
// chainrl_reward_worker_cpu_seconds_total per {plugin, worker} slot, and
// chainrl_reward_worker_restarts_total per plugin. Registered while this object lives; destroy it
// before the pool or the registry.
class RewardWorkerMetrics {
 public:
  RewardWorkerMetrics(metrics::MetricsRegistry& registry, const RewardPool& pool);
  ~RewardWorkerMetrics();
  RewardWorkerMetrics(const RewardWorkerMetrics&) = delete;
  RewardWorkerMetrics& operator=(const RewardWorkerMetrics&) = delete;

  // Reads every worker's figures into the registry now (what a scrape does first).
  void Refresh();

 private:
  metrics::MetricsRegistry& registry_;
  const RewardPool& pool_;
  int hook_ = -1;
  struct Slot {
    int pid = -1;
    double cpu_seconds = 0;  // of `pid`, as last read
  };
  std::map<std::string, Slot> slots_;        // by "reward/index"
  std::map<std::string, int64_t> restarts_;  // by reward, as last counted
};

// CPU seconds (user + system) and resident bytes of process `pid` from /proc; false when it is
// gone.
bool ReadProcessFigures(int pid, double* cpu_seconds, double* resident_bytes);

}  // namespace chainrl::rewards
