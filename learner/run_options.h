// The learner's options from a validated run config: the [algorithm], [learner] and [curriculum]
// keys mapped one to one onto the option structs of the objectives, advantages, optimiser and
// token-budget schedule. `algorithm.name` selects a published recipe (FindRecipe,
// learner/objective.h); keys the config sets explicitly override the recipe, keys left at their
// defaults do not (docs/ALGORITHMS.md §1.9; the budget keys: §5.1).
#pragma once

#include <string>

#include "core/config.h"
#include "core/status.h"
#include "learner/advantages.h"
#include "learner/config_keys.h"
#include "learner/curriculum.h"
#include "learner/objective_list.h"
#include "learner/objectives.h"
#include "learner/optimizer.h"
#include "learner/preference.h"
#include "learner/streambp.h"

namespace chainrl::learner {

struct LearnerRunOptions {
  std::string algorithm = "grpo";  // algorithm.name (learner/objective_list.h)
  ObjectiveFamily family = ObjectiveFamily::kPolicyGradient;
  // The DPO family on prompt/chosen/rejected data (algorithm.preference_source = "offline"): the
  // learner trains alone, with no actors and no reward.
  bool offline_preference = false;
  PolicyLossOptions policy;
  GroupAdvantageOptions advantages;
  PreferenceOptions preference;
  OptimizerOptions optimizer;
  TokenBudgetOptions budget;
  int64_t budget_start_step = 0;  // the schedule's step 0 is this training step
  bool dynamic_sampling = false;
  int64_t max_num_gen_batches = 10;
  bool overlong_filtering = false;
  // DRPO (length_shaping.methods "drpo"): its loss replaces the policy loss (preference.h);
  // it needs learner.mini_batches = 1, and overlong_filtering and the DMMPT mask do not apply.
  bool drpo = false;
  DrpoOptions drpo_options;
  // UloRL DMMPT (algorithm.mastered_token_mask, mastered_prob_threshold, ..._entropy_threshold).
  bool mastered_token_mask = false;
  MasteredTokenMaskOptions mastered;
  // Streaming backprop ([learner] streambp, logits_chunk_tokens, layer_chunk_tokens,
  // memory_budget_bytes; 0 budget = a quarter of the memory available at start-up).
  bool streambp = true;
  int64_t logits_chunk_tokens = 512;  // also the chunk of every no-gradient pass over the LM head
  int64_t layer_chunk_tokens = 0;  // 0: chosen per batch from the budget
  int64_t memory_budget_bytes = 0;
};

// The StreamBP chunking for sequences of `seq_len` tokens: explicit sizes as configured, the
// layer chunk chosen from the memory budget when layer_chunk_tokens is 0.
StreamBpOptions StreamBpOptionsFor(const LearnerRunOptions& options,
                                   const model::ModelConfig& model, int64_t seq_len);

// InvalidArgument naming the key when a combination is invalid (e.g. a recipe's option out of
// range after overrides).
Result<LearnerRunOptions> LearnerOptionsFromConfig(const Config& config);

// The token budget of RL step `step` (docs/ALGORITHMS.md §5.1): budget.initial_budget before
// budget_start_step, the schedule from there on, clamped to [1, max_new_tokens].
int64_t StepBudget(const LearnerRunOptions& options, int64_t step, int64_t max_new_tokens);

// Whether a curriculum stage may override `key`: the keys the learner reads again at every step
// (the objective, optimiser, shaping, budget and sampling keys, which travel with the work) may
// change; keys read once at start-up by the learner or the actors (model, data sources, ports,
// threads, the actors' engine, the ledger, run length...) may not. On false, `why` says why.
bool StageMayOverride(const std::string& key, std::string* why);
// Every [[curriculum.stages]] entry of `config`: each override names a key a stage may change,
// and the config with the stage's overrides gives valid learner options. InvalidArgument naming
// the stage and the key otherwise, so a stage that would be ignored or fail is refused before
// the run starts.
Status CheckCurriculumStages(const Config& config);

}  // namespace chainrl::learner
