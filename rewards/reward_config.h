// Maps the reward part of a run config onto RewardSpec / PoolOptions, one TOML key per field:
//   [[rewards]]  name, kind, path, weight, deadline_seconds, error_score, batch_size, [options]
//   [reward_pool] worker_path, workers_per_plugin, init_deadline_seconds
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "core/status.h"
#include "rewards/reward_pool.h"

namespace chainrl::rewards {

struct RewardConfig {
  std::vector<RewardSpec> specs;
  PoolOptions pool;
};

// Reads `rewards` (an array of tables, required) and `reward_pool` (a table, optional) from a
// parsed document; other top-level keys are ignored. A reward's `options` sub-table is
// re-serialised as TOML into RewardSpec::options_toml. Unset keys keep the struct defaults.
// InvalidArgument "<source>:<line>: ..." naming the key on an unknown key, a wrong type, or a
// missing name/kind. Semantic checks (files, ABI, ranges) happen in RewardPool::Create.
Result<RewardConfig> ParseRewardConfig(const toml::table& root, const std::string& source);
// Same from TOML text; a syntax error is InvalidArgument "<source>:<line>:<column>: ...".
Result<RewardConfig> ParseRewardConfig(std::string_view toml_text, const std::string& source);

}  // namespace chainrl::rewards
