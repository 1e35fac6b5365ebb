// One learner update on a batch of prompt groups (GRPO family: advantages, PPO epochs and
// mini-batches, micro-batches by tokens, streaming backprop or plain autograd) and one SFT update.
// Sequences are packed right-padded; the loss of a mini-batch uses global normalisers, so any
// micro-batch split gives the same gradient. Formulas: docs/ALGORITHMS.md §1.1–§1.10, §2.1–§2.4,
// §3.1–§3.5, §4.10 and §6.3.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/status.h"
#include "learner/optimizer.h"
#include "learner/policy_mismatch.h"
#include "learner/run_options.h"
#include "model/decoder.h"

namespace chainrl::learner {

class DataParallel;

// How a sampled response ended: the rollout engine's finish reason, kept from the actor to the
// loss and the shaping methods.
enum class SampleEnd : uint8_t {
  kStop = 0,        // an end-of-sequence or stop token/string
  kLength = 1,      // the model's context length or the item's max_new_tokens
  kBudget = 2,      // the item's token budget
  kRepetition = 3,  // the engine's repetition (loop) detector
  kAborted = 4,     // stopped on purpose
};
inline constexpr uint8_t kMaxSampleEnd = 4;

struct SampleData {
  std::vector<int32_t> tokens;              // the response
  std::vector<float> behaviour_logprobs;    // per response token, from the sampler
  double reward = 0;
  SampleEnd end = SampleEnd::kStop;
  bool correct = false;                     // the first reward scored >= 1 (length shaping)
  // No end of sequence: cut by the length cap or budget, or stopped in a loop that would have run
  // to the cap.
  bool truncated() const {
    return end == SampleEnd::kLength || end == SampleEnd::kBudget || end == SampleEnd::kRepetition;
  }
  // Set by the caller (the process's shaping): used as is instead of the group advantage of
  // `reward`. Either every non-empty sample of a batch carries one or none does.
  std::optional<double> advantage;
  // The policy version of each token, as runs covering every token (empty: unknown; staleness
  // and the mismatch at equal weights skip the sample).
  std::vector<VersionRun> versions;
};

struct GroupData {
  uint64_t group_id = 0;
  std::vector<int32_t> prompt;
  std::vector<SampleData> samples;
  // Precomputed prompt embeddings, spliced as the rollout engine did: every occurrence of
  // placeholder_token_id in `prompt` takes the next row of prompt_embeddings [n, hidden] (n must
  // equal the number of occurrences). Undefined = none.
  torch::Tensor prompt_embeddings = {};
  int32_t placeholder_token_id = -1;
};

struct RlStepOptions {
  double temperature = 1.0;           // the sampler's temperature (logprobs are taken at it)
  int64_t micro_batch_tokens = 8192;  // padded tokens per forward/backward
  int64_t ppo_epochs = 1;
  int64_t mini_batches = 1;
  bool recompute_old_logprobs = false;  // ratio against the learner's own pre-update logprobs
  model::DecoderModel* reference = nullptr;  // REQUIRED when policy.kl_coef > 0
  // No optimiser step: the last mini-batch's gradients stay in the parameters' .grad (gradient
  // inspection and tests); optimizer_steps stays 0.
  bool skip_optimizer_step = false;
  // Data parallelism: this rank's groups are its shard of the batch (possibly empty). Normalisers
  // are all-reduced across ranks and gradients summed before each optimiser step, so every rank
  // takes the step of one process on the whole batch (mini-batch k is the union of the ranks' k-th
  // mini-batches), and the figures returned (loss, tokens, policy statistics) are the whole
  // batch's. Not with length_shaping 'drpo' (it scores whole batches).
  DataParallel* data_parallel = nullptr;
  // The learner's policy version before this update: tokens sampled by it are at equal weights
  // (RlStepStats::mismatch). Negative: unknown, nothing measured.
  int64_t policy_version = -1;
};

struct RlStepStats {
  double loss = 0;          // summed over mini-batches of the last epoch
  double grad_norm = 0;     // of the last optimiser step
  double lr = 0;
  int64_t optimizer_steps = 0;
  int64_t skipped_steps = 0;  // non-finite gradients
  int64_t sequences = 0;
  int64_t response_tokens = 0;
  PolicyLossStats policy;   // merged over the last epoch
  int64_t mastered_masked_tokens = 0;  // tokens DMMPT left out of the loss (mastered_token_mask)
  // Train/inference mismatch at equal weights and per-token staleness (policy_mismatch.h), over
  // the whole batch: the learner's logprobs are its recomputation ("recompute") or, with the
  // behaviour's as ℓ_old, those of the first mini-batch's first epoch, the only ones taken
  // before an update (its rows are measured; staleness counts every row).
  PolicyMismatch mismatch;
};

// Advantages from each group's rewards (or the samples' own), then ppo_epochs x mini_batches
// optimiser steps. With options.mastered_token_mask, UloRL's DMMPT drops mastered tokens of
// correct samples from the loss (not from its normalisers): p from ℓ_old (the behaviour or
// recomputed logprobs), the mean entropy from a no-grad pass of the policy before the update.
Result<RlStepStats> RunPolicyUpdate(model::DecoderModel& model, Optimizer& optimizer,
                                    const std::vector<GroupData>& groups,
                                    const LearnerRunOptions& options, const RlStepOptions& step);

// One preference pair (DPO family): a prompt, the chosen response and M ≥ 1 rejected ones
// (M = 1 but for LOGO; every pair of a batch has the same M).
struct PreferencePairData {
  std::vector<int32_t> prompt;
  std::vector<int32_t> chosen;
  std::vector<std::vector<int32_t>> rejected;
};

// Online DPO family: per group, the sample with the best reward against the `num_rejected` worst
// (SelectGroupPair, preference.h; LOGO takes 2). A group gives no pair when its rewards are all
// equal, it has no more than num_rejected samples, or the chosen or a rejected response is empty.
std::vector<PreferencePairData> OnlinePreferencePairs(const std::vector<GroupData>& groups,
                                                      int64_t num_rejected);

struct PreferenceStepStats {
  double loss = 0;             // PreferenceLoss of the batch before the update
  double reward_accuracy = 0;  // fraction of pairs whose implicit chosen reward is higher
  double reward_margin = 0;    // mean implicit reward margin
  double grad_norm = 0;
  double lr = 0;
  int64_t pairs = 0;
  int64_t response_tokens = 0;
};

// One optimiser step on options.preference's loss (preference.h) in two passes, so streaming
// backprop applies: a no-grad pass gives each sequence's log π total (and the reference's when
// DPO/IPO need it), PreferenceSequenceGrads turns them into dL/d(total), and a chunked backward of
// Σ_seq coefficient·Σ_t ℓ gives exactly the gradient of the direct loss. InvalidArgument for an
// empty prompt or response, unequal M, or DPO/IPO without step.reference (unless reference_free).
// With step.data_parallel, `pairs` is this rank's shard (possibly empty): the loss is the mean over
// every rank's pairs, gradients are summed, and the figures returned are the whole batch's.
Result<PreferenceStepStats> RunPreferenceUpdate(model::DecoderModel& model, Optimizer& optimizer,
                                                const std::vector<PreferencePairData>& pairs,
                                                const LearnerRunOptions& options,
                                                const RlStepOptions& step);

struct SftExample {
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;  // the target, end-of-turn token included
};

// One SFT optimiser step: mean token cross-entropy over the responses. Returns the loss.
// skip_optimizer_step: leave the gradients in .grad instead of stepping (as in RlStepOptions).
// data_parallel: `batch` is this rank's shard; the mean is over every rank's tokens, gradients are
// summed across ranks, and the loss returned is the whole batch's (a shard may be empty).
Result<double> RunSftUpdate(model::DecoderModel& model, Optimizer& optimizer,
                            const std::vector<SftExample>& batch, const LearnerRunOptions& options,
                            int64_t micro_batch_tokens, bool skip_optimizer_step = false,
                            DataParallel* data_parallel = nullptr);

}  // namespace chainrl::learner
