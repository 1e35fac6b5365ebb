// The seam between the policy-update driver (RunPolicyUpdate, learner/rl_step.h) and an RL
// objective. The driver owns everything an objective shares: flattening groups, advantages,
// packing and micro-batches, old and reference logprobs, sample filters (overlong filtering,
// DMMPT), the mini-batch's global normalisers, streaming backprop, data-parallel reductions and
// the optimiser step. An objective owns its loss: an optional preparation over whole sequences
// (GSPO's sequence ratio, DRPO's sequence scores) and each chunk's share of the loss, additive
// over chunks so that streaming backprop stays exact (docs/ALGORITHMS.md §1, §6.3).
//
// Adding an objective: one file that defines `ObjectiveRecipe NameRecipe()` (its published
// settings and, for a new loss, a PolicyObjective subclass) and one line in
// learner/objective_list.h. See learner/cispo.cc.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "learner/advantages.h"
#include "learner/objective_list.h"
#include "learner/objectives.h"
#include "learner/preference.h"

namespace chainrl::learner {

struct LearnerRunOptions;

// What an objective may know of each row (sampled response) of a mini-batch, in row order.
struct ObjectiveRow {
  bool correct = false;  // the first reward scored >= 1 (SampleData::correct)
  int64_t group = 0;     // index of its group in the batch
};

// One micro-batch of the preparation pass: the current policy's logprobs without gradient.
struct SequencePassPart {
  int64_t first_row = 0;       // its first row within the mini-batch
  torch::Tensor logprobs;      // [b,T] ℓ of the policy before this mini-batch's step (no grad)
  torch::Tensor old_logprobs;  // [b,T] ℓ_old (behaviour or recomputed, as the ratio uses)
  torch::Tensor mask;          // [b,T] the response mask (before sample filters)
};
using SequencePassVisitor = std::function<void(const SequencePassPart&)>;
// Runs the policy over every row of the mini-batch, one micro-batch at a time, calling the visitor
// on each. It costs a forward pass: call it only when the objective needs whole sequences.
using SequencePass = std::function<void(const SequencePassVisitor&)>;

// One chunk of token positions [t0, t1) of one micro-batch.
struct ObjectiveChunk {
  TokenLossInputs tokens;             // its tensors; tokens.mask is after the sample filters
  torch::Tensor response_mask;        // [b, t1 − t0] before the sample filters
  const Normalisers* norm = nullptr;  // the mini-batch's normalisers, rows of this micro-batch
  int64_t first_row = 0;              // the micro-batch's first row within the mini-batch
};

// One objective's loss. Not thread-safe; one instance serves one RunPolicyUpdate call.
class PolicyObjective {
 public:
  virtual ~PolicyObjective() = default;
  // Whether overlong filtering and the DMMPT mask shape the mask the loss sees (false: the
  // objective scores whole responses and takes response_mask).
  virtual bool applies_sample_filters() const { return true; }
  // Whether ChunkLoss needs tokens.entropy (the full-vocabulary entropy of each position).
  virtual bool needs_entropy() const { return false; }
  // Called once per mini-batch and epoch, before its chunks: `rows` describes its rows, `pass`
  // runs the policy over them. Returns the loss the step reports for this mini-batch when the
  // chunks' sum is not that loss (reports_chunk_loss() false), else 0. Errors abort the step.
  virtual Result<double> Prepare(const std::vector<ObjectiveRow>& rows, const SequencePass& pass) {
    (void)rows;
    (void)pass;
    return 0.0;
  }
  // Whether the sum of ChunkLoss values is the loss reported (and `stats` are the step's).
  virtual bool reports_chunk_loss() const { return true; }
  // The chunk's share of the mini-batch loss, with gradient through chunk.tokens.logprobs; the
  // chunk's additive statistics go to `stats`.
  virtual torch::Tensor ChunkLoss(const ObjectiveChunk& chunk, PolicyLossStats* stats) = 0;
};

using PolicyObjectiveFactory = std::unique_ptr<PolicyObjective> (*)(const LearnerRunOptions&);

// What algorithm.name selects: the published settings as a starting point, which every key the
// config sets overrides (docs/ALGORITHMS.md §1.9), and the loss.
struct ObjectiveRecipe {
  ObjectiveFamily family = ObjectiveFamily::kPolicyGradient;
  // Policy gradient.
  PolicyLossOptions policy;
  AdvantageEstimator advantages = AdvantageEstimator::kGrpo;
  bool dynamic_sampling = false;  // algorithm.dynamic_sampling's default for this recipe
  PolicyObjectiveFactory make = nullptr;
  // Refuses settings the loss does not support, once the config's keys have overridden the
  // recipe: InvalidArgument naming the key. Null: every valid PolicyLossOptions is supported.
  Status (*check)(const PolicyLossOptions& options) = nullptr;
  // Preference.
  PreferenceLossType preference = PreferenceLossType::kDpo;
};

// The recipe of `algorithm`; InvalidArgument listing ObjectiveNames() for an unknown name.
Result<ObjectiveRecipe> FindRecipe(std::string_view algorithm);
// The policy-gradient settings of a recipe; InvalidArgument for an unknown or preference name.
Result<PolicyLossOptions> PolicyLossPreset(std::string_view algorithm);

// The objective a policy-gradient step runs: DRPO's when length_shaping.methods holds "drpo"
// (its loss replaces the recipe's, docs/ALGORITHMS.md §4.10), else the recipe's.
// InvalidArgument for a preference algorithm.
Result<std::unique_ptr<PolicyObjective>> MakePolicyObjective(const LearnerRunOptions& options);

// The clipped-ratio surrogate of PPO/GRPO/DAPO/Dr.GRPO and GSPO's sequence ratio (PolicyLoss);
// the objective of every recipe but CISPO's.
std::unique_ptr<PolicyObjective> MakeClippedSurrogate(const LearnerRunOptions& options);

}  // namespace chainrl::learner
