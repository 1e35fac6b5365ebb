// Publishes a RewardPool's event counts as Prometheus counters of the metrics catalogue:
// chainrl_reward_calls_total{plugin}, chainrl_reward_errors_total{plugin} and
// chainrl_reward_timeouts_total{plugin} (plugin = the reward's name).
#pragma once

#include <map>
#include <string>

#include "core/metrics.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards {

// Not thread-safe: call Update from one thread (the actor's scoring loop). The registry must
// outlive this object.
class RewardMetrics {
 public:
  explicit RewardMetrics(metrics::MetricsRegistry& registry) : registry_(registry) {}

  // Adds to the counters what changed since the previous call (counters only ever grow, as
  // RewardPool::stats() does). `stats` is RewardPool::stats().
  void Update(const std::map<std::string, RewardStats>& stats);

 private:
  metrics::MetricsRegistry& registry_;
  std::map<std::string, RewardStats> last_;
};

}  // namespace chainrl::rewards
