// The learner process's per-step reward shaping and advantages: the length methods of
// length_shaping.h (Kimi, DAPO overlong, CAMPO repetition, DLER, LASER / LASER-D / LASER-DE,
// GRPO-λ) and VL-Cogito's difficulty soft weighting (curriculum.h) over one step's groups, with
// LASER-D's adaptive targets as checkpointable state (docs/ALGORITHMS.md §4.1–§4.10, §5.4). No
// LibTorch.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "learner/advantages.h"
#include "learner/curriculum.h"
#include "learner/length_shaping.h"

namespace chainrl::learner {

// One response as shaping sees it.
struct ShapingSample {
  double reward = 0;                // the task reward (weighted sum of the run's rewards)
  int64_t length = 0;               // response tokens
  bool correct = false;             // the run's first reward scored >= 1
  bool truncated = false;           // no end of sequence (length cap, budget, or stopped in a loop)
  bool formatted = false;           // LASER: a well-formed answer (the process: ended by a stop)
  bool looping = false;             // LASER-DE: the loop detector fired
  std::span<const int32_t> tokens;  // CAMPO's repetition penalty reads the tail; may be empty
};
struct ShapingGroup {
  std::vector<ShapingSample> samples;
};

// "Replacing" methods set the base reward from correctness (at most one per run); "additive"
// methods add to whatever the base is, in the order kimi, dapo_overlong, campo_repetition.
enum class LengthMethod {
  kKimi,
  kDapoOverlong,
  kCampoRepetition,
  kDler,
  kLaser,
  kLaserD,
  kLaserDe,
  kGrpoLambda,
  kDrpo
};
// InvalidArgument naming the value for an unknown method or when two replacing methods are listed.
Result<std::vector<LengthMethod>> ParseLengthMethods(const std::vector<std::string>& names);

struct ProcessShapingOptions {
  std::vector<LengthMethod> methods;  // length_shaping.methods
  KimiLengthOptions kimi;             // kimi_weight (also GRPO-λ's length reward)
  int64_t overlong_buffer_len = 128;  // DAPO L_cache; L_max is the step's token budget
  double overlong_penalty_factor = 1.0;
  RepetitionPenaltyOptions repetition;            // CAMPO
  LaserOptions laser;                             // laser_alpha, laser_mode; exploration: LASER-DE
  int64_t laser_target = 256;                     // LASER's fixed L_T
  LaserDOptions laser_d;                          // LASER-D / LASER-DE adaptive targets
  GrpoLambdaOptions grpo_lambda;                  // grpo_lambda_fraction
  std::optional<DifficultyStage> soft_weighting;  // curriculum.soft_weighting (none: nullopt)
  GroupAdvantageOptions advantages;               // the GRPO/Dr.GRPO estimator in force
  bool Has(LengthMethod m) const;
};

// From [length_shaping], [curriculum] and the advantage options already derived for the run.
// LASER-D's candidate thresholds are not keys of their own: they run from max_new_tokens/16 to
// rollout.max_new_tokens in steps of max_new_tokens/16 (LASER: 1024..16384 by 1024 for a 16K cap).
// "drpo" sets the reward to 1[correct] here; its loss replaces the policy loss in
// RunPolicyUpdate (LearnerRunOptions::drpo). InvalidArgument naming the key on a bad value.
Result<ProcessShapingOptions> ProcessShapingOptionsFromConfig(
    const Config& config, const GroupAdvantageOptions& advantages);

// What one step's shaping produced, per group and per sample.
struct ShapedStep {
  std::vector<std::vector<double>> rewards;
  std::vector<std::vector<double>> advantages;
  std::vector<double> group_accuracy;      // fraction of correct samples
  std::vector<double> soft_weights;        // per group; 1 without soft weighting
  std::array<int64_t, 3> laser_targets{};  // LASER-D targets used (high, medium, low), else 0
  bool laser_targets_updated = false;      // a LASER-D monitor pass ran before this step
};

// Shapes rewards and computes advantages for successive steps. LASER-D's monitor set is the
// training groups themselves: targets used at step t come from the groups trained in the
// update_every steps before t (a pass runs at every step t > 0 with t % update_every == 0).
// Thread-compatible. ToJson/LoadJson carry the targets and the pending monitor groups.
class ProcessShaping {
 public:
  explicit ProcessShaping(ProcessShapingOptions options);
  // New options (e.g. a curriculum stage); LASER-D's targets and monitor groups are kept.
  void SetOptions(ProcessShapingOptions options);
  const ProcessShapingOptions& options() const { return options_; }

  // `step` is the 0-based training step, `budget` the token budget in force (DAPO's L_max).
  // Rewards: the replacing method's base (else the task reward), plus the additive methods.
  // Advantages: the group estimator (DLER: group mean-centred, then whitened over the batch's
  // tokens), then times the group's soft weight.
  ShapedStep Shape(int64_t step, int64_t budget, const std::vector<ShapingGroup>& groups);

  nlohmann::json ToJson() const;
  // Corrupt naming the key when `j` is not what ToJson wrote.
  Status LoadJson(const nlohmann::json& j);

 private:
  ProcessShapingOptions options_;
  LaserDTargets laser_d_;
  std::vector<LaserDTargets::MonitorGroup> monitor_;
};

}  // namespace chainrl::learner
