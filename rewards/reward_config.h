// Maps the reward part of a validated run config onto RewardSpec / PoolOptions, one TOML key per
// field (the schema, with types, defaults and ranges, is rewards/config_keys.cc):
//   [[rewards]]       name, kind, path, weight, deadline_seconds, error_score, batch_size, options
//   [rewards_common]  worker_path, workers_per_plugin, init_deadline_seconds
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards {

struct RewardConfig {
  std::vector<RewardSpec> specs;
  PoolOptions pool;
};

// The config has been validated (types, ranges, choices) by LoadConfig; what remains to check —
// files, ELF, entry points, ABI versions, plugin init — happens in RewardPool::Create.
RewardConfig RewardConfigFromRunConfig(const Config& config);

// Builds the pool the run config describes, or InvalidArgument naming the reward and file (a
// configuration error: exit 2 before anything starts). InvalidArgument too when no reward is
// configured.
Result<std::unique_ptr<RewardPool>> CreateRewardPool(const Config& config);

}  // namespace chainrl::rewards
