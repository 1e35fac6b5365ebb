// The learner process (see learner_process.h): dispatch loop, training steps, weights, checkpoints.
#include "learner/learner_process.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/file_io.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/run_files.h"
#include "core/stopwatch.h"
#include "core/wire.h"
#include "learner/checkpoint.h"
#include "learner/curriculum.h"
#include "learner/data_parallel.h"
#include "learner/dispatch.h"
#include "learner/group_source.h"
#include "learner/held_out_eval.h"
#include "learner/learner_metrics.h"
#include "learner/learner_transport.h"
#include "learner/offline_preference.h"
#include "learner/optimizer.h"
#include "learner/policy_trainer.h"
#include "learner/preference.h"
#include "learner/process_shaping.h"
#include "learner/prompt_inputs.h"
#include "learner/rl_step.h"
#include "learner/run_options.h"
#include "learner/run_report.h"
#include "learner/run_state.h"
#include "learner/segment_intake.h"
#include "learner/train_batch.h"
#include "learner/trajectory_intake.h"
#include "learner/work_ledger.h"
#include "model/lora_io.h"
#include "model/model_io.h"
#include "rewards/reward_config.h"
#include "rewards/reward_metrics.h"
#include "rollout/embedding_cache.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using nlohmann::json;

json EmbeddingCacheJson(const rollout::EmbeddingCacheStats& s) {
  return {{"hits", s.hits}, {"misses", s.misses}, {"evictions", s.evictions}, {"bytes", s.bytes}};
}

class Learner {
 public:
  Learner(const Config& c, const LearnerProcessOptions& o, const std::atomic<bool>& stop,
          DataParallel* dp)
      : base_(c), process_(o), stop_(stop), ledger_(LedgerOptions(), &clock_), dp_(MultiRank(dp)) {}
  // Rank 0 (or the only rank): the whole process. Ranks other than 0 run PolicyTrainer::Follow.
  Status Run();

 private:
  // The config in force (the run's with the current stage's overrides) and its options.
  const Config& c() const { return trainer_->config(); }
  const LearnerRunOptions& run_options() const { return trainer_->options(); }

  Status Setup();
  Status Resume(const std::string& spec);
  Status RunSft();
  Status RunOfflinePreference();
  Status PublishWeights();
  Status Pump();
  void ServeRunFiles(const transport::Received& msg);
  void HandleTrajectory(const transport::Received& msg);
  Result<AcceptedGroup> MakeAccepted(const wire::Trajectory& t);
  void Dispatch();
  Status TrainStep();
  void DropStaleBuffered();
  Status Evaluate(const std::string& label, json* out);
  Status Checkpoint();
  Status Finish(bool completed);
  void WriteProgress(const std::string& phase);
  int64_t Budget() const {
    return StepBudget(run_options(), run_.step, c().GetInt("rollout.max_new_tokens"));
  }
  Result<const std::vector<int32_t>*> PromptTokens(size_t example_index);
  Status ApplyStage();
  // DAPO dynamic sampling or curriculum.filter_uniform_groups drop groups without reward spread.
  bool FiltersUniformGroups() const {
    return run_options().dynamic_sampling || c().GetBool("curriculum.filter_uniform_groups");
  }

  const Config& base_;  // the run's config
  std::unique_ptr<PolicyTrainer> trainer_;
  LearnerProcessOptions process_;  // run directory and --resume
  const std::atomic<bool>& stop_;
  SteadyClock clock_;
  WorkLedger ledger_;
  GroupSource data_;
  std::unique_ptr<PromptInputs> prompts_;
  std::unique_ptr<rewards::RewardPool> rewards_;
  LearnerMetrics metrics_;
  // The held-out reward workers' figures in metrics_ (gone before metrics_ and rewards_ are).
  std::unique_ptr<rewards::RewardWorkerMetrics> reward_worker_metrics_;
  std::unique_ptr<LearnerTransport> transport_;
  transport::LearnerSecurity security_;  // security.*: the endpoints' keys and allow-list
  std::optional<wire::Envelope> run_files_;  // the reply to RunFilesRequest, made once
  ActorTable actors_;
  std::deque<AcceptedGroup> buffer_;
  DataParallel* dp_ = nullptr;       // several ranks: the group; else null
  std::string resumed_from_;         // the checkpoint directory this incarnation started from
  std::optional<OfflinePreferences> preference_data_;  // offline DPO family
  uint64_t completed_at_step_ = 0;  // ledger completions when the last step ended

  // State that checkpoints carry (run_.wall_seconds: of earlier incarnations).
  RunState run_;
  // Segment rollout (rollout.segment_tokens): groups whose samples are not all finished.
  SegmentAssembler segments_{static_cast<uint32_t>(base_.GetInt("rollout.group_size"))};

  Clock::time_point start_ = Clock::now();
  Clock::time_point last_step_end_ = Clock::now();
  int64_t rollout_tokens_window_ = 0;
};

Result<const std::vector<int32_t>*> Learner::PromptTokens(size_t index) {
  bool hit = false;
  CHAINRL_ASSIGN_OR_RETURN(const std::vector<int32_t>* tokens,
                           prompts_->Tokens(index, data_.train()[index], &hit));
  metrics_.PromptTokensCache(hit);
  // An actor cannot generate from a prompt that fills the model's context (nor hold its cache).
  const int64_t context = trainer_->model().config().max_position_embeddings;
  if (static_cast<int64_t>(tokens->size()) >= context)
    return InvalidArgument("example '" + data_.train()[index].id + "': its prompt is " +
                           std::to_string(tokens->size()) + " tokens, and the model's context (" +
                           "max_position_embeddings) is " + std::to_string(context));
  return tokens;
}

// [[curriculum.stages]] (docs/ALGORITHMS.md §5.2): from its start step on, a stage's overrides
// apply on top of the run's config (sampling, budgets, objective coefficients and shaping are read
// per step; learner.* optimiser keys reach the built optimiser, which keeps its moments and
// schedule position; data.bucket_weights apply to groups not drawn yet). Keys read only at
// start-up are refused in a stage before the run starts (CheckCurriculumStages).
Status Learner::ApplyStage() {
  CHAINRL_ASSIGN_OR_RETURN(std::optional<size_t> applied,
                           trainer_->ApplyStage(run_.step, [this](const Config& next) {
                             return data_.SetBucketWeights(next);
                           }));
  if (!applied) return Status::Ok();
  segments_.set_group_size(static_cast<uint32_t>(c().GetInt("rollout.group_size")));
  metrics_.CurriculumStage(*applied);
  log::Event(
      "stage",
      json({{"step", run_.step}, {"stage", *applied}, {"name", trainer_->stage_name(*applied)}})
          .dump());
  return Status::Ok();
}

Status Learner::Setup() {
  CHAINRL_ASSIGN_OR_RETURN(trainer_, PolicyTrainer::Create(base_, dp_));
  if (run_options().offline_preference) {
    CHAINRL_ASSIGN_OR_RETURN(preference_data_, OfflinePreferences::Load(c()));
  } else {
    CHAINRL_ASSIGN_OR_RETURN(data_, GroupSource::Load(c()));
  }
  CHAINRL_ASSIGN_OR_RETURN(prompts_, PromptInputs::Create(c()));
  if (!run_options().offline_preference ||
      !c().GetArray("rewards").empty()) {  // offline DPO needs none
    CHAINRL_ASSIGN_OR_RETURN(rewards_, rewards::CreateRewardPool(c()));
  }
  CHAINRL_RETURN_IF_ERROR(trainer_->LoadPolicy());
  CHAINRL_ASSIGN_OR_RETURN(const LedgerOptions ledger_options, LedgerOptionsFromConfig(c()));
  ledger_ = WorkLedger(ledger_options, &clock_);
  actors_ = ActorTable(c().GetInt("actors.credits"));
  if (auto registry = metrics::StartProcessMetrics(
          c(), metrics::MetricsOptions().set_role("learner").set_listen("").set_address_file(
                   (fs::path(process_.run_dir) / "metrics-learner.addr").string()))) {
    metrics_ = LearnerMetrics(std::move(registry));
    metrics_.Started(ledger_options.max_off_policy_steps);
    metrics_.CurriculumStage(0);
    if (rewards_)
      reward_worker_metrics_ =
          std::make_unique<rewards::RewardWorkerMetrics>(*metrics_.registry(), *rewards_);
  }
  // Precomputed prompt embeddings (data with an embeddings field): loaded once per prompt for the
  // learner's prefill of the policy update; actors hold their own cache.
  CHAINRL_ASSIGN_OR_RETURN(const data::Example* first, data_.CheckEmbeddingFiles());
  return prompts_->SetupEmbeddings(c(), first, trainer_->model().config().hidden_size,
                                   metrics_.registry());
}

Status Learner::Resume(const std::string& spec) {
  const std::string root = CheckpointRoot(c().GetString("checkpoint.dir"), process_.run_dir);
  auto dir = ResolveCheckpoint(root, spec);
  if (!dir.ok()) {
    if (spec == "latest" && dir.status().code() == StatusCode::kNotFound) {
      CHAINRL_LOG(kInfo) << "no checkpoint under " << root << ": starting from the beginning";
      return Status::Ok();
    }
    return dir.status();
  }
  // The run's state first (it says which optimiser to load); every file's checksum is verified
  // once, by the load that follows, not by this peek too.
  CHAINRL_ASSIGN_OR_RETURN(CheckpointData peek, ReadCheckpointData(*dir, /*verify=*/false));
  CHAINRL_ASSIGN_OR_RETURN(run_, RunState::FromJson(peek.state, *dir + "/state.json"));
  CHAINRL_ASSIGN_OR_RETURN(CheckpointData d, trainer_->Resume(*dir, run_.sft_done));
  resumed_from_ = fs::absolute(*dir).string();  // other ranks may start elsewhere
  segments_.set_segments_received(run_.segments_received);
  if (!run_.shaping.is_null())
    CHAINRL_RETURN_IF_ERROR(
        trainer_->shaping().LoadJson(run_.shaping).WithPrefix(*dir + "/state.json"));
  if (!run_.difficulty_buckets.is_null())
    CHAINRL_RETURN_IF_ERROR(
        data_.LoadBucketState(run_.difficulty_buckets).WithPrefix(*dir + "/state.json"));
  if (auto it = d.files.find("ledger.json"); it != d.files.end()) {
    CHAINRL_ASSIGN_OR_RETURN(ledger_, WorkLedger::FromJson(it->second, ledger_.options(), &clock_));
  }
  if (auto it = d.files.find("buffer.bin"); it != d.files.end()) {
    // Accepted but untrained groups, re-accepted without the ledger (it already counts them as
    // completed).
    CHAINRL_ASSIGN_OR_RETURN(
        auto records,
        ReadBufferRecords(it->second, *dir + "/buffer.bin",
                          static_cast<uint32_t>(trainer_->model().config().vocab_size)));
    for (BufferedTrajectory& r : records) {
      CHAINRL_ASSIGN_OR_RETURN(AcceptedGroup a, MakeAccepted(r.trajectory));
      a.serialized = std::move(r.record);
      buffer_.push_back(std::move(a));
    }
  }
  if (auto it = d.files.find("partials.bin"); it != d.files.end()) {
    // Groups part-way through segment rollout: trajectories.
    CHAINRL_RETURN_IF_ERROR(segments_.LoadRecords(it->second, *dir + "/partials.bin"));
  }
  if (!run_.torch_rng.is_null()) CHAINRL_RETURN_IF_ERROR(RestoreTorchRng(run_.torch_rng));
  CHAINRL_LOG(kInfo) << "resumed from " << *dir << " at step " << run_.step << " (policy version "
                     << run_.version << ", " << buffer_.size() << " groups buffered, "
                     << ledger_.in_flight() << " leases in flight)";
  return Status::Ok();
}

Status Learner::Checkpoint() {
  CheckpointData d;
  RunState state = run_;
  state.wall_seconds = run_.wall_seconds + SecondsSince(start_);
  state.segments_received = segments_.segments_received();
  state.shaping = trainer_->shaping().ToJson();
  state.difficulty_buckets = data_.BucketState();
  state.torch_rng = CaptureTorchRng();
  d.state = state.ToJson();
  d.files["ledger.json"] = ledger_.ToJson();
  d.files["buffer.bin"] = BufferRecords(buffer_);
  d.files["partials.bin"] = segments_.ToRecords();
  // Checkpoints are numbered by updates so far (SFT then RL), so "latest" is the newest.
  const int64_t key = run_.sft_step + run_.step;
  auto t0 = Clock::now();
  CHAINRL_ASSIGN_OR_RETURN(
      std::string dir,
      SaveCheckpoint(CheckpointRoot(c().GetString("checkpoint.dir"), process_.run_dir), key,
                     trainer_->model(), *trainer_->optimizer(), d,
                     static_cast<int>(c().GetInt("checkpoint.keep")), prompts_->tokenizer_dir()));
  CHAINRL_LOG(kInfo) << "checkpoint " << dir << " (" << SecondsSince(t0) << " s)";
  log::Event("checkpoint", json({{"dir", dir}, {"step", run_.step}}).dump());
  return Status::Ok();
}

Status Learner::Evaluate(const std::string& label, json* out) {
  if (data_.eval().empty() || !rewards_) return Status::Ok();
  WriteProgress("eval");
  CHAINRL_ASSIGN_OR_RETURN(
      const json j, EvaluateHeldOut(c(), trainer_->model(), *prompts_, *rewards_, data_.eval(),
                                    label, run_.step));
  run_.evals.push_back(j);
  if (out) *out = j;
  metrics_.HeldOutAccuracy(j["accuracy"].get<double>());
  CHAINRL_LOG(kInfo) << "eval (" << label << ", step " << run_.step << "): accuracy "
                     << j["accuracy"] << ", mean length " << j["mean_length"] << " tokens over "
                     << j["examples"] << " held-out examples (" << j["seconds"] << " s)";
  log::Event("eval", j.dump());
  return Status::Ok();
}

Status Learner::RunSft() {
  const int64_t steps = c().GetInt("sft.steps");
  if (steps > 0 && run_.sft_step < steps) {
    CHAINRL_RETURN_IF_ERROR(trainer_->BeginSft());
    const int64_t bs = c().GetInt("sft.batch_size");
    const auto& train = data_.train();
    const SftOrder order(train.size(), static_cast<uint64_t>(c().GetInt("run.seed")));
    CHAINRL_LOG(kInfo) << "SFT warm-up: " << steps << " steps of " << bs << " examples";
    auto t0 = Clock::now();
    for (; run_.sft_step < steps && !stop_; ++run_.sft_step) {
      CHAINRL_ASSIGN_OR_RETURN(std::vector<SftExample> batch,
                               prompts_->SftExamples(train, order.Batch(run_.sft_step, bs)));
      CHAINRL_ASSIGN_OR_RETURN(const double loss, trainer_->LeadSftStep(run_.sft_step, batch));
      if (run_.sft_step % 10 == 0 || run_.sft_step + 1 == steps) {
        CHAINRL_LOG(kInfo) << "SFT step " << run_.sft_step + 1 << "/" << steps << ": loss " << loss;
      }
      run_.history.push_back({{"phase", "sft"}, {"sft_step", run_.sft_step + 1}, {"loss", loss}});
      WriteProgress("sft");
    }
    CHAINRL_LOG(kInfo) << "SFT warm-up done in " << SecondsSince(t0) << " s";
    if (stop_) return Status::Ok();
  }
  run_.sft_done = true;
  CHAINRL_RETURN_IF_ERROR(trainer_->EndSftOnEveryRank());
  json e;
  CHAINRL_RETURN_IF_ERROR(Evaluate("after_sft", &e));
  run_.sft_eval = e;
  return Status::Ok();
}

Status Learner::PublishWeights() {
  CHAINRL_ASSIGN_OR_RETURN(const double seconds,
                           transport_->PublishWeights(trainer_->model(), run_.version));
  metrics_.WeightsPublished(run_.version, seconds);
  return Status::Ok();
}

// A trajectory as a group to train on (fresh from an actor, or from a checkpoint's buffer).
Result<AcceptedGroup> Learner::MakeAccepted(const wire::Trajectory& t) {
  const size_t index = data_.IndexForGroup(t.prompt_group_id());
  CHAINRL_ASSIGN_OR_RETURN(const auto* prompt, PromptTokens(index));
  AcceptedGroup a = GroupFromTrajectory(t, *prompt, OldestPolicyVersion(t, run_.version));
  CHAINRL_RETURN_IF_ERROR(prompts_->AttachEmbeddings(data_.train()[index], &a.group));
  return a;
}

void Learner::HandleTrajectory(const transport::Received& msg) {
  const auto& t = msg.envelope.trajectory();
  wire::Envelope assembled = wire::MakeEnvelope("learner");
  const IntakeResult r = TakeTrajectory(t, msg.envelope.sender(), run_.version, &ledger_,
                                        &segments_, assembled.mutable_trajectory());
  if (r.outcome == IntakeOutcome::kWrongSamples) {
    CHAINRL_LOG(kWarn) << msg.peer_name << ": trajectory for lease " << t.lease_id() << " of group "
                       << t.prompt_group_id() << " has " << r.samples_received
                       << " samples, not the " << r.samples_owed
                       << " it was leased; ignored (the lease is handed out again when it expires)";
    return;
  }
  metrics_.TrajectoryReceived(run_.version - r.oldest_version, msg.envelope.ByteSizeLong());
  if (r.verdict == Verdict::kDroppedStale) {
    ++run_.stale_dropped;
    metrics_.GroupsStale("intake", "dropped", 1);
  } else if (r.verdict == Verdict::kAcceptedNeedsCorrection) {
    metrics_.GroupsStale("intake", "trained", 1);
  }
  if (r.outcome == IntakeOutcome::kRefused) {
    CHAINRL_LOG(kDebug) << msg.peer_name << ": trajectory for lease " << t.lease_id() << " "
                        << VerdictName(r.verdict);
    return;
  }
  rollout_tokens_window_ += r.tokens;
  if (r.outcome == IntakeOutcome::kCarried) return;
  if (!r.assembled) assembled.clear_trajectory();
  const wire::Trajectory& whole = r.assembled ? assembled.trajectory() : t;
  auto accepted = MakeAccepted(whole);
  if (!accepted.ok()) {
    CHAINRL_LOG(kError) << accepted.status().message();
    return;
  }
  AcceptedGroup a = std::move(*accepted);
  run_.samples_multi_version += MultiVersionSamples(whole);
  for (const auto& s : a.group.samples)
    metrics_.SampleAccepted(s.tokens.size(), s.reward, s.truncated());
  if (FiltersUniformGroups() && NoRewardSpread(whole)) {
    ++run_.groups_filtered;
    return;
  }
  a.serialized = r.assembled ? assembled.SerializeAsString() : msg.envelope.SerializeAsString();
  buffer_.push_back(std::move(a));
}

void Learner::Dispatch() {
  if (ledger_.pending() == 0) return;
  // Every work item of this round samples alike but for its seed.
  const WorkRound round = WorkRoundFromConfig(c(), prompts_->renderer().stop_token_ids(), Budget(),
                                              run_.version, prompts_->placeholder_id());
  DispatchWork(
      round, &actors_, &ledger_, segments_, &data_,
      [this](size_t index) { return PromptTokens(index); },
      [this](const std::string& routing, const wire::Envelope& env) {
        return transport_->work().SendTo(routing, env);
      },
      &metrics_);
}

// An actor on a host without the run's files asked for them (chainrl actor --fetch-run): the
// config and the model's small files, collected once; an error is told to the actor.
void Learner::ServeRunFiles(const transport::Received& msg) {
  if (!run_files_) {
    wire::Envelope env = wire::MakeEnvelope("learner");
    auto files = CollectRunFiles(base_, wire::Limits().max_frame_bytes / 2);
    if (files.ok()) {
      *env.mutable_run_files() = std::move(files).value();
    } else {
      env = wire::MakeError("learner", wire::ERROR_NOT_AVAILABLE, files.status().message());
    }
    run_files_ = std::move(env);
  }
  Status st = transport_->work().SendTo(msg.peer, *run_files_);
  CHAINRL_LOG(kInfo) << msg.peer_name << " asked for the run's files: "
                     << (run_files_->has_run_files()
                             ? std::to_string(run_files_->run_files().model_files_size()) +
                                   " model files and the config sent"
                             : "refused: " + run_files_->error().message())
                     << (st.ok() ? "" : " (not delivered: " + st.message() + ")");
}

Status Learner::Pump() {
  // Everything that queued up (e.g. during a training step) is read before leases are expired:
  // an actor that heartbeated meanwhile is alive.
  for (int i = 0; i < 10000; ++i) {
    CHAINRL_ASSIGN_OR_RETURN(auto m, transport_->work().Receive(milliseconds(0)));
    if (!m) break;
    if (m->envelope.has_run_files_request()) {
      ServeRunFiles(*m);
      continue;
    }
    TakeWorkMessage(m->envelope, m->peer, m->peer_name, &actors_, &ledger_);
  }
  for (int i = 0; i < 64; ++i) {
    CHAINRL_ASSIGN_OR_RETURN(auto m, transport_->trajectories().Receive(milliseconds(0)));
    if (!m) break;
    if (m->envelope.has_trajectory()) {
      HandleTrajectory(*m);
    } else {
      CHAINRL_LOG(kWarn) << m->peer_name << ": not a trajectory on the trajectory channel";
    }
  }
  for (const Lease& l : ledger_.Expire())
    CHAINRL_LOG(kWarn) << "lease " << l.lease_id << " of group " << l.group_id << " revoked from "
                       << l.actor << " (attempt " << l.attempt << ")";
  actors_.Prune([this](const std::string& name) { return ledger_.IsAlive(name); });
  TopUpLedger(&ledger_, buffer_.size(), static_cast<size_t>(c().GetInt("rollout.prompts_per_step")),
              &run_.next_group);
  Dispatch();
  LoopMetrics m;
  m.leases_in_flight = ledger_.in_flight();
  m.actors_alive = actors_.size();
  m.groups_buffered = buffer_.size();
  m.groups_pending = ledger_.pending();
  m.leases_reassigned = ledger_.counters().reassigned;
  m.groups_lost = ledger_.counters().lost;
  m.weights_bytes_sent = transport_->weights_bytes_sent();
  for (int r = 0; r < static_cast<int>(wire::RejectReason::kCount); ++r)
    m.rejected[r] = transport_->Rejected(static_cast<wire::RejectReason>(r));
  for (int r = 0; r < transport::kPeerRefusalKinds; ++r)
    m.refused[r] = transport_->PeersRefused(static_cast<transport::PeerRefusal>(r));
  metrics_.LoopPassed(m);
  return Status::Ok();
}

// Staleness enforced when trained (docs/ALGORITHMS.md §7.1): accepted groups wait in the buffer
// while the learner moves on, so a group within the bound on arrival may be past it by the time
// it would train. With stale_policy "drop" such groups leave the buffer and their prompts are
// generated again; with "flag" or "correct" they train and are counted (TrainStep).
void Learner::DropStaleBuffered() {
  const LedgerOptions& lo = ledger_.options();
  if (lo.stale_policy != StalePolicy::kDrop) return;
  const std::vector<AcceptedGroup> stale =
      TakeStale(&buffer_, run_.version, lo.max_off_policy_steps);
  if (stale.empty()) return;
  for (const AcceptedGroup& a : stale) {
    if (Status st = ledger_.Reopen(a.group.group_id); !st.ok()) {
      CHAINRL_LOG(kError) << st.message();
    }
  }
  run_.stale_requeued += static_cast<int64_t>(stale.size());
  metrics_.GroupsStale("training", "dropped", stale.size());
  CHAINRL_LOG(kInfo) << stale.size() << " buffered group(s) lag policy version " << run_.version
                     << " by more than learner.max_off_policy_steps = " << lo.max_off_policy_steps
                     << ": dropped before training, their prompts generated again";
}

Status Learner::TrainStep() {
  const size_t per_step =
      std::min(static_cast<size_t>(c().GetInt("rollout.prompts_per_step")), buffer_.size());
  StepOutcome o;
  // stale_policy flag or correct: groups past the bound train (DropStaleBuffered left them).
  if (const size_t stale =
          CountStale(buffer_, per_step, run_.version, ledger_.options().max_off_policy_steps)) {
    run_.stale_trained += static_cast<int64_t>(stale);
    metrics_.GroupsStale("training", "trained", stale);
  }
  o.generated_groups = ledger_.counters().completed - completed_at_step_;
  StepBatch batch = TakeStepBatch(&buffer_, per_step, run_.version, &run_.trained,
                                  data_.has_buckets()
                                      ? [this](uint64_t g) { return data_.ForGroup(g).difficulty; }
                                      : std::function<std::string(uint64_t)>());
  run_.groups_duplicated += batch.duplicated;
  o.gen_limit_reached = per_step < static_cast<size_t>(c().GetInt("rollout.prompts_per_step"));
  if (o.gen_limit_reached) ++run_.gen_limit_steps;
  // Shaped rewards and advantages (length methods, soft weighting): process_shaping.h.
  ApplyShaping(trainer_->shaping().Shape(run_.step, Budget(), ShapingInputs(batch.groups)), &batch);
  auto t0 = Clock::now();
  o.wait_seconds = std::chrono::duration<double>(t0 - last_step_end_).count();
  if (run_options().family == ObjectiveFamily::kPreference) {
    // Online DPO family: per group, the best (shaped) reward against the worst one(s) (LOGO: up
    // to 2); groups whose rewards are all equal give no pair.
    std::vector<PreferencePairData> pairs = OnlinePreferencePairs(
        batch.groups, run_options().preference.loss_type == PreferenceLossType::kLogo ? 2 : 1);
    CHAINRL_ASSIGN_OR_RETURN(o.preference, trainer_->LeadPreferenceStep(run_.step, pairs));
    o.stats.loss = o.preference->loss;
    o.stats.grad_norm = o.preference->grad_norm;
    o.stats.lr = o.preference->lr;
    o.stats.response_tokens = o.preference->response_tokens;
  } else {
    CHAINRL_ASSIGN_OR_RETURN(o.stats,
                             trainer_->LeadPolicyStep(run_.step, batch.groups, run_.version));
  }
  o.train_seconds = SecondsSince(t0);
  ++run_.step;
  ++run_.version;
  CHAINRL_RETURN_IF_ERROR(PublishWeights());
  run_.tokens_trained += o.stats.response_tokens;
  o.step_seconds = SecondsSince(last_step_end_);
  o.rollout_tokens_per_s =
      static_cast<double>(rollout_tokens_window_) / std::max(o.step_seconds, 1e-9);
  rollout_tokens_window_ = 0;
  last_step_end_ = Clock::now();
  o.step = run_.step;
  o.budget = Budget();
  o.soft_weighting = trainer_->shaping().options().soft_weighting.has_value();
  o.mastered_token_mask = run_options().mastered_token_mask;
  o.rollout_correction = run_options().policy.rollout_correction.enabled();
  const json h = StepHistoryEntry(batch, o);
  completed_at_step_ = ledger_.counters().completed;
  run_.history.push_back(h);
  log::Event("step", h.dump());
  metrics_.StepTrained(StepMetricsOf(batch, o));
  if (o.stats.skipped_steps > 0) {
    CHAINRL_LOG(kWarn) << "step " << run_.step << ": the update was skipped: the gradient norm is "
                       << o.stats.grad_norm << " (the weights are unchanged)";
  }
  const double n = batch.size();
  CHAINRL_LOG(kDebug) << "step " << run_.step << ": reward " << batch.reward / n << ", accuracy "
                      << batch.correct / n << ", length " << batch.length / n << ", loss "
                      << o.stats.loss;
  return Status::Ok();
}

void Learner::WriteProgress(const std::string& phase) {
  ProgressRecord p = ProgressFromRun(phase, run_, c().GetInt("run.total_steps"));
  p.sft_steps = c().GetInt("sft.steps");
  p.budget = Budget();
  p.elapsed_seconds = run_.wall_seconds + SecondsSince(start_);
  p.actors = static_cast<int64_t>(actors_.size());
  (void)learner::WriteProgress(process_.run_dir, p);
}

Status Learner::Finish(bool completed) {
  // The other ranks leave, after agreeing that every rank holds the same parameters.
  CHAINRL_ASSIGN_OR_RETURN(const std::optional<bool> ranks_agree, trainer_->StopFollowers());
  // (Not after an SFT-only run, run.total_steps = 0: its after-SFT evaluation is the last.)
  const bool final_eval_needed = run_.sft_done && c().GetInt("run.total_steps") > 0;
  json fe = nullptr;
  if (final_eval_needed && !stop_) CHAINRL_RETURN_IF_ERROR(Evaluate("after_rl", &fe));
  if (trainer_->optimizer()) CHAINRL_RETURN_IF_ERROR(Checkpoint());
  std::string export_dir;
  if (c().GetBool("checkpoint.export_hf") && completed) {
    export_dir = (fs::path(process_.run_dir) / "export").string();
    // A LoRA policy: merged in float32, then cast (the model any HF loader reads), and the
    // adapters alone as a PEFT adapter directory on top of model.path.
    CHAINRL_RETURN_IF_ERROR(model::SaveMergedModel(trainer_->model(), export_dir));
    CHAINRL_RETURN_IF_ERROR(model::CopyTokenizerFiles(prompts_->tokenizer_dir(), export_dir));
    CHAINRL_LOG(kInfo) << "exported the policy to " << export_dir;
    if (trainer_->model().has_lora()) {
      const std::string adapter_dir = (fs::path(export_dir) / "adapter").string();
      CHAINRL_RETURN_IF_ERROR(model::SaveLoraAdapter(
          trainer_->model(), adapter_dir, fs::absolute(c().GetString("model.path")).string()));
      CHAINRL_LOG(kInfo) << "exported the LoRA adapters (PEFT format) to " << adapter_dir;
    }
  }
  RunSummary s = SummaryFromRun(run_, ledger_.counters(), fe);
  s.run = c().GetString("run.name");
  s.completed = completed;
  s.total_steps = c().GetInt("run.total_steps");
  s.groups_buffered = static_cast<int64_t>(buffer_.size());
  s.groups_in_flight = static_cast<int64_t>(ledger_.in_flight());
  s.segments_received = segments_.segments_received();
  if (prompts_->embeddings())
    s.prompt_embedding_cache = EmbeddingCacheJson(prompts_->embeddings()->stats());
  s.groups_part_generated = static_cast<int64_t>(segments_.groups());
  s.rejected_messages = static_cast<int64_t>(transport_ ? transport_->RejectedTotal() : 0);
  for (int r = 0; transport_ && r < transport::kPeerRefusalKinds; ++r)
    s.peers_refused +=
        static_cast<int64_t>(transport_->PeersRefused(static_cast<transport::PeerRefusal>(r)));
  s.data_lines_skipped =
      data_.lines_skipped() + (preference_data_ ? preference_data_->lines_skipped() : 0);
  s.export_dir = export_dir;
  s.wall_seconds = run_.wall_seconds + SecondsSince(start_);
  s.learner_ranks = dp_ ? dp_->world_size() : 1;
  s.ranks_parameters_identical = ranks_agree;
  CHAINRL_RETURN_IF_ERROR(WriteSummary(process_.run_dir, s));
  WriteProgress("done");
  log::Event("summary", s.ToJson().dump());
  // Final figures for a Pushgateway (metrics.pushgateway), kept after this process has exited.
  metrics_.PushFinal(c().GetString("metrics.pushgateway"));
  return Status::Ok();
}

// Offline DPO family: rollout.prompts_per_step pairs per step in a seeded order per epoch, one
// optimiser step each; checkpoints and summary as in RL (no actors, no weights published).
Status Learner::RunOfflinePreference() {
  const int64_t total = c().GetInt("run.total_steps");
  const int64_t every = c().GetInt("checkpoint.every");
  const uint64_t n = preference_data_->size();
  CHAINRL_LOG(kInfo) << run_options().algorithm << " (offline): steps " << run_.step << ".."
                     << total << " over " << n << " pairs";
  while (run_.step < total && !stop_) {
    const auto t0 = Clock::now();
    const uint64_t per_step = static_cast<uint64_t>(c().GetInt("rollout.prompts_per_step"));
    CHAINRL_ASSIGN_OR_RETURN(
        std::vector<PreferencePairData> batch,
        preference_data_->Batch(run_.step, per_step, prompts_->renderer(),
                                run_options().preference.loss_type == PreferenceLossType::kLogo));
    CHAINRL_ASSIGN_OR_RETURN(const PreferenceStepStats st,
                             trainer_->LeadPreferenceStep(run_.step, batch));
    ++run_.step;
    ++run_.version;
    run_.tokens_trained += st.response_tokens;
    const json h = PreferenceHistoryEntry(run_.step, st, SecondsSince(t0));
    run_.history.push_back(h);
    log::Event("step", h.dump());
    metrics_.PreferenceStepTrained(st.loss, st.grad_norm, st.lr);
    CHAINRL_RETURN_IF_ERROR(ApplyStage());
    if (every > 0 && run_.step % every == 0 && run_.step < total)
      CHAINRL_RETURN_IF_ERROR(Checkpoint());
    WriteProgress("rl");
  }
  return Status::Ok();
}

Status Learner::Run() {
  log::SetRole("learner");
  // The SFT warm-up runs before `chainrl train` starts the actors: the ranks have the cores.
  PolicyTrainer::SetThreads(base_, dp_ != nullptr, /*with_actors=*/false);
  // Keys and who may connect, before anything slow: a missing key is exit 2 at once.
  CHAINRL_ASSIGN_OR_RETURN(
      security_, transport::LearnerSecurityFromConfig(base_, base_.GetString("learner.bind")));
  if (security_.open_beyond_loopback) {
    CHAINRL_LOG(kWarn) << transport::OpenNetworkWarning(base_.GetString("learner.bind"));
  }
  CHAINRL_RETURN_IF_ERROR(Setup());
  // Every run writes a checkpoint (at the latest when it ends): a checkpoint.dir it cannot write
  // to is an error now, not after the SFT warm-up.
  CHAINRL_RETURN_IF_ERROR(
      CheckCheckpointRoot(CheckpointRoot(c().GetString("checkpoint.dir"), process_.run_dir)));
  if (dp_ && run_options().drpo)
    return InvalidArgument(
        "length_shaping.methods 'drpo' scores the whole batch at once: it cannot run with "
        "several learner ranks");
  std::string resume =
      process_.resume.empty() ? c().GetString("checkpoint.resume") : process_.resume;
  if (!resume.empty()) CHAINRL_RETURN_IF_ERROR(Resume(resume));
  if (run_options().offline_preference)
    run_.sft_done = true;  // no warm-up: the pairs are the training data
  // The other ranks start where this one does: the same checkpoint (optimiser moments and step
  // count), then rank 0's parameters, so every rank steps from the same point.
  CHAINRL_RETURN_IF_ERROR(
      trainer_->StartFollowers(run_.step, run_.sft_step, run_.sft_done, resumed_from_));
  if (!run_options().offline_preference)  // the endpoints bind now, not after the warm-up
    CHAINRL_RETURN_IF_ERROR(
        LearnerTransport::Probe(c().GetString("learner.bind"), process_.run_dir, security_));
  if (!run_.sft_done) {
    CHAINRL_RETURN_IF_ERROR(RunSft());
    if (stop_) return Finish(false);
  }
  if (c().GetInt("run.total_steps") == 0) {
    if (run_options().offline_preference)
      return InvalidArgument(
          "run.total_steps = 0 runs the SFT warm-up alone, and offline "
          "preference training has none");
    CHAINRL_LOG(kInfo) << "run.total_steps = 0: the SFT warm-up alone; no RL steps";
    return Finish(true);
  }
  CHAINRL_RETURN_IF_ERROR(trainer_->BeginTraining());
  CHAINRL_RETURN_IF_ERROR(ApplyStage());
  if (run_options().offline_preference) {
    CHAINRL_RETURN_IF_ERROR(RunOfflinePreference());
    return Finish(run_.step >= c().GetInt("run.total_steps"));
  }
  // Token ids are checked against the policy's vocabulary at the socket (a peer's out-of-vocabulary
  // id never reaches a batch, nor an actor's lease as a carried segment).
  CHAINRL_ASSIGN_OR_RETURN(
      transport_,
      LearnerTransport::Open(c().GetString("learner.bind"), process_.run_dir, security_,
                             static_cast<uint32_t>(trainer_->model().config().vocab_size)));
  CHAINRL_RETURN_IF_ERROR(PublishWeights());
  const int64_t total = c().GetInt("run.total_steps");
  const int64_t every = c().GetInt("checkpoint.every");
  const int64_t eval_every = c().GetInt("run.eval_every");
  const size_t per_step = static_cast<size_t>(c().GetInt("rollout.prompts_per_step"));
  CHAINRL_LOG(kInfo) << "RL: steps " << run_.step << ".." << total << ", " << per_step
                     << " groups of " << c().GetInt("rollout.group_size") << " per step";
  PolicyTrainer::SetThreads(base_, dp_ != nullptr, /*with_actors=*/true);
  last_step_end_ = Clock::now();
  completed_at_step_ = ledger_.counters().completed;
  auto last_progress = Clock::now() - std::chrono::hours(1);
  while (run_.step < total && !stop_) {
    CHAINRL_RETURN_IF_ERROR(Pump());
    DropStaleBuffered();
    if (buffer_.size() >= per_step ||
        GenerationLimitReached(buffer_.size(), FiltersUniformGroups(),
                               run_options().max_num_gen_batches,
                               ledger_.counters().completed - completed_at_step_, per_step)) {
      CHAINRL_RETURN_IF_ERROR(TrainStep());
      CHAINRL_RETURN_IF_ERROR(ApplyStage());
      if (every > 0 && run_.step % every == 0 && run_.step < total)
        CHAINRL_RETURN_IF_ERROR(Checkpoint());
      if (eval_every > 0 && run_.step % eval_every == 0 && run_.step < total)
        CHAINRL_RETURN_IF_ERROR(Evaluate("periodic", nullptr));
      WriteProgress("rl");
      last_progress = Clock::now();
      continue;
    }
    if (Clock::now() - last_progress > milliseconds(500)) {
      WriteProgress("rl");
      last_progress = Clock::now();
    }
    // Wait for the next message on either channel (bounded, so expiry and stop are timely).
    CHAINRL_ASSIGN_OR_RETURN(auto m, transport_->trajectories().Receive(milliseconds(20)));
    if (m && m->envelope.has_trajectory()) HandleTrajectory(*m);
  }
  return Finish(run_.step >= total);
}

}  // namespace

Status RunLearner(const Config& config, const LearnerProcessOptions& options,
                  const std::atomic<bool>& stop) {
  // Started by a torchrun-style launcher as one of several ranks (RANK, WORLD_SIZE, MASTER_ADDR,
  // MASTER_PORT): rank 0 is the learner the actors talk to; the others follow it
  // (PolicyTrainer::Follow).
  CHAINRL_ASSIGN_OR_RETURN(const RankInfo who, RankInfoFromEnvironment());
  if (options.run_dir.empty() && who.rank == 0)
    return InvalidArgument("the learner needs a run directory");
  std::unique_ptr<DataParallel> dp;
  if (who.world_size > 1) {
    CHAINRL_ASSIGN_OR_RETURN(const DataParallelOptions dpo, DataParallelOptionsFromConfig(config));
    CHAINRL_ASSIGN_OR_RETURN(dp, DataParallel::Join(who, dpo));
  }
  if (who.rank == 0) return Learner(config, options, stop, dp.get()).Run();
  log::SetRole("learner-rank" + std::to_string(who.rank));
  // Followers size their threads for the whole run: ranks and actors together.
  PolicyTrainer::SetThreads(config, true, /*with_actors=*/true);
  CHAINRL_ASSIGN_OR_RETURN(auto trainer, PolicyTrainer::Create(config, dp.get()));
  CHAINRL_RETURN_IF_ERROR(trainer->LoadPolicy());
  // Its own /metrics at metrics.bind (it has no run directory: the address is in its log).
  auto registry = metrics::StartProcessMetrics(
      config,
      metrics::MetricsOptions().set_role("learner-rank" + std::to_string(who.rank)).set_listen(""));
  return trainer->Follow(registry.get());
}

}  // namespace chainrl::learner
