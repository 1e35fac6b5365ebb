// RewardPool statistics -> Prometheus counters (see reward_metrics.h).
#include "rewards/reward_metrics.h"

#include <prometheus/counter.h>

namespace chainrl::rewards {

void RewardMetrics::Update(const std::map<std::string, RewardStats>& stats) {
  using metrics::CounterId;
  for (const auto& [name, s] : stats) {
    RewardStats& prev = last_[name];
    const metrics::Labels labels = {{"plugin", name}};
    auto add = [&](CounterId id, int64_t now, int64_t before) {
      if (now > before)
        registry_.counter(id, labels).Increment(static_cast<double>(now - before));
      else
        registry_.counter(id, labels);  // the series exists (at 0) from the first update
    };
    add(CounterId::kRewardCalls, s.calls, prev.calls);
    add(CounterId::kRewardErrors, s.errors, prev.errors);
    add(CounterId::kRewardTimeouts, s.timeouts, prev.timeouts);
    prev = s;
  }
}

}  // namespace chainrl::rewards
