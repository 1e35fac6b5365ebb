// progress.json and summary.json as typed records (see run_report.h). Each record lists its keys
// once, in a Fields() visitor that both ToJson and FromJson walk.
#include "learner/run_report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/file_io.h"
#include "core/json_file.h"

namespace chainrl::learner {
namespace {

using nlohmann::json;

// How an empty optional is written.
enum class WhenEmpty { kNull, kOmit };

// Writes members into a JSON object.
struct Writer {
  json* out;
  template <typename T>
  void operator()(const char* key, const T& v, WhenEmpty = WhenEmpty::kNull) {
    (*out)[key] = v;
  }
  template <typename T>
  void operator()(const char* key, const std::optional<T>& v, WhenEmpty e = WhenEmpty::kNull) {
    if (v) {
      (*out)[key] = *v;
    } else if (e == WhenEmpty::kNull) {
      (*out)[key] = nullptr;
    }
  }
  void operator()(const char* key, const json& v, WhenEmpty e = WhenEmpty::kNull) {
    if (!v.is_null() || e == WhenEmpty::kNull) (*out)[key] = v;
  }
};

// Reads members from a JSON object; records the first type error and the keys it knew.
struct Reader {
  const json* in;
  std::vector<std::string> known;
  std::string error;
  template <typename T>
  void operator()(const char* key, T& v, WhenEmpty = WhenEmpty::kNull) {
    known.emplace_back(key);
    auto it = in->find(key);
    if (it == in->end() || it->is_null()) return;
    try {
      v = it->get<T>();
    } catch (const std::exception&) {
      if (error.empty())
        error = std::string(key) + ": expected " + TypeName<T>() + ", got " + it->type_name();
    }
  }
  template <typename T>
  void operator()(const char* key, std::optional<T>& v, WhenEmpty = WhenEmpty::kNull) {
    known.emplace_back(key);
    auto it = in->find(key);
    if (it == in->end() || it->is_null()) return;
    try {
      v = it->get<T>();
    } catch (const std::exception&) {
      if (error.empty())
        error = std::string(key) + ": expected " + TypeName<T>() + ", got " + it->type_name();
    }
  }
  void operator()(const char* key, json& v, WhenEmpty = WhenEmpty::kNull) {
    known.emplace_back(key);
    if (auto it = in->find(key); it != in->end()) v = *it;
  }
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    return "a number";
  }
};

template <typename Record, typename F>
void ProgressFields(Record& p, F&& f) {
  f("phase", p.phase);
  f("step", p.step);
  f("total_steps", p.total_steps);
  f("sft_step", p.sft_step);
  f("sft_steps", p.sft_steps);
  f("version", p.version);
  f("budget", p.budget);
  f("elapsed_seconds", p.elapsed_seconds);
  f("actors", p.actors);
  f("reward", p.reward, WhenEmpty::kOmit);
  f("accuracy", p.accuracy, WhenEmpty::kOmit);
  f("mean_length", p.mean_length, WhenEmpty::kOmit);
  f("rollout_tokens_per_s", p.rollout_tokens_per_s, WhenEmpty::kOmit);
  f("loss", p.loss, WhenEmpty::kOmit);
  f("eta_seconds", p.eta_seconds, WhenEmpty::kOmit);
  f("eval_accuracy", p.eval_accuracy, WhenEmpty::kOmit);
}

template <typename Record, typename F>
void SummaryFields(Record& s, F&& f) {
  f("run", s.run);
  f("completed", s.completed);
  f("steps", s.steps);
  f("total_steps", s.total_steps);
  f("sft_steps", s.sft_steps);
  f("policy_version", s.policy_version);
  f("groups_dispatched", s.groups_dispatched);
  f("groups_accepted", s.groups_accepted);
  f("groups_trained", s.groups_trained);
  f("groups_buffered", s.groups_buffered);
  f("groups_in_flight", s.groups_in_flight);
  f("groups_duplicated", s.groups_duplicated);
  f("groups_lost", s.groups_lost);
  f("groups_filtered", s.groups_filtered);
  f("steps_at_gen_limit", s.steps_at_gen_limit);
  f("leases_reassigned", s.leases_reassigned);
  f("leases_declined", s.leases_declined);
  f("results_discarded_duplicate", s.results_discarded_duplicate);
  f("results_discarded_unknown", s.results_discarded_unknown);
  f("results_dropped_stale", s.results_dropped_stale);
  f("groups_stale_requeued", s.groups_stale_requeued);
  f("groups_stale_trained", s.groups_stale_trained);
  f("samples_multi_version", s.samples_multi_version);
  f("segments_received", s.segments_received);
  f("segments_continued", s.segments_continued);
  f("prompt_embedding_cache", s.prompt_embedding_cache);
  f("groups_part_generated", s.groups_part_generated);
  f("actors_declared_dead", s.actors_declared_dead);
  f("rejected_messages", s.rejected_messages);
  f("peers_refused", s.peers_refused);
  f("groups_refused", s.groups_refused);
  f("tokens_trained", s.tokens_trained);
  f("data_lines_skipped", s.data_lines_skipped);
  f("accuracy_after_sft", s.accuracy_after_sft);
  f("mean_length_after_sft", s.mean_length_after_sft);
  f("accuracy_after_rl", s.accuracy_after_rl);
  f("mean_length_after_rl", s.mean_length_after_rl);
  f("mean_length_peak", s.mean_length_peak);
  f("mean_length_final", s.mean_length_final);
  f("evals", s.evals);
  f("export_dir", s.export_dir);
  f("wall_seconds", s.wall_seconds);
  f("final_step", s.final_step, WhenEmpty::kOmit);
  f("learner_ranks", s.learner_ranks);
  f("ranks_parameters_identical", s.ranks_parameters_identical, WhenEmpty::kOmit);
  f("accuracy_best", s.accuracy_best, WhenEmpty::kOmit);
  f("accuracy_best_step", s.accuracy_best_step, WhenEmpty::kOmit);
  f("accuracy_best_label", s.accuracy_best_label, WhenEmpty::kOmit);
  f("actor_restarts", s.actor_restarts, WhenEmpty::kOmit);
  f("actor_deaths", s.actor_deaths, WhenEmpty::kOmit);
  f("actors", s.actors, WhenEmpty::kOmit);
  f("learner_restarts", s.learner_restarts, WhenEmpty::kOmit);
  f("launcher_wall_seconds", s.launcher_wall_seconds, WhenEmpty::kOmit);
}

Result<json> ReadJson(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(
      json j, ReadJsonFile(path, kMaxLargeJsonBytes, kMaxJsonDepth, StatusCode::kCorrupt));
  if (!j.is_object()) return Corrupt(path + ": not a JSON object");
  return j;
}

}  // namespace

void ProgressRecord::TakeLatestStep(const json& history) {
  if (history.empty()) return;
  const json& h = history.back();
  for (auto [key, field] :
       {std::pair{"reward", &reward}, std::pair{"accuracy", &accuracy},
        std::pair{"mean_length", &mean_length},
        std::pair{"rollout_tokens_per_s", &rollout_tokens_per_s}, std::pair{"loss", &loss}})
    if (auto it = h.find(key); it != h.end() && it->is_number()) *field = it->get<double>();
}

json ProgressRecord::ToJson() const {
  json j = json::object();
  ProgressFields(*this, Writer{&j});
  return j;
}

Result<ProgressRecord> ProgressRecord::FromJson(const json& j) {
  if (!j.is_object()) return Corrupt("progress record: not a JSON object");
  ProgressRecord p;
  Reader r{&j, {}, {}};
  ProgressFields(p, r);
  if (!r.error.empty()) return Corrupt("progress record: " + r.error);
  return p;
}

std::string ProgressRecord::Line() const {
  char buf[512];
  if (phase == "sft") {
    std::snprintf(buf, sizeof(buf), "[sft] step %lld/%lld  loss %.3f",
                  static_cast<long long>(sft_step), static_cast<long long>(sft_steps),
                  loss.value_or(0.0));
  } else if (phase == "eval") {
    std::snprintf(buf, sizeof(buf), "[eval] evaluating on held-out examples (step %lld)",
                  static_cast<long long>(step));
  } else {
    char eta[32] = "?";
    if (eta_seconds && *eta_seconds >= 0)
      std::snprintf(eta, sizeof(eta), "%dm%02ds", static_cast<int>(*eta_seconds) / 60,
                    static_cast<int>(*eta_seconds) % 60);
    std::snprintf(buf, sizeof(buf),
                  "[%s] step %lld/%lld  reward %.3f  acc %.1f%%  len %.1f  budget %lld  "
                  "%.0f tok/s  actors %d  ETA %s",
                  phase.c_str(), static_cast<long long>(step), static_cast<long long>(total_steps),
                  reward.value_or(0.0), 100.0 * accuracy.value_or(0.0), mean_length.value_or(0.0),
                  static_cast<long long>(budget), rollout_tokens_per_s.value_or(0.0),
                  static_cast<int>(actors), eta);
  }
  return buf;
}

std::optional<double> EtaSeconds(const json& history, int64_t steps_left, int window) {
  double per_step = 0;
  int n = 0;
  for (auto it = history.rbegin(); it != history.rend() && n < window; ++it)
    if (it->value("phase", "") == "rl") {
      per_step += it->value("train_seconds", 0.0) + it->value("wait_seconds", 0.0);
      ++n;
    }
  if (n == 0) return std::nullopt;
  return per_step / n * static_cast<double>(steps_left);
}

std::vector<double> SmoothedLengths(const json& history, int window) {
  std::vector<double> raw, out;
  for (const auto& h : history)
    if (h.value("phase", "") == "rl") raw.push_back(h.value("mean_length", 0.0));
  for (size_t i = 0; i + window <= raw.size(); ++i)
    out.push_back(std::accumulate(raw.begin() + i, raw.begin() + i + window, 0.0) / window);
  if (out.empty() && !raw.empty())
    out.push_back(std::accumulate(raw.begin(), raw.end(), 0.0) / static_cast<double>(raw.size()));
  return out;
}

void RunSummary::SetBestAccuracy() {
  for (const auto& e : evals)
    if (!accuracy_best || e.value("accuracy", 0.0) > *accuracy_best) {
      accuracy_best = e.value("accuracy", 0.0);
      accuracy_best_step = e.value("step", int64_t{0});
      accuracy_best_label = e.value("label", "");
    }
}

json RunSummary::ToJson() const {
  json j = other.is_object() ? other : json::object();
  SummaryFields(*this, Writer{&j});
  return j;
}

Result<RunSummary> RunSummary::FromJson(const json& j) {
  if (!j.is_object()) return Corrupt("summary: not a JSON object");
  RunSummary s;
  Reader r{&j, {}, {}};
  SummaryFields(s, r);
  if (!r.error.empty()) return Corrupt("summary: " + r.error);
  for (const auto& [key, value] : j.items())
    if (std::find(r.known.begin(), r.known.end(), key) == r.known.end()) s.other[key] = value;
  return s;
}

ProgressRecord ProgressFromRun(const std::string& phase, const RunState& run, int64_t total_steps) {
  ProgressRecord p;
  p.phase = phase;
  p.step = run.step;
  p.total_steps = total_steps;
  p.sft_step = run.sft_step;
  p.version = run.version;
  p.TakeLatestStep(run.history);
  if (phase == "rl" && run.step > 0)
    p.eta_seconds = EtaSeconds(run.history, total_steps - run.step);
  if (!run.evals.empty() && run.evals.back()["accuracy"].is_number())
    p.eval_accuracy = run.evals.back()["accuracy"].get<double>();
  return p;
}

RunSummary SummaryFromRun(const RunState& run, const LedgerCounters& k, const json& final_eval) {
  RunSummary s;
  s.steps = run.step;
  s.sft_steps = run.sft_step;
  s.policy_version = run.version;
  s.groups_dispatched = static_cast<int64_t>(k.dispatched);
  s.groups_accepted = static_cast<int64_t>(k.completed);
  s.groups_trained = static_cast<int64_t>(run.trained.size());
  s.groups_duplicated = run.groups_duplicated;
  s.groups_lost = static_cast<int64_t>(k.lost);
  s.groups_refused = static_cast<int64_t>(k.refused);
  s.groups_filtered = run.groups_filtered;
  s.steps_at_gen_limit = run.gen_limit_steps;
  s.leases_reassigned = static_cast<int64_t>(k.reassigned);
  s.leases_declined = static_cast<int64_t>(k.leases_declined);
  s.results_discarded_duplicate = static_cast<int64_t>(k.duplicates_discarded);
  s.results_discarded_unknown = static_cast<int64_t>(k.unknown_discarded);
  s.results_dropped_stale = run.stale_dropped;
  s.groups_stale_requeued = run.stale_requeued;
  s.groups_stale_trained = run.stale_trained;
  s.samples_multi_version = run.samples_multi_version;
  s.segments_continued = static_cast<int64_t>(k.segments_continued);
  s.actors_declared_dead = static_cast<int64_t>(k.actors_declared_dead);
  s.tokens_trained = run.tokens_trained;
  auto number = [](const json& eval, const char* key) -> std::optional<double> {
    if (!eval.is_object() || !eval.contains(key) || !eval[key].is_number()) return std::nullopt;
    return eval[key].get<double>();
  };
  s.accuracy_after_sft = number(run.sft_eval, "accuracy");
  s.mean_length_after_sft = number(run.sft_eval, "mean_length");
  s.accuracy_after_rl = number(final_eval, "accuracy");
  s.mean_length_after_rl = number(final_eval, "mean_length");
  if (const auto lengths = SmoothedLengths(run.history, 5); !lengths.empty()) {
    s.mean_length_peak = *std::max_element(lengths.begin(), lengths.end());
    s.mean_length_final = lengths.back();
  }
  s.evals = run.evals;
  if (!run.history.empty()) s.final_step = run.history.back();
  s.SetBestAccuracy();
  return s;
}

Status WriteProgress(const std::string& run_dir, const ProgressRecord& p) {
  return WriteFileAtomic((std::filesystem::path(run_dir) / "progress.json").string(),
                         p.ToJson().dump() + "\n");
}

Result<ProgressRecord> ReadProgress(const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / "progress.json").string();
  CHAINRL_ASSIGN_OR_RETURN(json j, ReadJson(path));
  auto p = ProgressRecord::FromJson(j);
  if (!p.ok()) return p.status().WithPrefix(path);
  return p;
}

std::string SummaryPath(const std::string& run_dir) {
  return (std::filesystem::path(run_dir) / "summary.json").string();
}

Status WriteSummary(const std::string& run_dir, const RunSummary& s) {
  return WriteFileAtomic(SummaryPath(run_dir), s.ToJson().dump(1) + "\n");
}

Result<RunSummary> ReadSummary(const std::string& run_dir) {
  const std::string path = SummaryPath(run_dir);
  CHAINRL_ASSIGN_OR_RETURN(json j, ReadJson(path));
  auto s = RunSummary::FromJson(j);
  if (!s.ok()) return s.status().WithPrefix(path);
  return s;
}

}  // namespace chainrl::learner
