// The policy every learner rank holds (see policy_trainer.h).
#include "learner/policy_trainer.h"

#include <algorithm>
#include <cstdlib>

#include <torch/torch.h>

#include "core/cpu_budget.h"
#include "core/log.h"
#include "core/metrics.h"
#include "learner/rank_messages.h"
#include "model/lora_io.h"
#include "model/model_io.h"

namespace chainrl::learner {

Result<std::unique_ptr<PolicyTrainer>> PolicyTrainer::Create(const Config& base, DataParallel* dp) {
  std::unique_ptr<PolicyTrainer> t(new PolicyTrainer(base, dp));
  CHAINRL_ASSIGN_OR_RETURN(t->lo_, LearnerOptionsFromConfig(t->c_));
  // Every stage is checked now: a key a stage cannot change is refused, not ignored.
  CHAINRL_RETURN_IF_ERROR(CheckCurriculumStages(base));
  // Shaping and soft weighting per step (process_shaping.h); DRPO, a loss, is refused there.
  CHAINRL_ASSIGN_OR_RETURN(ProcessShapingOptions so,
                           ProcessShapingOptionsFromConfig(t->c_, t->lo_.advantages));
  t->shaping_ = std::make_unique<ProcessShaping>(std::move(so));
  // (lora.dropout with streaming backprop is refused by LearnerOptionsFromConfig, in every stage.)
  CHAINRL_ASSIGN_OR_RETURN(t->lora_, model::LoraOptionsFromConfig(base));
  return t;
}

void PolicyTrainer::SetThreads(const Config& c, bool several_ranks, bool with_actors) {
  // 0: a share of this host's cores among the compute processes that run at once: the learner
  // ranks on this host (torchrun's LOCAL_WORLD_SIZE) or, under `chainrl train`, ranks and actors.
  int local = 1;
  if (const char* v = std::getenv("LOCAL_WORLD_SIZE"); v != nullptr && several_ranks)
    local = static_cast<int>(std::clamp<long long>(std::strtoll(v, nullptr, 10), 1, 1 << 20));
  const ThreadChoice choice =
      ChooseThreads("learner.threads", c.GetInt("learner.threads"), local, with_actors);
  at::set_num_threads(choice.threads);
  CHAINRL_LOG(kInfo) << "compute threads" << (with_actors ? "" : " until the actors start") << ": "
                     << choice.threads << " (" << choice.why << ")";
}

Status PolicyTrainer::LoadPolicy() {
  CHAINRL_ASSIGN_OR_RETURN(auto mo, model::ModelOptionsFromConfig(c_, model::ModelRole::kTraining));
  CHAINRL_RETURN_IF_ERROR(model::RequireCpuProcess(mo, c_));
  // A LoRA base that is never updated needs no master copy: lora.base_dtype = "compute" holds it
  // in the compute dtype (the adapters, the trained part, stay float32).
  if (lora_ && c_.GetString("lora.base_dtype") == "compute") mo.set_dtype(mo.ComputeDtype());
  CHAINRL_ASSIGN_OR_RETURN(model_, model::LoadModel(c_.GetString("model.path"), mo));
  CHAINRL_RETURN_IF_ERROR(model::CheckFiniteParameters(*model_, c_.GetString("model.path")));
  CHAINRL_LOG(kInfo) << "policy " << c_.GetString("model.path") << ": "
                     << model::TorchDtypeName(mo.dtype) << " weights, "
                     << model::TorchDtypeName(mo.ComputeDtype()) << " compute on "
                     << mo.device.str();
  if (lora_) {
    // Adapters in float32 (the optimiser's master copy whatever model.dtype is); the base is
    // frozen: no gradient, no optimiser state, never published again.
    CHAINRL_RETURN_IF_ERROR(
        model_->AttachLora(*lora_, static_cast<uint64_t>(c_.GetInt("run.seed")), torch::kFloat32));
    int64_t base = 0, adapters = 0;
    for (auto& p : model_->parameters()) {
      p.requires_grad_(false);
      base += p.numel();
    }
    for (auto& [name, t] : model_->LoraParameters()) adapters += t.numel();
    CHAINRL_LOG(kInfo) << "LoRA rank " << lora_->rank << " on " << lora_->targets.size()
                       << " projection(s) per layer: " << adapters << " trainable parameters, "
                       << base << " frozen ("
                       << 100.0 * static_cast<double>(adapters) / static_cast<double>(base) << "%)";
  }
  return Status::Ok();
}

Result<std::unique_ptr<Optimizer>> PolicyTrainer::MakeSftOptimizer() const {
  OptimizerOptions oo = lo_.optimizer;
  oo.lr = c_.GetFloat("sft.lr");
  oo.lr_warmup_steps = c_.GetInt("sft.warmup_steps");
  oo.lr_scheduler = LrSchedule::kConstant;
  return Optimizer::Create(model_->TrainableParameters(), oo);
}

Result<std::unique_ptr<Optimizer>> PolicyTrainer::MakeRlOptimizer() const {
  OptimizerOptions oo = lo_.optimizer;
  if (oo.lr_scheduler == LrSchedule::kCosine && oo.total_steps == 0)
    oo.total_steps = c_.GetInt("run.total_steps");
  return Optimizer::Create(model_->TrainableParameters(), oo);
}

Status PolicyTrainer::BeginSft() {
  if (!optimizer_) {
    CHAINRL_ASSIGN_OR_RETURN(optimizer_, MakeSftOptimizer());
  }
  return Status::Ok();
}

Status PolicyTrainer::BeginTraining() {
  if (!optimizer_) {
    CHAINRL_ASSIGN_OR_RETURN(optimizer_, MakeRlOptimizer());
  }
  return LoadReference();
}

// The frozen reference: for the KL term, and for DPO/IPO unless reference_free.
bool PolicyTrainer::NeedsReference() const {
  const PreferenceLossType t = lo_.preference.loss_type;
  const bool preference_ref = lo_.family == ObjectiveFamily::kPreference &&
                              (t == PreferenceLossType::kDpo || t == PreferenceLossType::kIpo) &&
                              !lo_.preference.reference_free;
  return lo_.policy.kl_coef > 0 || preference_ref;
}

Status PolicyTrainer::LoadReference() {
  if (!NeedsReference()) return Status::Ok();
  const std::string ref = c_.GetString("model.reference_path");
  if (ref.empty() && model_->has_lora()) {
    reference_.reset();  // the base: the policy itself with its adapters off (StepOptions)
    return Status::Ok();
  }
  if (!ref.empty()) {
    // Same options as the policy, so that its logprobs match the policy's at equal weights.
    CHAINRL_ASSIGN_OR_RETURN(reference_, model::LoadModel(ref, model_->options()));
  } else {
    reference_ = model::CopyModel(*model_, model_->options());
  }
  reference_->eval();
  return Status::Ok();
}

Result<CheckpointData> PolicyTrainer::Resume(const std::string& dir, bool sft_done) {
  CHAINRL_ASSIGN_OR_RETURN(optimizer_, sft_done ? MakeRlOptimizer() : MakeSftOptimizer());
  return LoadCheckpoint(dir, *model_, *optimizer_);
}

Result<std::optional<size_t>> PolicyTrainer::ApplyStage(
    int64_t step, const std::function<Status(const Config&)>& before_commit) {
  if (!stages_) {
    CHAINRL_ASSIGN_OR_RETURN(auto schedule, StageScheduleFromConfig(base_));
    if (!schedule) return std::optional<size_t>();
    stages_ = std::move(schedule);
    stage_ = stages_->stages().size();  // none applied yet
  }
  const size_t idx = stages_->IndexAt(step);
  if (idx == stage_) return std::optional<size_t>();
  const Stage& st = stages_->stages()[idx];
  const std::vector<std::string> sets = OverrideSets(st);
  CHAINRL_ASSIGN_OR_RETURN(Config next, base_.WithOverrides(sets));
  CHAINRL_ASSIGN_OR_RETURN(LearnerRunOptions lo, LearnerOptionsFromConfig(next));
  CHAINRL_ASSIGN_OR_RETURN(ProcessShapingOptions so,
                           ProcessShapingOptionsFromConfig(next, lo.advantages));
  if (before_commit) CHAINRL_RETURN_IF_ERROR(before_commit(next));
  if (optimizer_) {
    OptimizerOptions oo = lo.optimizer;
    // The schedule's horizon stays the one the optimiser was built with.
    oo.total_steps = optimizer_->options().total_steps;
    CHAINRL_RETURN_IF_ERROR(optimizer_->SetOptions(oo).WithPrefix("stage '" + st.name + "'"));
    lo.optimizer = oo;
  }
  shaping_->SetOptions(std::move(so));
  c_ = std::move(next);
  lo_ = lo;
  stage_ = idx;
  CHAINRL_LOG(kInfo) << "curriculum stage " << idx << " '" << st.name << "' from step " << step
                     << " (" << sets.size() << " overrides)";
  return std::optional<size_t>(idx);
}

RlStepOptions PolicyTrainer::StepOptions() const {
  RlStepOptions so;
  so.micro_batch_tokens = c_.GetInt("learner.micro_batch_tokens");
  so.reference = reference_ ? reference_.get() : nullptr;
  if (!reference_ && model_->has_lora() && NeedsReference())
    so.reference = model_.get();  // its base: the adapters are off for the reference's passes
  so.data_parallel = dp_;
  if (lo_.offline_preference) return so;  // logprobs of the data at temperature 1
  so.temperature = std::max(1e-6, c_.GetFloat("rollout.temperature"));
  so.ppo_epochs = c_.GetInt("learner.ppo_epochs");
  so.mini_batches = c_.GetInt("learner.mini_batches");
  so.recompute_old_logprobs = c_.GetString("learner.old_logprobs") == "recompute";
  return so;
}

Result<double> PolicyTrainer::SftUpdate(const std::vector<SftExample>& batch) {
  return RunSftUpdate(*model_, *optimizer_, batch, lo_, c_.GetInt("learner.micro_batch_tokens"),
                      /*skip_optimizer_step=*/false, dp_);
}

Result<RlStepStats> PolicyTrainer::PolicyUpdate(const std::vector<GroupData>& groups,
                                                int64_t policy_version) {
  RlStepOptions so = StepOptions();
  so.policy_version = policy_version;
  return RunPolicyUpdate(*model_, *optimizer_, groups, lo_, so);
}

Result<PreferenceStepStats> PolicyTrainer::PreferenceUpdate(
    const std::vector<PreferencePairData>& pairs) {
  return RunPreferenceUpdate(*model_, *optimizer_, pairs, lo_, StepOptions());
}

Result<double> PolicyTrainer::LeadSftStep(int64_t sft_step, const std::vector<SftExample>& batch) {
  RankMessage m;
  m.kind = RankMessageKind::kSftStep;
  m.step = sft_step;
  CHAINRL_ASSIGN_OR_RETURN(auto mine, ScatterShards(dp_, std::move(m), &RankMessage::sft, batch));
  return SftUpdate(mine);
}

Result<RlStepStats> PolicyTrainer::LeadPolicyStep(int64_t step,
                                                  const std::vector<GroupData>& groups,
                                                  int64_t policy_version) {
  RankMessage m;
  m.kind = RankMessageKind::kPolicyStep;
  m.step = step;
  m.policy_version = policy_version;
  CHAINRL_ASSIGN_OR_RETURN(auto mine,
                           ScatterShards(dp_, std::move(m), &RankMessage::groups, groups));
  return PolicyUpdate(mine, policy_version);
}

Result<PreferenceStepStats> PolicyTrainer::LeadPreferenceStep(
    int64_t step, const std::vector<PreferencePairData>& pairs) {
  RankMessage m;
  m.kind = RankMessageKind::kPreferenceStep;
  m.step = step;
  CHAINRL_ASSIGN_OR_RETURN(auto mine, ScatterShards(dp_, std::move(m), &RankMessage::pairs, pairs));
  return PreferenceUpdate(mine);
}

Status PolicyTrainer::StartFollowers(int64_t step, int64_t sft_step, bool sft_done,
                                     const std::string& resume_dir) {
  if (!dp_) return Status::Ok();
  RankMessage m;
  m.kind = RankMessageKind::kStart;
  m.step = step;
  m.sft_step = sft_step;
  m.sft_done = sft_done;
  m.resume_dir = resume_dir;
  CHAINRL_RETURN_IF_ERROR(TellOtherRanks(dp_, m));
  CHAINRL_RETURN_IF_ERROR(CheckSameModel());
  CHAINRL_RETURN_IF_ERROR(dp_->Broadcast(RankTensors()));
  CHAINRL_LOG(kInfo) << "data parallel: rank 0 of " << dp_->world_size()
                     << ", the batch of every update split across the ranks";
  return Status::Ok();
}

Status PolicyTrainer::EndSftOnEveryRank() {
  EndSft();
  RankMessage done;
  done.kind = RankMessageKind::kSftDone;
  return TellOtherRanks(dp_, done);
}

Result<std::optional<bool>> PolicyTrainer::StopFollowers() {
  if (!dp_) return std::optional<bool>();
  RankMessage m;
  m.kind = RankMessageKind::kStop;
  CHAINRL_RETURN_IF_ERROR(TellOtherRanks(dp_, m));
  CHAINRL_ASSIGN_OR_RETURN(const bool agree, ParametersAgree());
  if (!agree) {
    CHAINRL_LOG(kError) << "data parallel: the ranks' parameters differ after the run";
  }
  return std::optional<bool>(agree);
}

std::vector<std::pair<std::string, torch::Tensor>> PolicyTrainer::RankLayout() {
  auto all = model_->named_parameters().pairs();
  for (auto& p : model_->LoraParameters()) all.push_back(std::move(p));
  return all;
}

std::vector<torch::Tensor> PolicyTrainer::RankTensors() {
  std::vector<torch::Tensor> out;
  for (auto& [name, t] : RankLayout()) out.push_back(t);
  return out;
}

Status PolicyTrainer::CheckSameModel() {
  return CheckSameLayout(*dp_, RankLayout(),
                         std::to_string(model_->named_parameters().size()) + " parameters" +
                             (model_->has_lora() ? " with LoRA adapters" : "") + ", " +
                             model::TorchDtypeName(model_->options().dtype));
}

Result<bool> PolicyTrainer::ParametersAgree() {
  return learner::ParametersAgree(*dp_, RankTensors());
}

Status PolicyTrainer::Follow(metrics::MetricsRegistry* metrics) {
  const int rank = dp_->rank();
  CHAINRL_LOG(kInfo) << "data parallel: rank " << rank << " of " << dp_->world_size()
                     << ", following rank 0";
  int64_t updates = 0;
  bool sft_done = false;
  while (true) {
    std::optional<metrics::PhaseTimer> waiting;
    if (metrics) waiting.emplace(*metrics, metrics::kPhaseWaiting);
    CHAINRL_ASSIGN_OR_RETURN(std::string bytes, dp_->Receive());
    waiting.reset();
    CHAINRL_ASSIGN_OR_RETURN(RankMessage m, DecodeRankMessage(bytes));
    std::optional<metrics::PhaseTimer> training;
    if (metrics) {
      training.emplace(*metrics, metrics::kPhaseTraining);
      metrics->gauge(metrics::GaugeId::kResidentMemory)
          .Set(static_cast<double>(metrics::ResidentMemoryBytes()));
      if (m.kind == RankMessageKind::kPolicyStep)
        metrics->gauge(metrics::GaugeId::kPolicyVersion).Set(static_cast<double>(m.policy_version));
    }
    switch (m.kind) {
      case RankMessageKind::kStart:
        sft_done = m.sft_done;
        if (!m.resume_dir.empty()) {  // the same optimiser state as rank 0 (a shared directory)
          Status st = Resume(m.resume_dir, sft_done).status();
          if (!st.ok())
            return st.WithPrefix("rank " + std::to_string(rank) + " resuming from rank 0's " +
                                 "checkpoint (checkpoint.dir must be readable by every rank)");
          CHAINRL_LOG(kInfo) << "resumed from " << m.resume_dir << " at step " << m.step;
        }
        CHAINRL_RETURN_IF_ERROR(CheckSameModel());
        CHAINRL_RETURN_IF_ERROR(dp_->Broadcast(RankTensors()));
        if (sft_done && optimizer_) {  // resumed in the RL phase: its reference, as rank 0's
          CHAINRL_RETURN_IF_ERROR(LoadReference());
          CHAINRL_RETURN_IF_ERROR(ApplyStage(m.step).status());
        }
        break;
      case RankMessageKind::kSftStep:
        CHAINRL_RETURN_IF_ERROR(BeginSft());
        CHAINRL_RETURN_IF_ERROR(SftUpdate(m.sft).status());
        ++updates;
        break;
      case RankMessageKind::kSftDone:
        sft_done = true;
        EndSft();
        break;
      case RankMessageKind::kPolicyStep:
      case RankMessageKind::kPreferenceStep:
        if (!optimizer_) {  // the first update of the RL phase, as rank 0 begins it
          sft_done = true;
          CHAINRL_RETURN_IF_ERROR(BeginTraining());
        }
        // Rank 0 applied the same stage at this step.
        CHAINRL_RETURN_IF_ERROR(ApplyStage(m.step).status());
        if (m.kind == RankMessageKind::kPolicyStep) {
          CHAINRL_RETURN_IF_ERROR(PolicyUpdate(m.groups, m.policy_version).status());
        } else {
          CHAINRL_RETURN_IF_ERROR(PreferenceUpdate(m.pairs).status());
        }
        ++updates;
        break;
      case RankMessageKind::kStop: {
        CHAINRL_ASSIGN_OR_RETURN(bool agree, ParametersAgree());
        CHAINRL_LOG(kInfo) << "rank 0 stopped the run: " << updates << " updates taken here; "
                           << "parameters " << (agree ? "identical on" : "DIFFER across")
                           << " every rank";
        return agree ? Status::Ok()
                     : Internal("data parallel: the ranks' parameters differ after the run");
      }
    }
  }
}

}  // namespace chainrl::learner
