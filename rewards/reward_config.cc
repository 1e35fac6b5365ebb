// TOML -> RewardSpec / PoolOptions (see reward_config.h).
#include "rewards/reward_config.h"

#include <cmath>
#include <cstdint>
#include <sstream>

namespace chainrl::rewards {
namespace {

std::string Where(const std::string& source, const toml::node& n) {
  std::ostringstream os;
  os << source;
  if (n.source().begin.line > 0) os << ":" << n.source().begin.line;
  return os.str();
}

Status Bad(const std::string& source, const toml::node& n, const std::string& key,
           const char* what) {
  return InvalidArgument(Where(source, n) + ": '" + key + "' must be " + what);
}

Status GetString(const std::string& source, const toml::node& n, const std::string& key,
                 std::string* out) {
  auto v = n.value<std::string>();
  if (!v) return Bad(source, n, key, "a string");
  *out = *v;
  return Status::Ok();
}

Status GetNumber(const std::string& source, const toml::node& n, const std::string& key,
                 double* out) {
  auto v = n.value<double>();  // integers convert too
  if (!v) return Bad(source, n, key, "a number");
  *out = *v;
  return Status::Ok();
}

Status GetInt(const std::string& source, const toml::node& n, const std::string& key, int* out) {
  auto v = n.value<int64_t>();
  if (!v || *v < INT32_MIN || *v > INT32_MAX) return Bad(source, n, key, "an integer");
  *out = static_cast<int>(*v);
  return Status::Ok();
}

}  // namespace

Result<RewardConfig> ParseRewardConfig(const toml::table& root, const std::string& source) {
  RewardConfig cfg;
  const toml::node* rewards = root.get("rewards");
  if (rewards == nullptr)
    return InvalidArgument(source + ": no [[rewards]] configured (at least one is required)");
  const toml::array* arr = rewards->as_array();
  if (arr == nullptr || !arr->is_array_of_tables())
    return InvalidArgument(Where(source, *rewards) +
                           ": 'rewards' must be an array of tables "
                           "([[rewards]])");
  for (const toml::node& el : *arr) {
    const toml::table& t = *el.as_table();
    RewardSpec spec;
    bool has_name = false, has_kind = false;
    for (const auto& [k, v] : t) {
      std::string key(k.str());
      if (key == "name") {
        CHAINRL_RETURN_IF_ERROR(GetString(source, v, key, &spec.name));
        has_name = true;
      } else if (key == "kind") {
        CHAINRL_RETURN_IF_ERROR(GetString(source, v, key, &spec.kind));
        has_kind = true;
      } else if (key == "path") {
        CHAINRL_RETURN_IF_ERROR(GetString(source, v, key, &spec.path));
      } else if (key == "weight") {
        CHAINRL_RETURN_IF_ERROR(GetNumber(source, v, key, &spec.weight));
      } else if (key == "deadline_seconds") {
        CHAINRL_RETURN_IF_ERROR(GetNumber(source, v, key, &spec.deadline_seconds));
      } else if (key == "error_score") {
        CHAINRL_RETURN_IF_ERROR(GetNumber(source, v, key, &spec.error_score));
      } else if (key == "batch_size") {
        CHAINRL_RETURN_IF_ERROR(GetInt(source, v, key, &spec.batch_size));
      } else if (key == "options") {
        const toml::table* opt = v.as_table();
        if (opt == nullptr) return Bad(source, v, key, "a table");
        toml::table doc = *opt;
        doc.is_inline(false);  // `options = { .. }` must print as a document, not `{ .. }`
        std::ostringstream os;
        os << doc;
        spec.options_toml = os.str();
      } else {
        return InvalidArgument(Where(source, v) + ": unknown key '" + key +
                               "' in [[rewards]] (known: name, kind, path, weight, "
                               "deadline_seconds, error_score, batch_size, options)");
      }
    }
    if (!has_name) return InvalidArgument(Where(source, t) + ": a [[rewards]] entry lacks 'name'");
    if (!has_kind)
      return InvalidArgument(Where(source, t) + ": reward '" + spec.name + "' lacks 'kind'");
    cfg.specs.push_back(std::move(spec));
  }
  if (const toml::node* pool = root.get("reward_pool")) {
    const toml::table* t = pool->as_table();
    if (t == nullptr) return Bad(source, *pool, "reward_pool", "a table");
    for (const auto& [k, v] : *t) {
      std::string key(k.str());
      if (key == "worker_path") {
        CHAINRL_RETURN_IF_ERROR(GetString(source, v, key, &cfg.pool.worker_path));
      } else if (key == "workers_per_plugin") {
        CHAINRL_RETURN_IF_ERROR(GetInt(source, v, key, &cfg.pool.workers_per_plugin));
      } else if (key == "init_deadline_seconds") {
        CHAINRL_RETURN_IF_ERROR(GetNumber(source, v, key, &cfg.pool.init_deadline_seconds));
      } else {
        return InvalidArgument(Where(source, v) + ": unknown key '" + key +
                               "' in [reward_pool] (known: worker_path, workers_per_plugin, "
                               "init_deadline_seconds)");
      }
    }
  }
  return cfg;
}

Result<RewardConfig> ParseRewardConfig(std::string_view toml_text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
       << e.description();
    return InvalidArgument(os.str());
  }
  return ParseRewardConfig(root, source);
}

}  // namespace chainrl::rewards
