// The run's report files, typed: RUN_DIR/progress.json (what the learner is doing now) and
// RUN_DIR/summary.json (how the run went). The learner writes them and the launcher reads them
// (the progress line; the summary completed with what only the launcher knows), both through
// these records, so every key is spelled once, here. No LibTorch.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "learner/run_state.h"
#include "learner/work_ledger.h"

namespace chainrl::learner {

// RUN_DIR/progress.json, rewritten atomically as the run goes.
struct ProgressRecord {
  std::string phase;  // "sft", "eval", "rl" (also the offline preference loop) or "done"
  int64_t step = 0;   // RL (or preference) updates so far
  int64_t total_steps = 0;
  int64_t sft_step = 0;
  int64_t sft_steps = 0;
  int64_t version = 0;  // policy version
  int64_t budget = 0;   // token budget now
  double elapsed_seconds = 0;
  int64_t actors = 0;  // actors alive
  // From the latest step, when it recorded them.
  std::optional<double> reward, accuracy, mean_length, rollout_tokens_per_s, loss;
  std::optional<double> eta_seconds;    // from the mean duration of the latest RL steps
  std::optional<double> eval_accuracy;  // the latest held-out evaluation's

  // Figures the progress record takes from the latest entry of the step history.
  void TakeLatestStep(const nlohmann::json& history);

  nlohmann::json ToJson() const;
  // Corrupt naming the key when a present key has the wrong type; absent keys keep defaults.
  static Result<ProgressRecord> FromJson(const nlohmann::json& j);
  // The launcher's one-line view: "[rl] step 3/10  reward 0.500  acc 50.0%  ..."
  std::string Line() const;
};

// Seconds to go: the mean (train + wait) seconds of the last `window` RL steps of `history`
// times the steps left; nullopt without an RL step.
std::optional<double> EtaSeconds(const nlohmann::json& history, int64_t steps_left, int window = 5);
// Mean response length of the training rollouts (RL entries of `history`) over each window of
// `window` consecutive steps; with fewer steps than that, their mean; empty without RL steps.
std::vector<double> SmoothedLengths(const nlohmann::json& history, int window);

// RUN_DIR/summary.json. Optional figures are written as null when empty, except those marked
// "omitted" (written only when known).
struct RunSummary {
  // ---- the learner's ----
  std::string run;
  bool completed = false;
  int64_t steps = 0, total_steps = 0, sft_steps = 0, policy_version = 0;
  int64_t groups_dispatched = 0, groups_accepted = 0, groups_trained = 0, groups_buffered = 0;
  int64_t groups_in_flight = 0, groups_duplicated = 0, groups_lost = 0, groups_filtered = 0;
  int64_t groups_refused = 0;  // never handed out: a prompt longer than the model's context
  int64_t steps_at_gen_limit = 0, leases_reassigned = 0;
  int64_t leases_declined = 0;  // handed back by actors that could not make their work
  int64_t results_discarded_duplicate = 0, results_discarded_unknown = 0;
  int64_t results_dropped_stale = 0;
  // Accepted groups past the staleness bound when they were to be trained: dropped and generated
  // again (stale_policy drop), or trained (flag, correct).
  int64_t groups_stale_requeued = 0, groups_stale_trained = 0;
  int64_t samples_multi_version = 0, segments_received = 0, segments_continued = 0;
  nlohmann::json prompt_embedding_cache;  // {hits, misses, evictions, bytes}, or null
  int64_t groups_part_generated = 0, actors_declared_dead = 0, rejected_messages = 0;
  int64_t peers_refused = 0;  // connections turned away by CURVE authentication
  int64_t tokens_trained = 0;
  int64_t data_lines_skipped = 0;  // malformed JSONL lines skipped (data.on_bad_line = "skip")
  std::optional<double> accuracy_after_sft, mean_length_after_sft;
  std::optional<double> accuracy_after_rl, mean_length_after_rl;
  std::optional<double> mean_length_peak, mean_length_final;
  nlohmann::json evals = nlohmann::json::array();  // {label, step, accuracy, mean_length, ...}
  std::string export_dir;
  double wall_seconds = 0;
  nlohmann::json final_step;  // the last history entry; omitted when null
  int64_t learner_ranks = 1;
  std::optional<bool> ranks_parameters_identical;  // omitted
  // The best held-out accuracy of the run and where it was reached (omitted without evals).
  std::optional<double> accuracy_best;
  std::optional<int64_t> accuracy_best_step;
  std::optional<std::string> accuracy_best_label;
  // ---- the launcher's (omitted until it adds them) ----
  std::optional<int64_t> actor_restarts, actor_deaths, learner_restarts;
  nlohmann::json actors;  // name -> {restarts, deaths}; omitted when null
  std::optional<double> launcher_wall_seconds;
  // Keys of a summary read back that no field above knows (written back unchanged).
  nlohmann::json other = nlohmann::json::object();

  // accuracy_best* from `evals`: the first evaluation with the highest accuracy.
  void SetBestAccuracy();

  nlohmann::json ToJson() const;
  static Result<RunSummary> FromJson(const nlohmann::json& j);
};

// The progress record's figures that come from the run's state: where it is (step, SFT step,
// version), the latest step's figures, the ETA (in phase "rl" after a step, from `total_steps`) and
// the latest held-out accuracy. sft_steps, budget, elapsed_seconds and actors are the caller's.
ProgressRecord ProgressFromRun(const std::string& phase, const RunState& run, int64_t total_steps);

// The summary's figures that come from the run's state and the ledger's counters: steps, policy
// version, groups and results counted, tokens trained, the evaluations (the one after RL:
// `final_eval`, or null), the smoothed lengths, the last step and the best accuracy. The rest (the
// run's name, completion, total steps, what is buffered, in flight or part-generated, segments
// received, the embedding cache, rejected messages, export, wall time, ranks) is the caller's.
RunSummary SummaryFromRun(const RunState& run, const LedgerCounters& ledger,
                          const nlohmann::json& final_eval);

// The files themselves: RUN_DIR/progress.json and RUN_DIR/summary.json, written atomically.
Status WriteProgress(const std::string& run_dir, const ProgressRecord& p);
Result<ProgressRecord> ReadProgress(const std::string& run_dir);
Status WriteSummary(const std::string& run_dir, const RunSummary& s);
Result<RunSummary> ReadSummary(const std::string& run_dir);
std::string SummaryPath(const std::string& run_dir);

}  // namespace chainrl::learner
