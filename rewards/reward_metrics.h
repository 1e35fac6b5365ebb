// Counts scored samples into the reward counters of the metrics catalogue, per reward (label
// plugin = the reward's name): chainrl_reward_calls_total (one evaluation per sample the reward
// scored), chainrl_reward_timeouts_total (evaluations stopped at the deadline) and
// chainrl_reward_errors_total (every other failure: crash, plugin error, non-finite score, worker).
#pragma once

#include <vector>

#include "core/metrics.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards {

// `scores` are one RewardPool::Score call's results, `specs` the pool's specs() (scores[i].rewards
// is in spec order). Creates every reward's series (at 0) on the first call. Thread-safe as the
// registry's counters are.
void CountRewardOutcomes(metrics::MetricsRegistry& registry, const std::vector<RewardSpec>& specs,
                         const std::vector<RewardResult>& scores);

}  // namespace chainrl::rewards
