// The run's checkpointed state (see run_state.h).
#include "learner/run_state.h"

#include <vector>

#include "core/json_file.h"

namespace chainrl::learner {

using nlohmann::json;

json RunState::ToJson() const {
  json t = json::array();
  for (uint64_t g : trained) t.push_back(g);
  return {{"sft_done", sft_done},
          {"sft_step", sft_step},
          {"step", step},
          {"version", version},
          {"next_group", next_group},
          {"tokens_trained", tokens_trained},
          {"groups_duplicated", groups_duplicated},
          {"groups_filtered", groups_filtered},
          {"stale_dropped", stale_dropped},
          {"stale_requeued", stale_requeued},
          {"stale_trained", stale_trained},
          {"samples_multi_version", samples_multi_version},
          {"segments_received", segments_received},
          {"history", history},
          {"evals", evals},
          {"sft_eval", sft_eval},
          {"wall_seconds", wall_seconds},
          {"trained", t},
          {"gen_limit_steps", gen_limit_steps},
          {"shaping", shaping},
          {"difficulty_buckets", difficulty_buckets},
          {"torch_rng", torch_rng}};
}

Result<RunState> RunState::FromJson(const json& j, const std::string& where) {
  RunState s;
  // Counts and ids, except the records that hold measured figures.
  CHAINRL_RETURN_IF_ERROR(RequireIntegers(j, where,
                                          {"history", "evals", "sft_eval", "wall_seconds",
                                           "shaping", "difficulty_buckets", "torch_rng"}));
  try {
    s.sft_done = j.value("sft_done", false);
    s.sft_step = j.at("sft_step");
    s.step = j.at("step");
    s.version = j.at("version");
    s.next_group = j.at("next_group");
    s.tokens_trained = j.at("tokens_trained");
    s.groups_duplicated = j.at("groups_duplicated");
    s.groups_filtered = j.at("groups_filtered");
    s.stale_dropped = j.at("stale_dropped");
    s.stale_requeued = j.value("stale_requeued", int64_t{0});
    s.stale_trained = j.value("stale_trained", int64_t{0});
    s.samples_multi_version = j.value("samples_multi_version", int64_t{0});
    s.segments_received = j.value("segments_received", int64_t{0});
    s.history = j.at("history");
    s.evals = j.at("evals");
    s.sft_eval = j.at("sft_eval");
    s.wall_seconds = j.at("wall_seconds");
    for (uint64_t g : j.at("trained").get<std::vector<uint64_t>>()) s.trained.insert(g);
    s.gen_limit_steps = j.value("gen_limit_steps", int64_t{0});
    s.shaping = j.value("shaping", json());
    s.difficulty_buckets = j.value("difficulty_buckets", json());
    s.torch_rng = j.value("torch_rng", json());
  } catch (const std::exception& e) {
    return InvalidArgument(where + ": " + e.what());
  }
  if (!s.history.is_array() || !s.evals.is_array())
    return InvalidArgument(where + ": history and evals must be arrays");
  return s;
}

}  // namespace chainrl::learner
