// Scored samples -> the reward counters (see reward_metrics.h).
#include "rewards/reward_metrics.h"

#include <prometheus/counter.h>

namespace chainrl::rewards {

void CountRewardOutcomes(metrics::MetricsRegistry& registry, const std::vector<RewardSpec>& specs,
                         const std::vector<RewardResult>& scores) {
  for (size_t j = 0; j < specs.size(); ++j) {
    double calls = 0, timeouts = 0, errors = 0;
    for (const auto& sc : scores) {
      if (j >= sc.rewards.size()) continue;
      const RewardError e = sc.rewards[j].error;
      calls += 1;
      timeouts += e == RewardError::kTimeout ? 1 : 0;
      errors += e != RewardError::kNone && e != RewardError::kTimeout ? 1 : 0;
    }
    const metrics::Labels plugin = {{"plugin", specs[j].name}};
    registry.counter(metrics::CounterId::kRewardCalls, plugin).Increment(calls);
    registry.counter(metrics::CounterId::kRewardTimeouts, plugin).Increment(timeouts);
    registry.counter(metrics::CounterId::kRewardErrors, plugin).Increment(errors);
  }
}

}  // namespace chainrl::rewards
