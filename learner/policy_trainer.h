// The policy as every rank of the learner holds it: the model, its frozen reference, the optimiser
// of the phase (the SFT warm-up, then RL or preference training), the options of the config in
// force (the run's, with the current curriculum stage's overrides) and the shaping they set.
// Rank 0's process (learner_process.cc) drives it from rollouts; the other ranks of a
// data-parallel learner drive it from rank 0's messages (Follow). Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "learner/checkpoint.h"
#include "learner/curriculum.h"
#include "learner/data_parallel.h"
#include "learner/optimizer.h"
#include "learner/process_shaping.h"
#include "learner/rl_step.h"
#include "learner/run_options.h"
#include "model/decoder.h"

namespace chainrl::metrics {
class MetricsRegistry;
}

namespace chainrl::learner {

class PolicyTrainer {
 public:
  // The options and shaping of `base` (which must outlive the trainer), every curriculum stage
  // checked (CheckCurriculumStages); `dp` is the rank group, or null for one process. The policy
  // is loaded by LoadPolicy. InvalidArgument naming the key for a bad combination.
  static Result<std::unique_ptr<PolicyTrainer>> Create(const Config& base, DataParallel* dp);

  // learner.threads, unless CHAINRL_THREADS is set; 0: a share of this host's physical cores among
  // the compute processes running at once: the learner ranks on this host (LOCAL_WORLD_SIZE) while
  // the actors wait (`with_actors` false: the SFT warm-up, before `chainrl train` starts them), and
  // ranks and actors together (kCpuProcessesEnv) once they generate.
  static void SetThreads(const Config& c, bool several_ranks, bool with_actors);

  // model.path with the training role's options (model.dtype, compute dtype, device).
  Status LoadPolicy();

  const Config& config() const { return c_; }  // in force now
  const LearnerRunOptions& options() const { return lo_; }
  ProcessShaping& shaping() { return *shaping_; }
  model::DecoderModel& model() { return *model_; }
  Optimizer* optimizer() { return optimizer_.get(); }  // null between phases

  // The SFT warm-up's optimiser (sft.lr, sft.warmup_steps, constant schedule), unless one is
  // built; EndSft drops it.
  Status BeginSft();
  void EndSft() { optimizer_.reset(); }
  // The RL (or preference) phase: its optimiser unless one is built (a cosine schedule's horizon
  // is run.total_steps), and the frozen reference when the KL term or DPO/IPO need it
  // (model.reference_path, else a copy of the policy as it is now).
  Status BeginTraining();
  // Loads checkpoint `dir` into the model and the optimiser of the phase (RL when `sft_done`).
  Result<CheckpointData> Resume(const std::string& dir, bool sft_done);

  // The curriculum stage in force at `step` (docs/ALGORITHMS.md §5.2): when it differs from the
  // one applied, its overrides go on top of the run's config, the options, shaping and the
  // optimiser's hyperparameters follow (the optimiser keeps its moments and its schedule's
  // horizon). `before_commit` gets the new config first (the caller's own part, e.g. bucket
  // weights); its error leaves everything as it was. Returns the index of the stage applied now,
  // nullopt when the stage in force did not change (or there are no stages).
  Result<std::optional<size_t>> ApplyStage(
      int64_t step, const std::function<Status(const Config&)>& before_commit = {});
  // The name of stage `index` of the schedule ApplyStage returned it from.
  const std::string& stage_name(size_t index) const { return stages_->stages()[index].name; }

  // One update on this rank's shard (the whole batch with one process), as rl_step.h describes.
  Result<double> SftUpdate(const std::vector<SftExample>& batch);
  Result<RlStepStats> PolicyUpdate(const std::vector<GroupData>& groups, int64_t policy_version);
  Result<PreferenceStepStats> PreferenceUpdate(const std::vector<PreferencePairData>& pairs);

  // Rank 0 (or the only rank): step `step`'s update on the whole batch. Every other rank is sent
  // its shard first (ScatterShards), so the ranks update together; the figures returned are the
  // whole batch's. `policy_version`: the version the learner holds before the update (its tokens
  // are at equal weights, RlStepStats::mismatch; negative: not measured).
  Result<double> LeadSftStep(int64_t sft_step, const std::vector<SftExample>& batch);
  Result<RlStepStats> LeadPolicyStep(int64_t step, const std::vector<GroupData>& groups,
                                     int64_t policy_version);
  Result<PreferenceStepStats> LeadPreferenceStep(int64_t step,
                                                 const std::vector<PreferencePairData>& pairs);
  // Rank 0 with a rank group (nothing with one process): the other ranks start where this one
  // does (the checkpoint it resumed from, `resume_dir`, "" for none, and the step counters), then
  // every rank checks the layout and takes rank 0's parameters.
  Status StartFollowers(int64_t step, int64_t sft_step, bool sft_done,
                        const std::string& resume_dir);
  // Rank 0: the SFT warm-up is over here (EndSft) and on the other ranks.
  Status EndSftOnEveryRank();
  // Rank 0 finishing: the other ranks leave after checking that every rank holds the same
  // parameters; whether they do (nullopt with one process).
  Result<std::optional<bool>> StopFollowers();

  // Every rank: InvalidArgument unless all hold the same parameter layout; whether all hold the
  // same parameters. REQUIRES: a rank group.
  Status CheckSameModel();
  Result<bool> ParametersAgree();

  // Ranks other than 0: the model and optimiser rank 0 holds, taking every update with it on the
  // shard rank 0 sends, until rank 0 says stop (Internal when the ranks' parameters then differ)
  // or has gone (IoError naming it). Followers read no data, talk to no actor and write nothing;
  // they wait for rank 0 as long as it takes (it may wait for rollouts). With `metrics`, the rank
  // exports its seconds waiting and training (chainrl_phase_seconds_total), its resident memory
  // and the policy version it holds.
  Status Follow(metrics::MetricsRegistry* metrics = nullptr);

 private:
  PolicyTrainer(const Config& base, DataParallel* dp) : base_(base), c_(base), dp_(dp) {}
  RlStepOptions StepOptions() const;
  Result<std::unique_ptr<Optimizer>> MakeSftOptimizer() const;
  Result<std::unique_ptr<Optimizer>> MakeRlOptimizer() const;
  Status LoadReference();
  // Whether the objective in force needs a reference: the KL term, or DPO/IPO not reference-free.
  bool NeedsReference() const;
  // What the ranks share and compare: every parameter, then the LoRA adapters.
  std::vector<std::pair<std::string, torch::Tensor>> RankLayout();
  std::vector<torch::Tensor> RankTensors();

  const Config& base_;
  Config c_;
  DataParallel* dp_ = nullptr;
  LearnerRunOptions lo_;
  std::unique_ptr<ProcessShaping> shaping_;
  std::optional<StageSchedule> stages_;
  size_t stage_ = 0;  // index applied; stages_->stages().size() before the first
  std::optional<model::LoraOptions> lora_;  // [lora], when enabled
  // reference_ is null with LoRA and no model.reference_path: the reference is the base, the
  // policy with its adapters off (RlStepOptions::reference == the policy).
  std::shared_ptr<model::DecoderModel> model_, reference_;
  std::unique_ptr<Optimizer> optimizer_;
};

}  // namespace chainrl::learner
