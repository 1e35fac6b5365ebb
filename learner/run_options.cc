// Run config -> learner options (see run_options.h).
#include "learner/run_options.h"

#include <unistd.h>

#include <algorithm>

#include "learner/objective.h"
#include "learner/process_shaping.h"

namespace chainrl::learner {
namespace {

bool IsSet(const Config& c, const char* key) { return c.SourceOf(key) != "default"; }

// The step schedule's milestones from curriculum.budget_milestone_steps/_tokens; InvalidArgument
// naming the keys when they are given without the step schedule, missing with it, of different
// lengths, not strictly increasing, or above rollout.max_new_tokens.
Result<std::vector<std::pair<int64_t, int64_t>>> BudgetMilestones(const Config& c,
                                                                  BudgetSchedule schedule) {
  const auto& steps = c.GetIntList("curriculum.budget_milestone_steps");
  const auto& tokens = c.GetIntList("curriculum.budget_milestone_tokens");
  const std::string keys = "curriculum.budget_milestone_steps and budget_milestone_tokens";
  if (schedule != BudgetSchedule::kStep) {
    if (!steps.empty() || !tokens.empty())
      return InvalidArgument(keys + " apply to curriculum.budget_schedule = \"step\" only, not \"" +
                             std::string(BudgetScheduleName(schedule)) + "\"");
    return std::vector<std::pair<int64_t, int64_t>>();
  }
  if (steps.empty())
    return InvalidArgument("curriculum.budget_schedule = \"step\" needs " + keys +
                           " (the steps at which the budget changes and the budgets)");
  if (steps.size() != tokens.size())
    return InvalidArgument(keys + " must have the same length (" + std::to_string(steps.size()) +
                           " steps, " + std::to_string(tokens.size()) + " budgets)");
  const int64_t max_new = c.GetInt("rollout.max_new_tokens");
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (i > 0 && steps[i] <= steps[i - 1])
      return InvalidArgument("curriculum.budget_milestone_steps must strictly increase (" +
                             std::to_string(steps[i - 1]) + " then " + std::to_string(steps[i]) +
                             ")");
    if (tokens[i] > max_new)
      return InvalidArgument("curriculum.budget_milestone_tokens[" + std::to_string(i) + "] (" +
                             std::to_string(tokens[i]) + ") exceeds rollout.max_new_tokens (" +
                             std::to_string(max_new) + ")");
    out.emplace_back(steps[i], tokens[i]);
  }
  return out;
}

}  // namespace

Result<LearnerRunOptions> LearnerOptionsFromConfig(const Config& c) {
  LearnerRunOptions o;
  o.algorithm = c.GetString("algorithm.name");
  const std::string& a = o.algorithm;
  // The schema lets only ObjectiveNames() through; a Config built otherwise is a bug.
  Result<ObjectiveRecipe> found = FindRecipe(a);
  if (!found.ok()) return Internal("algorithm.name: " + found.status().message());
  const ObjectiveRecipe& recipe = *found;
  o.family = recipe.family;
  if (o.family == ObjectiveFamily::kPreference)
    o.offline_preference = c.GetString("algorithm.preference_source") == "offline";
  // Policy-gradient family: the recipe, then every key the config sets.
  if (o.family == ObjectiveFamily::kPolicyGradient) {
    o.policy = recipe.policy;
    o.advantages.estimator = recipe.advantages;
  }
  PolicyLossOptions& p = o.policy;
  if (IsSet(c, "algorithm.clip_ratio_low"))
    p.clip_ratio_low = c.GetFloat("algorithm.clip_ratio_low");
  if (IsSet(c, "algorithm.clip_ratio_high"))
    p.clip_ratio_high = c.GetFloat("algorithm.clip_ratio_high");
  if (IsSet(c, "algorithm.dual_clip_c")) p.dual_clip_c = c.GetFloat("algorithm.dual_clip_c");
  if (IsSet(c, "algorithm.kl_coef")) p.kl_coef = c.GetFloat("algorithm.kl_coef");
  if (IsSet(c, "algorithm.kl_estimator")) {
    CHAINRL_ASSIGN_OR_RETURN(p.kl_estimator,
                             ParseKlEstimator(c.GetString("algorithm.kl_estimator")));
  }
  if (IsSet(c, "algorithm.entropy_coef")) p.entropy_coef = c.GetFloat("algorithm.entropy_coef");
  {
    RolloutCorrection& rc = p.rollout_correction;
    CHAINRL_ASSIGN_OR_RETURN(rc.is, ParseRolloutIsLevel(c.GetString("algorithm.rollout_is")));
    rc.is_cap = c.GetFloat("algorithm.rollout_is_cap");
    CHAINRL_ASSIGN_OR_RETURN(rc.mask, ParseRolloutMaskLevel(c.GetString("algorithm.rollout_mask")));
    rc.mask_low = c.GetFloat("algorithm.rollout_mask_low");
    rc.mask_high = c.GetFloat("algorithm.rollout_mask_high");
    if (rc.enabled() && o.family == ObjectiveFamily::kPreference)
      return InvalidArgument(
          "algorithm.rollout_is / algorithm.rollout_mask weight the policy-"
          "gradient loss; algorithm.name = \"" +
          a + "\" is a preference objective");
    if (rc.enabled() && c.GetString("learner.old_logprobs") != "recompute")
      return InvalidArgument(
          "algorithm.rollout_is / algorithm.rollout_mask correct the sampler's policy toward the "
          "learner's recomputed one, but learner.old_logprobs = \"" +
          c.GetString("learner.old_logprobs") +
          "\" takes the ratio against the sampler's own logprobs, so there is nothing to correct: "
          "set learner.old_logprobs = \"recompute\"");
    if (c.GetString("learner.stale_policy") == "correct" && !rc.enabled())
      return InvalidArgument(
          "learner.stale_policy = \"correct\" trains groups past learner.max_off_policy_steps "
          "with the rollout correction (docs/ALGORITHMS.md §2.4), and none is on: set "
          "algorithm.rollout_is or algorithm.rollout_mask (with learner.old_logprobs = "
          "\"recompute\")");
  }
  if (IsSet(c, "algorithm.loss_agg_mode")) {
    CHAINRL_ASSIGN_OR_RETURN(p.loss_agg_mode,
                             ParseLossAggMode(c.GetString("algorithm.loss_agg_mode")));
  }
  if (IsSet(c, "algorithm.loss_length_norm") ||
      p.loss_agg_mode == LossAggMode::kSeqMeanTokenSumNorm) {
    int64_t l = c.GetInt("algorithm.loss_length_norm");
    if (l > 0 || IsSet(c, "algorithm.loss_length_norm") || p.loss_scale_factor == 0)
      p.loss_scale_factor = static_cast<double>(l > 0 ? l : c.GetInt("rollout.max_new_tokens"));
  }
  if (o.family == ObjectiveFamily::kPolicyGradient) {
    if (Status st = ValidatePolicyLossOptions(p); !st.ok()) return st.WithPrefix("[algorithm]");
    if (recipe.check != nullptr) {
      if (Status st = recipe.check(p); !st.ok()) return st.WithPrefix("[algorithm]");
    }
  }
  if (IsSet(c, "algorithm.norm_adv_by_std"))
    o.advantages.estimator = c.GetBool("algorithm.norm_adv_by_std") ? AdvantageEstimator::kGrpo
                                                                    : AdvantageEstimator::kDrGrpo;
  o.advantages.epsilon = c.GetFloat("algorithm.adv_eps");
  o.dynamic_sampling = c.GetBool("algorithm.dynamic_sampling") ||
                       (recipe.dynamic_sampling && !IsSet(c, "algorithm.dynamic_sampling"));
  o.max_num_gen_batches = c.GetInt("algorithm.max_num_gen_batches");
  o.overlong_filtering = c.GetBool("algorithm.overlong_filtering");
  const auto& methods = c.GetStringList("length_shaping.methods");
  o.drpo = std::find(methods.begin(), methods.end(), "drpo") != methods.end();
  if (o.drpo && o.policy.rollout_correction.enabled())
    return InvalidArgument(
        "length_shaping.methods 'drpo' replaces the policy-gradient loss, which "
        "algorithm.rollout_is / algorithm.rollout_mask weight: the two cannot be combined");
  o.drpo_options.lambda = c.GetFloat("length_shaping.drpo_lambda");
  o.drpo_options.tau = c.GetFloat("length_shaping.drpo_tau");
  o.drpo_options.max_length = static_cast<double>(c.GetInt("rollout.max_new_tokens"));
  o.mastered_token_mask = c.GetBool("algorithm.mastered_token_mask");
  o.mastered.tau = c.GetFloat("algorithm.mastered_prob_threshold");
  o.mastered.sigma = c.GetFloat("algorithm.mastered_entropy_threshold");

  // Preference family.
  if (o.family == ObjectiveFamily::kPreference) {
    o.preference.loss_type = recipe.preference;
    PreferenceOptions& q = o.preference;
    q.beta = c.GetFloat("algorithm.beta");
    q.label_smoothing = c.GetFloat("algorithm.label_smoothing");
    q.reference_free = c.GetBool("algorithm.reference_free");
    q.gamma_beta_ratio = c.GetFloat("algorithm.gamma_beta_ratio");
    q.hinge = c.GetBool("algorithm.simpo_hinge");
    q.sft_weight = c.GetFloat("algorithm.sft_weight");
    if (Status st = ValidatePreferenceOptions(q); !st.ok()) return st.WithPrefix("[algorithm]");
  }

  // Optimiser.
  OptimizerOptions& opt = o.optimizer;
  opt.lr = c.GetFloat("learner.lr");
  opt.beta1 = c.GetFloat("learner.adam_beta1");
  opt.beta2 = c.GetFloat("learner.adam_beta2");
  opt.eps = c.GetFloat("learner.adam_eps");
  opt.weight_decay = c.GetFloat("learner.weight_decay");
  opt.max_grad_norm = c.GetFloat("learner.max_grad_norm");
  CHAINRL_ASSIGN_OR_RETURN(opt.lr_scheduler, ParseLrSchedule(c.GetString("learner.lr_schedule")));
  opt.lr_warmup_steps = c.GetInt("learner.warmup_steps");
  opt.total_steps = c.GetInt("run.total_steps") * c.GetInt("learner.ppo_epochs") *
                    c.GetInt("learner.mini_batches");
  // run.total_steps = 0 (the SFT warm-up alone) never builds this optimiser: any horizon passes.
  if (opt.total_steps == 0) opt.total_steps = opt.lr_warmup_steps + 1;
  opt.min_lr_ratio = c.GetFloat("learner.min_lr_ratio");
  if (Status st = ValidateOptimizerOptions(opt); !st.ok()) return st.WithPrefix("[learner]");

  // Token budget ("train long, think short").
  TokenBudgetOptions& b = o.budget;
  CHAINRL_ASSIGN_OR_RETURN(b.schedule,
                           ParseBudgetSchedule(c.GetString("curriculum.budget_schedule")));
  const int64_t max_new = c.GetInt("rollout.max_new_tokens");
  b.initial_budget =
      c.GetInt("curriculum.budget_start") > 0 ? c.GetInt("curriculum.budget_start") : max_new;
  b.final_budget =
      c.GetInt("curriculum.budget_end") > 0 ? c.GetInt("curriculum.budget_end") : b.initial_budget;
  b.decay_steps = c.GetInt("curriculum.budget_period");
  b.gamma = c.GetFloat("curriculum.budget_decay");
  b.min_budget = b.schedule == BudgetSchedule::kLinear
                     ? 1
                     : std::max<int64_t>(1, c.GetInt("curriculum.budget_end"));
  CHAINRL_ASSIGN_OR_RETURN(b.milestones, BudgetMilestones(c, b.schedule));
  if (Status st = ValidateTokenBudgetOptions(b); !st.ok()) return st.WithPrefix("[curriculum]");
  o.budget_start_step = c.GetInt("curriculum.budget_start_step");
  o.streambp = c.GetBool("learner.streambp");
  if (o.streambp && c.GetBool("lora.enabled") && c.GetFloat("lora.dropout") > 0)
    return InvalidArgument(
        "lora.dropout = " + std::to_string(c.GetFloat("lora.dropout")) +
        " with learner.streambp = true: streaming backprop recomputes each layer's forward for "
        "its gradients, and dropout would draw other values there than in the forward it "
        "differentiates; set lora.dropout = 0 or learner.streambp = false");
  o.logits_chunk_tokens = c.GetInt("learner.logits_chunk_tokens");
  o.layer_chunk_tokens = c.GetInt("learner.layer_chunk_tokens");
  o.memory_budget_bytes = c.GetInt("learner.memory_budget_bytes");
  if (o.memory_budget_bytes == 0) {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    o.memory_budget_bytes =
        pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page / 4 : int64_t{1} << 30;
  }
  if (b.initial_budget > max_new)
    return InvalidArgument("curriculum.budget_start (" + std::to_string(b.initial_budget) +
                           ") exceeds rollout.max_new_tokens (" + std::to_string(max_new) + ")");
  return o;
}

StreamBpOptions StreamBpOptionsFor(const LearnerRunOptions& o, const model::ModelConfig& model,
                                   int64_t seq_len) {
  StreamBpOptions s;
  ChunkChoice auto_choice = ChooseChunks(model, seq_len, o.memory_budget_bytes);
  s.layer_chunk_tokens =
      o.layer_chunk_tokens > 0 ? o.layer_chunk_tokens : auto_choice.layer_chunk_tokens;
  s.head.chunk_tokens = o.logits_chunk_tokens;
  return s;
}

bool StageMayOverride(const std::string& key, std::string* why) {
  auto starts = [&key](std::string_view prefix) { return key.rfind(prefix, 0) == 0; };
  static const char* const kStartUpOnly[] = {
      // The ledger, the sockets and the process's threads are set up once.
      "learner.bind", "learner.threads", "learner.max_off_policy_steps", "learner.stale_policy",
      "learner.lease_timeout_seconds", "learner.lease_max_attempts",
      // The actors build their engine and caches once, from their own copy of the config.
      "rollout.max_batch_size", "rollout.compute_entropy", "rollout.segment_min_occupancy",
      "rollout.prompt_hold_bytes", "rollout.repetition_detection", "rollout.repetition_min_repeats",
      "rollout.embedding_cache_bytes",
      // The training mode and the frozen reference are chosen once.
      "algorithm.name", "algorithm.preference_source", "algorithm.reference_free",
      "curriculum.stages"};
  for (const char* k : kStartUpOnly)
    if (key == k) {
      *why = "it is read once at start-up";
      return false;
    }
  if (key == "data.bucket_weights") return true;
  for (std::string_view prefix :
       {"algorithm.", "learner.", "curriculum.", "length_shaping.", "rollout."})
    if (starts(prefix)) return true;
  if (starts("sft.")) {
    *why = "the SFT warm-up is over before the first stage applies";
    return false;
  }
  *why = "it is read once at start-up";
  return false;
}

Status CheckCurriculumStages(const Config& config) {
  CHAINRL_ASSIGN_OR_RETURN(auto schedule, StageScheduleFromConfig(config));
  if (!schedule) return Status::Ok();
  for (const Stage& st : schedule->stages()) {
    const std::string where = "curriculum.stages '" + st.name + "'";
    for (const auto& [key, value] : st.overrides) {
      std::string why;
      if (!StageMayOverride(key, &why))
        return InvalidArgument(where + ": " + key + " cannot change in a stage: " + why);
    }
    auto next = config.WithOverrides(OverrideSets(st));
    if (!next.ok()) return next.status().WithPrefix(where);
    auto lo = LearnerOptionsFromConfig(*next);
    if (!lo.ok()) return lo.status().WithPrefix(where);
    if (auto so = ProcessShapingOptionsFromConfig(*next, lo->advantages); !so.ok())
      return so.status().WithPrefix(where);
    const size_t buckets = next->GetStringList("data.difficulty_buckets").size();
    const size_t weights = next->GetFloatList("data.bucket_weights").size();
    if (weights != 0 && weights != buckets)
      return InvalidArgument(where + ": data.bucket_weights has " + std::to_string(weights) +
                             " weights for " + std::to_string(buckets) +
                             " data.difficulty_buckets");
  }
  return Status::Ok();
}

int64_t StepBudget(const LearnerRunOptions& options, int64_t step, int64_t max_new_tokens) {
  const int64_t b = step < options.budget_start_step
                        ? options.budget.initial_budget
                        : TokenBudgetAt(options.budget, step - options.budget_start_step);
  return std::clamp<int64_t>(b, 1, max_new_tokens);
}

}  // namespace chainrl::learner
