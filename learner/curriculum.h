// Curricula: token-budget schedules (Train Long, Think Short), multi-stage runs with config
// overrides (CAMPO, VL-Cogito), difficulty filtering and VL-Cogito's soft weighting of advantages,
// and a difficulty-bucket prompt sampler whose state round-trips through JSON for checkpoints
// (docs/ALGORITHMS.md §5.1–§5.5; papers: Train Long, Think Short arXiv 2508.08940, VL-Cogito arXiv
// 2507.22607, MiroMind-M1 arXiv 2507.14683). No LibTorch.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace chainrl::learner {

// ---- token budget -------------------------------------------------------------------------------
enum class BudgetSchedule { kConstant, kLinear, kExponential, kStep };
// "constant" | "linear" | "exponential" | "step"
Result<BudgetSchedule> ParseBudgetSchedule(std::string_view name);
const char* BudgetScheduleName(BudgetSchedule s);

struct TokenBudgetOptions {
  BudgetSchedule schedule = BudgetSchedule::kConstant;  // budget_schedule
  int64_t initial_budget = 256;                         // B0
  int64_t final_budget = 256;                           // linear: B_final, reached at decay_steps
  int64_t decay_steps = 1;  // linear: steps from B0 to B_final; exponential: period T
  double gamma = 0.7;       // exponential: factor per period
  int64_t min_budget = 1;   // floor of every schedule
  // step: (first step, budget) milestones, sorted by step; before the first one, initial_budget.
  std::vector<std::pair<int64_t, int64_t>> milestones;
  TokenBudgetOptions& set_schedule(BudgetSchedule v) {
    schedule = v;
    return *this;
  }
  TokenBudgetOptions& set_initial_budget(int64_t v) {
    initial_budget = v;
    return *this;
  }
  TokenBudgetOptions& set_final_budget(int64_t v) {
    final_budget = v;
    return *this;
  }
  TokenBudgetOptions& set_decay_steps(int64_t v) {
    decay_steps = v;
    return *this;
  }
  TokenBudgetOptions& set_gamma(double v) {
    gamma = v;
    return *this;
  }
  TokenBudgetOptions& set_min_budget(int64_t v) {
    min_budget = v;
    return *this;
  }
  TokenBudgetOptions& set_milestones(std::vector<std::pair<int64_t, int64_t>> v) {
    milestones = std::move(v);
    return *this;
  }
};
Status ValidateTokenBudgetOptions(const TokenBudgetOptions& options);
// The budget in tokens at training step t ≥ 0 (pure function of t: no state to checkpoint).
//   constant:    B0
//   linear:      round(B0 + (B_final − B0)·min(t/decay_steps, 1))
//   exponential: max(min_budget, ⌊B0·γ^⌊t/decay_steps⌋⌋)
//   step:        the budget of the last milestone with step ≤ t
// All are floored at min_budget.
int64_t TokenBudgetAt(const TokenBudgetOptions& options, int64_t step);

// ---- multi-stage runs ---------------------------------------------------------------------------
// A stage starts at `start_step` and overrides config keys; the config layer applies `overrides`
// (dotted key, value as written in TOML) on top of the base config.
struct Stage {
  std::string name;
  int64_t start_step = 0;
  std::vector<std::pair<std::string, std::string>> overrides;
};
class StageSchedule {
 public:
  // InvalidArgument naming the stage when the first stage does not start at 0, start steps do
  // not strictly increase, or a key is empty or malformed ("a..b", ".a", "a.").
  static Result<StageSchedule> Create(std::vector<Stage> stages);
  // Index of the stage active at `step` (the last one with start_step ≤ step).
  size_t IndexAt(int64_t step) const;
  const Stage& StageAt(int64_t step) const { return stages_[IndexAt(step)]; }
  // True when the stage at `step` differs from the one at `step − 1` (step 0 counts as a switch).
  bool SwitchesAt(int64_t step) const;
  const std::vector<Stage>& stages() const { return stages_; }

 private:
  std::vector<Stage> stages_;
};
// The [[curriculum.stages]] of a run's config (name, start_step, overrides "key=value"), with a
// "base" stage without overrides from step 0 when the first one starts later; nullopt when there
// are none. InvalidArgument as StageSchedule::Create.
Result<std::optional<StageSchedule>> StageScheduleFromConfig(const Config& c);
// A stage's overrides as "key=value" strings (Config::WithOverrides' input).
std::vector<std::string> OverrideSets(const Stage& stage);

// ---- difficulty ---------------------------------------------------------------------------------
// Offline filter: keep a prompt iff 0 < pass rate < 1. (The online filter is DAPO's keep rule,
// KeepGroupForDynamicSampling in learner/advantages.h.)
inline bool KeepByPassRate(double pass_rate) { return pass_rate > 0.0 && pass_rate < 1.0; }

// VL-Cogito ODSW: Â_i ← w(acc)·Â_i with the stage's weight (easy s3, medium s2, hard s1).
enum class DifficultyStage { kEasy, kMedium, kHard };
Result<DifficultyStage> ParseDifficultyStage(std::string_view name);  // "easy"|"medium"|"hard"
double DifficultySoftWeight(double group_accuracy, DifficultyStage stage);
// Scales advantages in place: samples with equal group_ids share one accuracy (mean of correct).
void ApplyDifficultySoftWeights(std::span<double> advantages, std::span<const uint8_t> correct,
                                std::span<const int64_t> group_ids, DifficultyStage stage);

// Bucket index of a prompt by its measured pass rate: the number of `edges` ≤ pass_rate
// (edges ascending), so edges {1/3, 2/3} give 0 hard, 1 medium, 2 easy.
size_t DifficultyBucketIndex(double pass_rate, std::span<const double> edges);

// Draws prompt indices from difficulty buckets with sampling weights: pick a bucket in proportion
// to its weight (among non-empty buckets), then the next prompt of that bucket in a per-epoch
// shuffled order. Deterministic given the seed; all state (RNG, orders, cursors) round-trips
// through JSON so a restored sampler draws the identical sequence. Thread-compatible.
class DifficultyBucketSampler {
 public:
  // InvalidArgument when sizes differ, a weight is negative or non-finite, or every bucket with
  // positive weight is empty.
  static Result<DifficultyBucketSampler> Create(std::vector<std::vector<int64_t>> buckets,
                                                std::vector<double> weights, uint64_t seed);
  int64_t Next();
  // Changes the weights (e.g. at a stage switch); same validation as Create.
  Status SetWeights(std::vector<double> weights);

  nlohmann::json ToJson() const;
  // Restores the state written by ToJson into a sampler built with the same buckets; Corrupt
  // naming the key when the JSON does not match.
  Status LoadJson(const nlohmann::json& j);

 private:
  DifficultyBucketSampler() = default;
  uint64_t Uniform(uint64_t n);  // in [0, n), unbiased (rejection), from rng_
  double UniformReal();          // in [0, 1), 53 bits
  void Reshuffle(size_t bucket);

  std::vector<std::vector<int64_t>> buckets_;
  std::vector<double> weights_;
  std::vector<std::vector<int64_t>> order_;
  std::vector<size_t> cursor_;
  std::vector<int64_t> epoch_;
  std::mt19937_64 rng_;
};

}  // namespace chainrl::learner
