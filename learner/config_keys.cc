// The keys of the learner: [learner], [algorithm], [length_shaping], [curriculum] with
// [[curriculum.stages]], and the learner process's [checkpoint], [distributed] and [sft].
// algorithm.name's values and their documentation come from learner/objective_list.h.
#include "learner/config_keys.h"

#include <string>
#include <vector>

#include "core/config_keys.h"
#include "learner/objective_list.h"

namespace chainrl {
namespace {

using Strings = std::vector<std::string>;

// algorithm.name's documentation: the objective list's phrases, then what the recipes share.
std::string AlgorithmDoc() {
  return "The objective and its published settings (learner/objective_list.h). " +
         learner::ObjectiveChoicesDoc() +
         " [algorithm] keys set in the file override the recipe. dler and campo set the loss "
         "only: their length rewards are length_shaping.methods \"dler\" and "
         "\"campo_repetition\". sft is refused: an SFT-only run is not implemented; supervised "
         "fine-tuning is the [sft] warm-up before RL.";
}

}  // namespace

void AddLearnerKeys(ConfigSchema* schema) {
  AddSection(schema, "learner",
             "The learner process: optimiser, batching, staleness, streaming backprop.");
  AddSection(schema, "algorithm",
             "The objective and its coefficients, named as peer frameworks name them.");
  AddSection(schema, "length_shaping", "Length rewards and penalties added to the task reward.");
  AddSection(schema, "curriculum",
             "Token-budget schedules, difficulty filtering and weighting, and multi-stage runs.");
  auto& k = schema->keys;
  k.push_back(Checked(Str("learner.bind", "ipc://",
                          "Endpoint the learner binds; `ipc://` alone means a socket in the run "
                          "directory. Loopback unless set otherwise."),
                      CheckEndpoint));
  k.push_back(Int("learner.threads", 0, 0, 1024,
                  "Intra-op (LibTorch and OpenBLAS) compute threads of each learner rank; 0: an "
                  "equal share of the physical cores this host allows (affinity and cgroup quota) "
                  "among the compute processes that run at once on it: the learner ranks and "
                  "actors `chainrl train` starts, or torchrun's LOCAL_WORLD_SIZE ranks. The first "
                  "log line says what it chose and why. CHAINRL_THREADS overrides it."));
  k.push_back(Float("learner.lr", 1e-6, 0.0, 1.0, "Peak learning rate (AdamW).", true));
  k.push_back(Float("learner.weight_decay", 0.01, 0.0, 10.0,
                    "Decoupled weight decay; norms and biases are never decayed."));
  k.push_back(Float("learner.adam_beta1", 0.9, 0.0, 1.0, "AdamW beta1."));
  k.push_back(Float("learner.adam_beta2", 0.999, 0.0, 1.0, "AdamW beta2."));
  k.push_back(Float("learner.adam_eps", 1e-8, 0.0, 1.0, "AdamW epsilon.", true));
  k.push_back(Str("learner.lr_schedule", "constant", "Learning-rate schedule after warm-up.",
                  {"constant", "cosine"}));
  k.push_back(Int("learner.warmup_steps", 0, 0, std::nullopt, "Linear warm-up steps."));
  k.push_back(Float("learner.min_lr_ratio", 0.0, 0.0, 1.0, "Cosine floor as a fraction of lr."));
  k.push_back(Float("learner.max_grad_norm", 1.0, 0.0, std::nullopt,
                    "Clip the global gradient norm; 0 disables."));
  k.push_back(Int("learner.ppo_epochs", 1, 1, 1024, "Passes over each rollout batch."));
  k.push_back(Int("learner.mini_batches", 1, 1, 1 << 20, "Optimiser steps per pass."));
  k.push_back(Int("learner.micro_batch_tokens", 8192, 1, std::nullopt,
                  "Tokens per forward/backward (gradient accumulation beyond it)."));
  k.push_back(Int("learner.max_off_policy_steps", 1, 0, 1 << 20,
                  "Staleness bound: policy versions the oldest token of a group may lag the "
                  "learner, checked when its result arrives (over every segment of it) and again "
                  "when it is about to be trained."));
  k.push_back(
      Str("learner.stale_policy", "drop",
          "What happens to a group older than the bound: drop discards it (its segments too) and "
          "the group is generated again; flag trains on it like any other, counted; correct "
          "trains on it with the rollout correction of algorithm.rollout_is / rollout_mask, "
          "which must be on (docs/ALGORITHMS.md §2.4, §7.1).",
          {"drop", "flag", "correct"}));
  k.push_back(Float("learner.lease_timeout_seconds", 1800.0, 0.0, 1e8,
                    "A lease of prompt groups not completed within this time is revoked and its "
                    "groups handed out again, even if its actor is alive.",
                    true));
  k.push_back(Int("learner.lease_max_attempts", 5, 0, 1 << 20,
                  "Revoked leases after which a prompt group is declared lost and not handed out "
                  "again (a prompt that kills every actor must not stall the run); 0 retries "
                  "forever."));
  k.push_back(Str("learner.old_logprobs", "behaviour",
                  "Importance-ratio denominator: stored behaviour logprobs, or recomputed by the "
                  "learner for the whole sample (segment rollouts).",
                  {"behaviour", "recompute"}));
  k.push_back(
      Bool("learner.streambp", true,
           "Streaming backprop: exact gradients with activation memory bounded by a chunk."));
  k.push_back(Int("learner.logits_chunk_tokens", 512, 1, std::nullopt,
                  "Tokens per chunk of the LM head: the loss's forward and backward, and the "
                  "no-gradient passes (recomputed old logprobs, reference logprobs, DMMPT "
                  "entropies)."));
  k.push_back(
      Int("learner.layer_chunk_tokens", 0, 0, std::nullopt,
          "Tokens per chunk of the layer-wise backward; 0 chooses from memory_budget_bytes."));
  k.push_back(Int("learner.memory_budget_bytes", 0, 0, std::nullopt,
                  "Activation memory budget for automatic chunk sizes; 0 is 1/4 of free memory."));

  // algorithm
  k.push_back(Refusing(
      Str("algorithm.name", "grpo", AlgorithmDoc(), learner::ObjectiveNames()), std::string("sft"),
      "an SFT-only run is not implemented; supervised fine-tuning runs as the warm-up before "
      "RL (sft.steps)"));
  k.push_back(Str("algorithm.loss_agg_mode", "seq-mean-token-mean", "Loss aggregation.",
                  {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"}));
  k.push_back(Float("algorithm.clip_ratio_low", 0.2, 0.0, 1.0, "PPO clip epsilon below 1."));
  k.push_back(Float("algorithm.clip_ratio_high", 0.2, 0.0, 100.0,
                    "PPO clip epsilon above 1 (DAPO clip-higher: 0.28)."));
  k.push_back(Float("algorithm.dual_clip_c", 0.0, 0.0, std::nullopt,
                    "Dual-clip bound for negative advantages (> 1 enables; 3 or 10 typical)."));
  k.push_back(Float("algorithm.kl_coef", 0.0, 0.0, std::nullopt,
                    "Coefficient of the KL to the reference model; 0 loads no reference."));
  k.push_back(Str("algorithm.kl_estimator", "k3", "KL estimator.", {"k3", "k3+"}));
  k.push_back(Str("algorithm.rollout_is", "none",
                  "Rollout correction (docs/ALGORITHMS.md §2.4): truncated importance sampling of "
                  "the learner's recomputed policy against the sampler's, per token "
                  "(min(rho_t, cap): TIS; with learner.old_logprobs = recompute this is decoupled "
                  "PPO) or per sequence (min(prod rho_t, cap) for all its tokens). Needs "
                  "learner.old_logprobs = \"recompute\".",
                  {"none", "token", "sequence"}));
  k.push_back(Float("algorithm.rollout_is_cap", 2.0, 1.0, std::nullopt,
                    "Cap C of algorithm.rollout_is's weight."));
  k.push_back(Str("algorithm.rollout_mask", "none",
                  "Rollout correction (docs/ALGORITHMS.md §2.4): drop the policy-gradient term of "
                  "tokens whose ratio rho_t (token: IcePop), or of whole sequences whose ratio "
                  "product (sequence) or geometric mean (geometric) lies outside "
                  "[rollout_mask_low, rollout_mask_high]. Needs learner.old_logprobs = "
                  "\"recompute\".",
                  {"none", "token", "sequence", "geometric"}));
  k.push_back(Float("algorithm.rollout_mask_low", 0.5, 0.0, 1.0,
                    "Lower bound of the ratio algorithm.rollout_mask keeps."));
  k.push_back(Float("algorithm.rollout_mask_high", 2.0, 1.0, 1e12,
                    "Upper bound of the ratio algorithm.rollout_mask keeps."));
  k.push_back(Float("algorithm.entropy_coef", 0.0, 0.0, std::nullopt, "Entropy bonus."));
  k.push_back(Bool("algorithm.norm_adv_by_std", true,
                   "Divide group advantages by their std (false for Dr.GRPO)."));
  k.push_back(Float("algorithm.adv_eps", 1e-6, 0.0, 1.0, "Epsilon added to the group std."));
  k.push_back(Int("algorithm.loss_length_norm", 0, 0, std::nullopt,
                  "Constant L_max of seq-mean-token-sum-norm; 0 uses rollout.max_new_tokens."));
  k.push_back(Bool("algorithm.dynamic_sampling", false,
                   "DAPO: over-generate until the batch holds only informative groups."));
  k.push_back(Int("algorithm.max_num_gen_batches", 10, 0, std::nullopt,
                  "DAPO: after this many generation rounds without a full batch, a step trains "
                  "on the groups it has (0: unlimited)."));
  k.push_back(Bool("algorithm.overlong_filtering", false, "Mask the loss of truncated samples."));
  k.push_back(Bool("algorithm.mastered_token_mask", false,
                   "UloRL DMMPT: mask mastered positive tokens against entropy collapse."));
  k.push_back(Float("algorithm.mastered_prob_threshold", 0.99, 0.0, 1.0, "DMMPT tau."));
  k.push_back(
      Float("algorithm.mastered_entropy_threshold", 0.2, 0.0, std::nullopt, "DMMPT sigma."));
  k.push_back(Float("algorithm.beta", 0.1, 0.0, std::nullopt,
                    "DPO/IPO beta; SimPO/LOGO reward scale.", true));
  k.push_back(Float("algorithm.label_smoothing", 0.0, 0.0, 0.5, "cDPO/SimPO label smoothing."));
  k.push_back(Bool("algorithm.reference_free", false, "DPO with a uniform reference."));
  k.push_back(
      Float("algorithm.gamma_beta_ratio", 0.25, 0.0, std::nullopt, "SimPO/LOGO margin ratio."));
  k.push_back(Bool("algorithm.simpo_hinge", false, "SimPO hinge loss instead of sigmoid."));
  k.push_back(Float("algorithm.sft_weight", 0.0, 0.0, std::nullopt,
                    "Weight of the chosen-response cross-entropy (LOGO lambda)."));
  k.push_back(Str("algorithm.preference_source", "offline",
                  "Preference pairs from a JSONL file or from each group's best/worst rollouts.",
                  {"offline", "online"}));

  // length shaping
  k.push_back(StrList("length_shaping.methods", {},
                      "Length rewards/penalties: at most one of dler, laser, laser_d, laser_de, "
                      "grpo_lambda sets the base reward; kimi, dapo_overlong, campo_repetition add "
                      "to it.",
                      {"kimi", "dapo_overlong", "dler", "laser", "laser_d", "laser_de",
                       "grpo_lambda", "drpo", "campo_repetition"}));
  k.push_back(
      Float("length_shaping.kimi_weight", 0.4, 0.0, std::nullopt, "Kimi length reward weight."));
  k.push_back(Int("length_shaping.overlong_buffer_len", 128, 0, std::nullopt,
                  "DAPO soft overlong punishment: L_cache."));
  k.push_back(Float("length_shaping.overlong_penalty_factor", 1.0, 0.0, std::nullopt,
                    "DAPO soft overlong punishment factor."));
  k.push_back(Float("length_shaping.laser_alpha", 0.5, 0.0, std::nullopt, "LASER reward alpha."));
  k.push_back(Int("length_shaping.laser_target_tokens", 256, 1, std::nullopt,
                  "LASER target length L_T (LASER-D's initial targets)."));
  k.push_back(Str("length_shaping.laser_mode", "reward", "LASER variant.",
                  {"reward", "penalty", "hybrid"}));
  k.push_back(Int("length_shaping.laser_d_update_every", 20, 1, std::nullopt,
                  "LASER-D/DE: steps between target updates (thresholds: multiples of "
                  "rollout.max_new_tokens/16)."));
  k.push_back(Float("length_shaping.grpo_lambda_fraction", 0.2, 0.0, 1.0,
                    "GRPO-lambda: fraction of groups (highest correctness) that are penalised."));
  k.push_back(Float("length_shaping.drpo_lambda", 0.1, 0.0, std::nullopt,
                    "DRPO length temperature.", true));
  k.push_back(Float("length_shaping.drpo_tau", 10.0, 0.0, std::nullopt, "DRPO tau.", true));
  k.push_back(Float("length_shaping.repetition_penalty", 0.1, 0.0, std::nullopt,
                    "CAMPO penalty for looping responses that hit the length limit."));

  // curriculum
  k.push_back(Str("curriculum.budget_schedule", "constant",
                  "Token budget per step (\"train long, think short\"): constant; linear from "
                  "budget_start to budget_end over budget_period steps; exponential, "
                  "budget_start times budget_decay every budget_period steps; step, the budget "
                  "of the last of budget_milestone_steps reached (budget_start before the "
                  "first). Steps count from budget_start_step.",
                  {"constant", "linear", "exponential", "step"}));
  k.push_back(Int("curriculum.budget_start", 0, 0, std::nullopt,
                  "Budget at step 0; 0 uses rollout.max_new_tokens."));
  k.push_back(Int("curriculum.budget_end", 0, 0, std::nullopt,
                  "Final budget (linear); floor (exponential, step)."));
  k.push_back(
      Float("curriculum.budget_decay", 0.7, 0.0, 1.0, "Exponential decay factor gamma.", true));
  k.push_back(Int("curriculum.budget_period", 10, 1, std::nullopt,
                  "Steps per decay (exponential) or to reach the end (linear)."));
  k.push_back(IntList("curriculum.budget_milestone_steps", {}, 0, std::nullopt,
                      "Step schedule: the steps (counted from budget_start_step, strictly "
                      "increasing) at which the budget changes. Required by, and only allowed "
                      "with, budget_schedule = \"step\"."));
  k.push_back(IntList("curriculum.budget_milestone_tokens", {}, 1, std::nullopt,
                      "Step schedule: the budget from each of budget_milestone_steps on, same "
                      "order and length; each at most rollout.max_new_tokens."));
  k.push_back(Int("curriculum.budget_start_step", 0, 0, std::nullopt,
                  "Step at which the schedule starts (the budget is budget_start before it)."));
  k.push_back(Bool("curriculum.filter_uniform_groups", false,
                   "Drop groups whose samples are all correct or all wrong."));
  k.push_back(Str("curriculum.soft_weighting", "none",
                  "VL-Cogito difficulty soft weighting of advantages.",
                  {"none", "easy", "medium", "hard"}));

  ArraySpec stages;
  stages.name = "curriculum.stages";
  stages.doc =
      "Multi-stage runs: from `start_step` on, the stage's `overrides` (dotted keys, any key of "
      "this schema) apply. Stages are sorted by start_step.";
  stages.keys = {
      Required(Str("name", "", "Name of the stage (metrics label).")),
      Required(Int("start_step", 0, 0, std::nullopt, "First step of the stage.")),
  };
  KeySpec over;
  over.key = "overrides";
  over.type = ValueType::kOverrides;
  over.default_value = std::vector<std::string>();
  over.doc = "Inline table of dotted keys and values, e.g. { \"rollout.max_new_tokens\" = 256 }.";
  stages.keys.push_back(over);
  schema->arrays.push_back(stages);
}

void AddLearnerProcessKeys(ConfigSchema* schema) {
  AddSection(schema, "checkpoint", "Checkpoints: where, how often, how many are kept, resume.");
  AddSection(
      schema, "distributed",
      "Data parallelism of the learner over c10d process groups. `chainrl train` starts "
      "`learner_ranks` learner processes on this host; torchrun, Slurm or Kubernetes can start "
      "`chainrl learner` ranks themselves (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Rank 0 "
      "talks to the actors, checkpoints and publishes weights, and splits every update's batch "
      "across the ranks; gradients are summed, so each step equals one process's on the whole "
      "batch. Every rank must be able to read checkpoint.dir to resume; under a launcher that "
      "restarts failed groups (torchrun --max-restarts), set checkpoint.resume = \"latest\" and a "
      "fixed run.run_dir, so that a restarted rank 0 finds the checkpoints.");
  AddSection(
      schema, "sft",
      "Supervised warm-up before RL: cross-entropy on the reference solutions of the training "
      "data (built-in tasks carry them; JSONL data in the answer field), run by the learner.");
  auto& k = schema->keys;
  // checkpoint
  k.push_back(Int("checkpoint.every", 0, 0, std::nullopt,
                  "Checkpoint every N steps (0: only at the end)."));
  k.push_back(Int("checkpoint.keep", 2, 1, 1000, "Checkpoints kept (oldest deleted first)."));
  k.push_back(Str("checkpoint.dir", "", "Checkpoint directory; empty means RUN_DIR/checkpoints."));
  k.push_back(Str("checkpoint.resume", "",
                  "Resume from this checkpoint directory, or \"latest\" in checkpoint.dir."));
  k.push_back(Bool("checkpoint.export_hf", true, "Export a Hugging Face directory at the end."));

  // distributed
  k.push_back(Str("distributed.backend", "auto",
                  "c10d backend of the data-parallel learner (read only when it has more than "
                  "one rank). auto is gloo when run.device is cpu and nccl when it is cuda or "
                  "cuda:N. nccl, named or resolved from auto, is refused with an error naming "
                  "this key: this build has no NCCL process group (Debian's LibTorch has no "
                  "NCCL, and chainrl's data parallelism creates Gloo groups only); set gloo.",
                  {"auto", "gloo", "nccl"}));
  k.push_back(Float("distributed.timeout_seconds", 600.0, 1.0, std::nullopt,
                    "Rendezvous and collective timeout (ranks waiting for rank 0 between steps "
                    "wait without one)."));
  k.push_back(Int("distributed.learner_ranks", 1, 1, 256,
                  "Learner processes `chainrl train` starts as one data-parallel learner."));

  // sft
  k.push_back(Int("sft.steps", 0, 0, std::nullopt,
                  "Optimiser steps of supervised warm-up before RL; 0 skips it."));
  k.push_back(Int("sft.batch_size", 32, 1, 1 << 20, "Examples per warm-up step."));
  k.push_back(Float("sft.lr", 1e-3, 0.0, 1.0, "Peak learning rate of the warm-up (AdamW).", true));
  k.push_back(Int("sft.warmup_steps", 0, 0, std::nullopt, "Linear warm-up steps of the warm-up."));
}

}  // namespace chainrl
