// Run config -> RewardSpec / PoolOptions (see reward_config.h).
#include "rewards/reward_config.h"

namespace chainrl::rewards {

RewardConfig RewardConfigFromRunConfig(const Config& config) {
  RewardConfig out;
  for (const ConfigTable& t : config.GetArray("rewards")) {
    RewardSpec s;
    s.set_name(std::get<std::string>(t.at("name")))
        .set_kind(std::get<std::string>(t.at("kind")))
        .set_path(std::get<std::string>(t.at("path")))
        .set_weight(std::get<double>(t.at("weight")))
        .set_deadline_seconds(std::get<double>(t.at("deadline_seconds")))
        .set_error_score(std::get<double>(t.at("error_score")));
    s.batch_size = static_cast<int>(std::get<int64_t>(t.at("batch_size")));
    s.options_toml = std::get<std::string>(t.at("options"));
    out.specs.push_back(std::move(s));
  }
  out.pool.set_worker_path(config.GetString("rewards_common.worker_path"))
      .set_workers_per_plugin(static_cast<int>(config.GetInt("rewards_common.workers_per_plugin")))
      .set_init_deadline_seconds(config.GetFloat("rewards_common.init_deadline_seconds"))
      .set_contain(config.GetString("rewards_common.contain"));
  return out;
}

Result<std::unique_ptr<RewardPool>> CreateRewardPool(const Config& config) {
  RewardConfig rc = RewardConfigFromRunConfig(config);
  if (rc.specs.empty())
    return InvalidArgument("no reward configured: add at least one [[rewards]] table");
  return RewardPool::Create(std::move(rc.specs), rc.pool);
}

}  // namespace chainrl::rewards
