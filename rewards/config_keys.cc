// The keys of the rewards: [rewards_common] and one [[rewards]] table per reward.
#include "rewards/config_keys.h"

#include <limits>

#include "core/config_keys.h"

namespace chainrl {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

void AddRewardKeys(ConfigSchema* schema) {
  AddSection(schema, "rewards_common",
             "Settings shared by every reward; each reward itself is one `[[rewards]]` table.");
  auto& k = schema->keys;
  k.push_back(Int("rewards_common.workers_per_plugin", 2, 1, 256,
                  "Worker processes per plugin reward, scoring calls in parallel."));
  k.push_back(Float("rewards_common.init_deadline_seconds", 10.0, 0.0, 3600.0,
                    "Time for a worker to start, load its plugin and run its init.", true));
  k.push_back(
      Str("rewards_common.contain", "auto",
          "How a plugin is kept from leaving processes behind: `cgroup` (each worker in its "
          "own cgroup v2, killed whole; needs root or a delegated subtree), "
          "`process_group` (a child that calls setsid escapes), `auto` (cgroup when "
          "possible; the log says which).",
          {"auto", "cgroup", "process_group"}));
  k.push_back(Str("rewards_common.worker_path", "",
                  "The reward worker executable; empty: $CHAINRL_REWARD_WORKER, else "
                  "chainrl-reward-worker next to chainrl."));

  ArraySpec rewards;
  rewards.name = "rewards";
  rewards.doc =
      "One table per reward; the task reward of a sample is the weighted sum. `kind` is a built-in "
      "verifier or `plugin` (a shared library at `path`, run in isolated worker processes).";
  rewards.keys = {
      Required(Str("name", "", "Name used in metrics and logs.")),
      Str("kind", "plugin", "Built-in reward or a plugin.",
          {"plugin", "math", "exact_match", "regex", "format", "length", "task"}),
      Str("path", "", "Shared library of a plugin (kind = plugin)."),
      Float("weight", 1.0, -kInf, kInf, "Weight in the sum."),
      Float("deadline_seconds", 10.0, 0.0, 86400.0, "Time limit per batch call.", true),
      Float("error_score", 0.0, -1e6, 1e6, "Score of a sample whose reward failed."),
      Int("batch_size", 8, 1, 4096, "Samples per plugin call (the deadline covers one call)."),
  };
  KeySpec options;
  options.key = "options";
  options.type = ValueType::kTable;
  options.default_value = std::string();
  options.doc = "Table handed to the reward's init as TOML text.";
  rewards.keys.push_back(options);
  schema->arrays.push_back(rewards);
}

}  // namespace chainrl
