// The learner process (see learner_process.h): dispatch loop, training steps, weights, checkpoints.
#include "learner/learner_process.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/channel.h"
#include "core/crc32c.h"
#include "core/endpoints.h"
#include "core/file_io.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/weights_transfer.h"
#include "core/wire.h"
#include "data/jsonl.h"
#include "data/tasks.h"
#include "learner/checkpoint.h"
#include "learner/curriculum.h"
#include "learner/data_parallel.h"
#include "learner/length_shaping.h"
#include "learner/optimizer.h"
#include "learner/preference.h"
#include "learner/process_shaping.h"
#include "learner/rank_messages.h"
#include "learner/rl_step.h"
#include "learner/run_options.h"
#include "learner/work_ledger.h"
#include "model/flat_weights.h"
#include "model/model_io.h"
#include "rewards/reward_config.h"
#include "rollout/embedding_cache.h"
#include "rollout/evaluate.h"
#include "rollout/prompting.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using nlohmann::json;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The training examples in a seeded order per epoch: group g is example Order(g / N)[g % N].
class Dataset {
 public:
  Status Load(const Config& c) {
    const uint64_t seed = static_cast<uint64_t>(c.GetInt("run.seed"));
    shuffle_ = c.GetBool("data.shuffle");
    seed_ = seed;
    if (c.GetString("data.source") == "task") {
      const data::TaskOptions o = data::TaskOptionsFromConfig(c);
      CHAINRL_ASSIGN_OR_RETURN(train_, data::GenerateTask(o, data::Split::kTrain,
                                                          c.GetInt("data.num_train_examples")));
      CHAINRL_ASSIGN_OR_RETURN(eval_, data::GenerateTask(o, data::Split::kEval,
                                                         c.GetInt("data.num_eval_examples")));
    } else {
      const data::JsonlFields f = data::JsonlFieldsFromConfig(c);
      const data::BadLinePolicy policy = data::BadLinePolicyFromConfig(c);
      for (const auto& [key, out] : {std::pair{"data.train_files", &train_},
                                     std::pair{"data.eval_files", &eval_}}) {
        for (const auto& file : c.GetStringList(key)) {
          data::JsonlStats stats;
          CHAINRL_ASSIGN_OR_RETURN(auto ex, data::LoadExamplesJsonl(file, f, policy, &stats));
          if (stats.skipped > 0) {
            CHAINRL_LOG(kWarn) << file << ": " << stats.skipped << " malformed lines skipped"
                               << (stats.first_problems.empty() ? ""
                                                                : " (first: " +
                                                                      stats.first_problems[0] + ")");
          }
          out->insert(out->end(), ex.begin(), ex.end());
        }
      }
      const int64_t max_eval = c.GetInt("data.num_eval_examples");
      if (static_cast<int64_t>(eval_.size()) > max_eval) eval_.resize(max_eval);
    }
    if (train_.empty()) return InvalidArgument("data: no training examples");
    return LoadBuckets(c);
  }

  // data.difficulty_buckets: groups draw their example from the buckets by weight
  // (DifficultyBucketSampler); an example's bucket is its `difficulty`. Group g gets the g-th draw.
  Status LoadBuckets(const Config& c) {
    const auto& names = c.GetStringList("data.difficulty_buckets");
    if (names.empty()) return Status::Ok();
    std::vector<std::vector<int64_t>> buckets(names.size());
    for (size_t i = 0; i < train_.size(); ++i) {
      auto it = std::find(names.begin(), names.end(), train_[i].difficulty);
      if (it == names.end())
        return InvalidArgument("data.difficulty_buckets: training example '" + train_[i].id +
                               "' has difficulty '" + train_[i].difficulty +
                               "', which is not one of the buckets");
      buckets[it - names.begin()].push_back(static_cast<int64_t>(i));
    }
    CHAINRL_ASSIGN_OR_RETURN(std::vector<double> weights, BucketWeights(c));
    auto s = DifficultyBucketSampler::Create(std::move(buckets), std::move(weights),
                                             Mix(seed_ ^ 0xb0c7));
    if (!s.ok()) return s.status().WithPrefix("data.bucket_weights");
    sampler_.emplace(std::move(*s));
    return Status::Ok();
  }
  static Result<std::vector<double>> BucketWeights(const Config& c) {
    const size_t n = c.GetStringList("data.difficulty_buckets").size();
    std::vector<double> w = c.GetFloatList("data.bucket_weights");
    if (w.empty()) w.assign(n, 1.0);
    if (w.size() != n)
      return InvalidArgument("data.bucket_weights has " + std::to_string(w.size()) +
                             " weights for " + std::to_string(n) + " data.difficulty_buckets");
    return w;
  }
  // A stage's data.bucket_weights, for the groups not drawn yet.
  Status SetBucketWeights(const Config& c) {
    if (!sampler_) return Status::Ok();
    CHAINRL_ASSIGN_OR_RETURN(std::vector<double> w, BucketWeights(c));
    return sampler_->SetWeights(std::move(w)).WithPrefix("data.bucket_weights");
  }
  bool has_buckets() const { return sampler_.has_value(); }
  json BucketState() const {
    if (!sampler_) return nullptr;
    return {{"sampler", sampler_->ToJson()}, {"drawn", drawn_}};
  }
  Status LoadBucketState(const json& j) {
    if (!sampler_ || j.is_null()) return Status::Ok();
    try {
      CHAINRL_RETURN_IF_ERROR(sampler_->LoadJson(j.at("sampler")));
      drawn_ = j.at("drawn").get<std::vector<int64_t>>();
    } catch (const std::exception& e) {
      return Corrupt(std::string("difficulty_buckets state: ") + e.what());
    }
    for (int64_t i : drawn_)
      if (i < 0 || static_cast<size_t>(i) >= train_.size())
        return Corrupt("difficulty_buckets state: example index out of range");
    return Status::Ok();
  }

  const data::Example& ForGroup(uint64_t g) {
    if (sampler_) {
      while (drawn_.size() <= g) drawn_.push_back(sampler_->Next());
      return train_[drawn_[g]];
    }
    const uint64_t n = train_.size();
    const uint64_t epoch = g / n;
    if (epoch != epoch_ || order_.empty()) {
      order_.resize(n);
      std::iota(order_.begin(), order_.end(), 0);
      if (shuffle_) {
        std::mt19937_64 rng(Mix(seed_ ^ Mix(epoch + 1)));
        std::shuffle(order_.begin(), order_.end(), rng);
      }
      epoch_ = epoch;
    }
    return train_[order_[g % n]];
  }
  size_t IndexForGroup(uint64_t g) {
    const data::Example& e = ForGroup(g);
    return static_cast<size_t>(&e - train_.data());
  }
  const std::vector<data::Example>& train() const { return train_; }
  const std::vector<data::Example>& eval() const { return eval_; }

 private:
  std::vector<data::Example> train_, eval_;
  std::vector<size_t> order_;
  uint64_t epoch_ = ~0ull;
  uint64_t seed_ = 0;
  bool shuffle_ = true;
  std::optional<DifficultyBucketSampler> sampler_;
  std::vector<int64_t> drawn_;  // example index of group g, with difficulty buckets
};

json EmbeddingCacheJson(const rollout::EmbeddingCacheStats& s) {
  return {{"hits", s.hits}, {"misses", s.misses}, {"evictions", s.evictions}, {"bytes", s.bytes}};
}

// Checkpoint files of serialized messages: records of an 8-byte length, then the bytes.
void AppendRecord(std::string* out, const std::string& record) {
  const uint64_t n = record.size();
  out->append(reinterpret_cast<const char*>(&n), 8);
  *out += record;
}

Result<std::vector<std::string_view>> SplitRecords(const std::string& bytes,
                                                   const std::string& what) {
  std::vector<std::string_view> out;
  size_t p = 0;
  while (p < bytes.size()) {
    uint64_t n = 0;
    if (bytes.size() - p < 8) return Corrupt(what + ": truncated record length");
    std::memcpy(&n, bytes.data() + p, 8);
    p += 8;
    if (n > bytes.size() - p) return Corrupt(what + ": truncated record");
    out.emplace_back(bytes.data() + p, n);
    p += n;
  }
  return out;
}

struct ActorInfo {
  std::string routing;  // ZeroMQ routing id of its work socket
  int64_t pending_credits = 0;
  int64_t max_credits = 1;
  std::string process;  // host:pid of the process that last joined under this name
};

// A group accepted by the ledger, waiting to be trained.
struct Accepted {
  GroupData group;
  int64_t behaviour_version = 0;
  double correct_fraction = 0;
  double mean_length = 0;
  double truncated_fraction = 0;
  std::map<std::string, double> component_means;  // reward component -> mean over the group
  std::string serialized;  // the trajectory envelope, kept for checkpoints
};

class Learner {
 public:
  Learner(const Config& c, const LearnerProcessOptions& o, const std::atomic<bool>& stop,
          DataParallel* dp)
      : base_(c),
        c_(c),
        o_(o),
        stop_(stop),
        ledger_(LedgerOptions(), &clock_),
        dp_(MultiRank(dp)) {}
  // Rank 0 (or the only rank): the whole process.
  Status Run();
  // Ranks other than 0 of a data-parallel learner: the same model and optimiser, updated on the
  // shards rank 0 sends, until it stops (see Follow's comment).
  Status Follow();

 private:
  // Data parallelism, rank 0's side. Each other rank gets its shard of `batch` in a message like
  // `m`; returns rank 0's own shard (the whole batch without data parallelism).
  template <typename T>
  Result<std::vector<T>> Scatter(RankMessage m, std::vector<T> RankMessage::*field,
                                 const std::vector<T>& batch);
  Status Tell(const RankMessage& m);  // to every other rank
  // Every rank: agree on a digest of the parameters; false when a rank's differ (a bug).
  Result<bool> ParametersAgree();
  // Every rank: InvalidArgument unless every rank's model has the same parameter layout.
  Status CheckSameModel();
  void SetThreads() const;  // learner.threads, or this host's cores shared by its ranks
  Result<std::unique_ptr<Optimizer>> MakeSftOptimizer() const;
  Result<std::unique_ptr<Optimizer>> MakeRlOptimizer() const;
  // The options of an RL or online preference update (offline preference: what it reads).
  RlStepOptions StepOptions() const;
  // A follower's RL or preference update on its shard, in step with rank 0's.
  Status FollowStep(const RankMessage& m);

  Status Setup();
  // Parts of Setup that ranks other than 0 need too: the objective and shaping options from the
  // config, and the policy model.
  Status SetupObjective();
  Status LoadPolicy();
  Status Resume(const std::string& spec);
  Status RunSft();
  Status RunOfflinePreference();
  Result<PreferencePairData> OfflinePair(size_t index);
  Status LoadReference();
  Status StartTransport();
  Status PublishWeights();
  Status Pump();
  void HandleWork(transport::Received& msg);
  void HandleTrajectory(const transport::Received& msg);
  int64_t OldestVersion(const wire::Trajectory& t) const;
  Result<Accepted> MakeAccepted(const wire::Trajectory& t);
  // Adds one lease's segment to the group's carried-over state.
  void MergeSegment(const wire::Trajectory& t, wire::Trajectory* so_far) const;
  void Dispatch();
  void Supply();
  Status TrainStep();
  Status Evaluate(const std::string& label, json* out);
  Status Checkpoint();
  Status Finish(bool completed);
  void WriteProgress(const std::string& phase);
  int64_t Budget() const;
  Result<const std::vector<int32_t>*> PromptTokens(size_t example_index);
  void UpdateRejectMetrics();

  Status ApplyStage();
  Status SetupEmbeddings();
  bool GenerationLimitReached() const;

  const Config& base_;  // the run's config
  Config c_;            // in force now: base_ with the current curriculum stage's overrides
  std::optional<StageSchedule> stages_;
  size_t stage_ = 0;
  LearnerProcessOptions o_;
  const std::atomic<bool>& stop_;
  SteadyClock clock_;
  WorkLedger ledger_;
  LearnerRunOptions lo_;
  Dataset data_;
  std::unique_ptr<rollout::PromptRenderer> prompts_;
  std::unique_ptr<rewards::RewardPool> rewards_;
  std::shared_ptr<model::DecoderModel> model_, reference_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<metrics::MetricsRegistry> metrics_;
  transport::Context ctx_{1};
  std::unique_ptr<transport::Channel> work_, traj_;
  std::unique_ptr<transport::WeightsServer> weights_;
  std::map<std::string, ActorInfo> actors_;
  std::unordered_map<size_t, std::vector<int32_t>> prompt_cache_;
  std::deque<Accepted> buffer_;
  std::set<uint64_t> trained_;
  std::string tokenizer_dir_;
  std::string first_reward_;
  std::unique_ptr<ProcessShaping> shaping_;
  DataParallel* dp_ = nullptr;       // several ranks: the group; else null
  std::string resumed_from_;         // the checkpoint directory this incarnation started from
  bool offline_preference_ = false;  // DPO family trained from data.train_files, without actors
  std::vector<data::PreferenceExample> preference_data_;
  std::unordered_map<size_t, PreferencePairData> pair_cache_;
  uint64_t completed_at_step_ = 0;  // ledger completions when the last step ended

  // State that checkpoints carry.
  bool sft_done_ = false;
  int64_t sft_step_ = 0;
  int64_t step_ = 0;
  int64_t version_ = 0;
  uint64_t next_group_ = 0;
  int64_t tokens_trained_ = 0;
  int64_t groups_duplicated_ = 0, groups_filtered_ = 0, stale_dropped_ = 0;
  // Accepted samples whose tokens came from more than one policy version (weights swapped in
  // while the actor was generating them).
  int64_t samples_multi_version_ = 0;
  // Segment rollout (rollout.segment_tokens): groups whose samples are not all finished, by group
  // id. Sample i of each is the group's sample i: the tokens of its segments so far, with
  // FINISH_UNFINISHED until it ends. The learner owns this state, so a dead actor loses at most
  // the segment it was generating; checkpoints carry it (partials.bin).
  std::map<uint64_t, wire::Trajectory> partials_;
  // The actor whose segment each of those groups last received (not checkpointed: a hint).
  std::unordered_map<uint64_t, std::string> segment_actor_;
  // Precomputed prompt embeddings (data with an embeddings field): loaded once per prompt for the
  // learner's prefill of the policy update; actors hold their own cache.
  std::shared_ptr<rollout::EmbeddingCache> embeddings_;
  int32_t placeholder_id_ = -1;
  int64_t segments_received_ = 0;
  int64_t gen_limit_steps_ = 0;    // steps trained short at algorithm.max_num_gen_batches
  json history_ = json::array();   // per step: reward, accuracy, length, budget, loss...
  json evals_ = json::array();     // {step, label, accuracy, mean_length, ...}
  json sft_eval_ = nullptr, final_eval_ = nullptr;
  double wall_before_ = 0;         // wall seconds of earlier incarnations (resume)

  Clock::time_point start_ = Clock::now();
  Clock::time_point last_step_end_ = Clock::now();
  uint64_t rejected_seen_[static_cast<int>(wire::RejectReason::kCount)] = {};
  uint64_t reassigned_seen_ = 0, lost_seen_ = 0;  // ledger counts already exported
  int64_t rollout_tokens_window_ = 0;
};

int64_t Learner::Budget() const {
  const int64_t max_new = c_.GetInt("rollout.max_new_tokens");
  int64_t b = step_ < lo_.budget_start_step ? lo_.budget.initial_budget
                                            : TokenBudgetAt(lo_.budget, step_ - lo_.budget_start_step);
  return std::clamp<int64_t>(b, 1, max_new);
}

Result<const std::vector<int32_t>*> Learner::PromptTokens(size_t index) {
  auto it = prompt_cache_.find(index);
  if (metrics_)
    metrics_
        ->counter(it != prompt_cache_.end() ? metrics::CounterId::kCacheHits
                                            : metrics::CounterId::kCacheMisses,
                  {{"cache", "prompt_tokens"}})
        .Increment();
  if (it != prompt_cache_.end()) return &it->second;
  CHAINRL_ASSIGN_OR_RETURN(auto ids, prompts_->Render(data_.train()[index]));
  return &(prompt_cache_[index] = std::move(ids));
}

// [[curriculum.stages]]: from its start step on, a stage's overrides apply on top of the run's
// config (sampling, budgets, objective coefficients, shaping, rewards' weights are read per step;
// learner.* optimiser keys reach the built optimiser, which keeps its moments and schedule
// position; data.bucket_weights apply to groups not drawn yet). Keys the process reads only at
// start-up (model, data sources) keep their initial values.
Status Learner::ApplyStage() {
  if (!stages_) {
    std::vector<Stage> stages;
    for (const auto& t : base_.GetArray("curriculum.stages")) {
      Stage st;
      st.name = std::get<std::string>(t.at("name"));
      st.start_step = std::get<int64_t>(t.at("start_step"));
      if (auto it = t.find("overrides"); it != t.end())
        for (const auto& kv : std::get<std::vector<std::string>>(it->second)) {
          const size_t eq = kv.find('=');
          st.overrides.emplace_back(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
        }
      stages.push_back(std::move(st));
    }
    if (stages.empty()) {
      if (metrics_) metrics_->gauge(metrics::GaugeId::kCurriculumStage).Set(0);
      return Status::Ok();
    }
    if (stages.front().start_step > 0) stages.insert(stages.begin(), Stage{"base", 0, {}});
    CHAINRL_ASSIGN_OR_RETURN(auto sched, StageSchedule::Create(std::move(stages)));
    stages_ = std::move(sched);
    stage_ = stages_->stages().size();  // none applied yet
  }
  const size_t idx = stages_->IndexAt(step_);
  if (idx == stage_) return Status::Ok();
  const Stage& st = stages_->stages()[idx];
  std::vector<std::string> sets;
  for (const auto& [k, v] : st.overrides) sets.push_back(k + "=" + v);
  CHAINRL_ASSIGN_OR_RETURN(Config next, base_.WithOverrides(sets));
  CHAINRL_ASSIGN_OR_RETURN(LearnerRunOptions lo, LearnerOptionsFromConfig(next));
  CHAINRL_ASSIGN_OR_RETURN(ProcessShapingOptions so,
                           ProcessShapingOptionsFromConfig(next, lo.advantages));
  if (optimizer_) {
    OptimizerOptions oo = lo.optimizer;
    // The schedule's horizon stays the one the optimiser was built with.
    oo.total_steps = optimizer_->options().total_steps;
    CHAINRL_RETURN_IF_ERROR(optimizer_->SetOptions(oo).WithPrefix("stage '" + st.name + "'"));
    lo.optimizer = oo;
  }
  CHAINRL_RETURN_IF_ERROR(data_.SetBucketWeights(next));
  shaping_->SetOptions(std::move(so));
  c_ = std::move(next);
  lo_ = lo;
  stage_ = idx;
  if (metrics_) metrics_->gauge(metrics::GaugeId::kCurriculumStage).Set(static_cast<double>(idx));
  CHAINRL_LOG(kInfo) << "curriculum stage " << idx << " '" << st.name << "' from step " << step_
                     << " (" << sets.size() << " overrides)";
  log::Event("stage", json({{"step", step_}, {"stage", idx}, {"name", st.name}}).dump());
  return Status::Ok();
}

Status Learner::SetupEmbeddings() {
  const data::Example* first = nullptr;
  std::set<std::string> files;  // each checked once: many examples share one file
  for (const auto* set : {&data_.train(), &data_.eval()})
    for (const auto& ex : *set) {
      if (ex.embeddings.empty()) continue;
      if (!first) first = &ex;
      const std::string file = ex.embeddings.substr(0, ex.embeddings.rfind('#'));
      if (files.insert(file).second && !fs::exists(file))
        return InvalidArgument(ex.source + ": prompt embeddings file '" + file +
                               "' does not exist");
    }
  if (!first) return Status::Ok();
  const std::string text = c_.GetString("data.embedding_placeholder");
  if (text.empty())
    return InvalidArgument("data.embedding_placeholder: the data carries prompt embeddings (" +
                           first->source + ") but no placeholder token is set");
  CHAINRL_ASSIGN_OR_RETURN(placeholder_id_,
                           prompts_->SingleTokenId(text, "data.embedding_placeholder"));
  embeddings_ = rollout::MakeEmbeddingCache(c_, model_->config().hidden_size, metrics_.get());
  CHAINRL_LOG(kInfo) << "prompt embeddings: spliced at token " << placeholder_id_ << " ('" << text
                     << "'), cache of " << c_.GetInt("rollout.embedding_cache_bytes") << " bytes";
  return Status::Ok();
}

Status Learner::SetupObjective() {
  CHAINRL_ASSIGN_OR_RETURN(lo_, LearnerOptionsFromConfig(c_));
  // The DPO family: offline from prompt/chosen/rejected JSONL (no actors), or online from each
  // group's best and worst rollouts.
  offline_preference_ = lo_.offline_preference;
  // Shaping and soft weighting per step (process_shaping.h); DRPO, a loss, is refused there.
  CHAINRL_ASSIGN_OR_RETURN(ProcessShapingOptions so,
                           ProcessShapingOptionsFromConfig(c_, lo_.advantages));
  shaping_ = std::make_unique<ProcessShaping>(std::move(so));
  return Status::Ok();
}

Status Learner::LoadPolicy() {
  CHAINRL_ASSIGN_OR_RETURN(auto mo, model::ModelOptionsFromConfig(c_, model::ModelRole::kTraining));
  CHAINRL_RETURN_IF_ERROR(model::RequireCpuProcess(mo, c_));
  CHAINRL_ASSIGN_OR_RETURN(model_, model::LoadModel(c_.GetString("model.path"), mo));
  CHAINRL_LOG(kInfo) << "policy " << c_.GetString("model.path") << ": "
                     << model::TorchDtypeName(mo.dtype) << " weights, "
                     << model::TorchDtypeName(mo.ComputeDtype()) << " compute on "
                     << mo.device.str();
  return Status::Ok();
}

Status Learner::Setup() {
  CHAINRL_RETURN_IF_ERROR(SetupObjective());
  if (offline_preference_) {
    if (c_.GetString("data.source") != "jsonl" || c_.GetStringList("data.train_files").empty())
      return InvalidArgument(
          "algorithm.preference_source = 'offline' needs data.source = 'jsonl' "
          "and data.train_files of prompt/chosen/rejected lines");
    const data::JsonlFields f = data::JsonlFieldsFromConfig(c_);
    for (const auto& file : c_.GetStringList("data.train_files")) {
      CHAINRL_ASSIGN_OR_RETURN(
          auto ex, data::LoadPreferencesJsonl(file, f, data::BadLinePolicyFromConfig(c_)));
      preference_data_.insert(preference_data_.end(), ex.begin(), ex.end());
    }
    if (preference_data_.empty()) return InvalidArgument("data.train_files: no preference pairs");
  } else {
    CHAINRL_RETURN_IF_ERROR(data_.Load(c_));
  }
  rollout::PromptOptions po = rollout::PromptOptionsFromConfig(c_);
  tokenizer_dir_ = po.tokenizer_dir;
  CHAINRL_ASSIGN_OR_RETURN(prompts_, rollout::PromptRenderer::Create(po));
  if (!offline_preference_ || !c_.GetArray("rewards").empty()) {  // offline DPO needs none
    CHAINRL_ASSIGN_OR_RETURN(rewards_, rewards::CreateRewardPool(c_));
    if (!rewards_->specs().empty()) first_reward_ = rewards_->specs()[0].name;
  }
  CHAINRL_RETURN_IF_ERROR(LoadPolicy());
  LedgerOptions lo;
  lo.heartbeat_timeout =
      milliseconds(static_cast<int64_t>(c_.GetFloat("actors.heartbeat_timeout_seconds") * 1000));
  lo.max_off_policy_steps = c_.GetInt("learner.max_off_policy_steps");
  lo.stale_policy =
      c_.GetString("learner.stale_policy") == "drop" ? StalePolicy::kDrop : StalePolicy::kFlag;
  lo.max_attempts = 5;
  ledger_ = WorkLedger(lo, &clock_);
  if (c_.GetBool("metrics.enabled")) {
    metrics::MetricsOptions mo;
    mo.set_run_id(c_.GetString("run.name"))
        .set_role("learner")
        .set_address_file((fs::path(o_.run_dir) / "metrics-learner.addr").string());
    auto m = metrics::MetricsRegistry::Create(mo);
    if (m.ok()) {
      metrics_ = std::move(*m);
      metrics_->gauge(metrics::GaugeId::kStalenessBound)
          .Set(static_cast<double>(lo.max_off_policy_steps));
      // Counters of rare events start at 0, so dashboards show "none" rather than "no data".
      for (auto id :
           {metrics::CounterId::kGroupsDuplicated, metrics::CounterId::kGroupsLost,
            metrics::CounterId::kLeasesReassigned, metrics::CounterId::kResponsesTruncated})
        metrics_->counter(id).Increment(0);
      for (int r = 0; r < static_cast<int>(wire::RejectReason::kCount); ++r)
        metrics_
            ->counter(metrics::CounterId::kMessagesRejected,
                      {{"reason", wire::RejectReasonName(static_cast<wire::RejectReason>(r))}})
            .Increment(0);
    } else {
      CHAINRL_LOG(kWarn) << "metrics disabled: " << m.status().message();
    }
  }
  CHAINRL_RETURN_IF_ERROR(SetupEmbeddings());
  return Status::Ok();
}

Status Learner::Resume(const std::string& spec) {
  std::string root = c_.GetString("checkpoint.dir");
  if (root.empty()) root = (fs::path(o_.run_dir) / "checkpoints").string();
  auto dir = ResolveCheckpoint(root, spec);
  if (!dir.ok()) {
    if (spec == "latest" && dir.status().code() == StatusCode::kNotFound) {
      CHAINRL_LOG(kInfo) << "no checkpoint under " << root << ": starting from the beginning";
      return Status::Ok();
    }
    return dir.status();
  }
  CHAINRL_ASSIGN_OR_RETURN(CheckpointData peek, ReadCheckpointData(*dir));
  const json& s = peek.state;
  sft_done_ = s.value("sft_done", false);
  CHAINRL_ASSIGN_OR_RETURN(optimizer_, sft_done_ ? MakeRlOptimizer() : MakeSftOptimizer());
  CHAINRL_ASSIGN_OR_RETURN(CheckpointData d, LoadCheckpoint(*dir, *model_, *optimizer_));
  resumed_from_ = fs::absolute(*dir).string();  // other ranks may start elsewhere
  try {
    sft_step_ = s.at("sft_step");
    step_ = s.at("step");
    version_ = s.at("version");
    next_group_ = s.at("next_group");
    tokens_trained_ = s.at("tokens_trained");
    groups_duplicated_ = s.at("groups_duplicated");
    groups_filtered_ = s.at("groups_filtered");
    stale_dropped_ = s.at("stale_dropped");
    samples_multi_version_ = s.value("samples_multi_version", int64_t{0});
    segments_received_ = s.value("segments_received", int64_t{0});
    history_ = s.at("history");
    evals_ = s.at("evals");
    sft_eval_ = s.at("sft_eval");
    wall_before_ = s.at("wall_seconds");
    for (uint64_t g : s.at("trained").get<std::vector<uint64_t>>()) trained_.insert(g);
    gen_limit_steps_ = s.value("gen_limit_steps", int64_t{0});
  } catch (const std::exception& e) {
    return InvalidArgument(*dir + "/state.json: " + e.what());
  }
  if (auto it = s.find("shaping"); it != s.end())
    CHAINRL_RETURN_IF_ERROR(shaping_->LoadJson(*it).WithPrefix(*dir + "/state.json"));
  if (auto it = s.find("difficulty_buckets"); it != s.end())
    CHAINRL_RETURN_IF_ERROR(data_.LoadBucketState(*it).WithPrefix(*dir + "/state.json"));
  if (auto it = d.files.find("ledger.json"); it != d.files.end()) {
    CHAINRL_ASSIGN_OR_RETURN(ledger_, WorkLedger::FromJson(it->second, ledger_.options(), &clock_));
  }
  if (auto it = d.files.find("buffer.bin"); it != d.files.end()) {
    // Accepted but untrained groups: trajectory envelopes.
    CHAINRL_ASSIGN_OR_RETURN(auto records, SplitRecords(it->second, *dir + "/buffer.bin"));
    for (std::string_view rec : records) {
      transport::Received r;
      if (!r.envelope.ParseFromArray(rec.data(), static_cast<int>(rec.size())) ||
          !r.envelope.has_trajectory())
        return Corrupt(*dir + "/buffer.bin: a record does not parse");
      // Re-accepted without the ledger (it already counts these groups as completed).
      CHAINRL_ASSIGN_OR_RETURN(Accepted a, MakeAccepted(r.envelope.trajectory()));
      a.serialized = std::string(rec);
      buffer_.push_back(std::move(a));
    }
  }
  if (auto it = d.files.find("partials.bin"); it != d.files.end()) {
    // Groups part-way through segment rollout: trajectories.
    CHAINRL_ASSIGN_OR_RETURN(auto records, SplitRecords(it->second, *dir + "/partials.bin"));
    for (std::string_view rec : records) {
      wire::Trajectory t;
      if (!t.ParseFromArray(rec.data(), static_cast<int>(rec.size())))
        return Corrupt(*dir + "/partials.bin: a record does not parse");
      partials_[t.prompt_group_id()] = std::move(t);
    }
  }
  if (auto it = s.find("torch_rng"); it != s.end()) CHAINRL_RETURN_IF_ERROR(RestoreTorchRng(*it));
  CHAINRL_LOG(kInfo) << "resumed from " << *dir << " at step " << step_ << " (policy version "
                     << version_ << ", " << buffer_.size() << " groups buffered, "
                     << ledger_.in_flight() << " leases in flight)";
  return Status::Ok();
}

Status Learner::Checkpoint() {
  std::string root = c_.GetString("checkpoint.dir");
  if (root.empty()) root = (fs::path(o_.run_dir) / "checkpoints").string();
  CheckpointData d;
  json trained = json::array();
  for (uint64_t g : trained_) trained.push_back(g);
  d.state = {{"sft_done", sft_done_},
             {"sft_step", sft_step_},
             {"step", step_},
             {"version", version_},
             {"next_group", next_group_},
             {"tokens_trained", tokens_trained_},
             {"groups_duplicated", groups_duplicated_},
             {"groups_filtered", groups_filtered_},
             {"stale_dropped", stale_dropped_},
             {"samples_multi_version", samples_multi_version_},
             {"segments_received", segments_received_},
             {"history", history_},
             {"evals", evals_},
             {"sft_eval", sft_eval_},
             {"wall_seconds", wall_before_ + Since(start_)},
             {"trained", trained},
             {"gen_limit_steps", gen_limit_steps_},
             {"shaping", shaping_->ToJson()},
             {"difficulty_buckets", data_.BucketState()},
             {"torch_rng", CaptureTorchRng()}};
  d.files["ledger.json"] = ledger_.ToJson();
  std::string& buf = d.files["buffer.bin"];
  for (const auto& a : buffer_) AppendRecord(&buf, a.serialized);
  std::string& partials = d.files["partials.bin"];
  for (const auto& [gid, t] : partials_) AppendRecord(&partials, t.SerializeAsString());
  // Checkpoints are numbered by updates so far (SFT then RL), so "latest" is the newest.
  const int64_t key = sft_step_ + step_;
  auto t0 = Clock::now();
  CHAINRL_ASSIGN_OR_RETURN(std::string dir,
                           SaveCheckpoint(root, key, *model_, *optimizer_, d,
                                          static_cast<int>(c_.GetInt("checkpoint.keep")),
                                          tokenizer_dir_));
  CHAINRL_LOG(kInfo) << "checkpoint " << dir << " (" << Since(t0) << " s)";
  log::Event("checkpoint", json({{"dir", dir}, {"step", step_}}).dump());
  return Status::Ok();
}

Status Learner::Evaluate(const std::string& label, json* out) {
  if (data_.eval().empty() || !rewards_) return Status::Ok();
  WriteProgress("eval");
  rollout::EvalOptions eo;
  eo.max_new_tokens = c_.GetInt("rollout.max_new_tokens");
  eo.max_batch = c_.GetInt("rollout.max_batch_size");
  eo.stop_strings = c_.GetStringList("rollout.stop_strings");
  eo.embedding_cache = embeddings_;
  eo.placeholder_token_id = placeholder_id_;
  model_->eval();
  CHAINRL_ASSIGN_OR_RETURN(auto r, rollout::Evaluate(*model_, *prompts_, *rewards_, data_.eval(), eo));
  json j = {{"label", label},
            {"step", step_},
            {"examples", r.examples},
            {"accuracy", r.accuracy},
            {"mean_reward", r.mean_reward},
            {"mean_length", r.mean_length},
            {"truncated_fraction", r.truncated_fraction},
            {"seconds", r.seconds}};
  evals_.push_back(j);
  if (out) *out = j;
  if (metrics_) metrics_->gauge(metrics::GaugeId::kAccuracy).Set(r.accuracy);
  CHAINRL_LOG(kInfo) << "eval (" << label << ", step " << step_ << "): accuracy " << r.accuracy
                     << ", mean length " << r.mean_length << " tokens over " << r.examples
                     << " held-out examples (" << r.seconds << " s)";
  log::Event("eval", j.dump());
  return Status::Ok();
}

Status Learner::RunSft() {
  const int64_t steps = c_.GetInt("sft.steps");
  if (steps > 0 && sft_step_ < steps) {
    if (!optimizer_) {
      CHAINRL_ASSIGN_OR_RETURN(optimizer_, MakeSftOptimizer());
    }
    const int64_t bs = c_.GetInt("sft.batch_size");
    const auto& train = data_.train();
    std::mt19937_64 order_rng(Mix(static_cast<uint64_t>(c_.GetInt("run.seed")) ^ 0x5f7));
    std::vector<size_t> order(train.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), order_rng);
    CHAINRL_LOG(kInfo) << "SFT warm-up: " << steps << " steps of " << bs << " examples";
    auto t0 = Clock::now();
    for (; sft_step_ < steps && !stop_; ++sft_step_) {
      std::vector<SftExample> batch;
      for (int64_t i = 0; i < bs; ++i) {
        const data::Example& e = train[order[(sft_step_ * bs + i) % order.size()]];
        std::string target = e.solution;
        if (target.empty() && e.answer.is_string()) target = e.answer.get<std::string>();
        if (target.empty()) continue;
        SftExample s;
        CHAINRL_ASSIGN_OR_RETURN(s.prompt, prompts_->Render(e));
        CHAINRL_ASSIGN_OR_RETURN(s.response, prompts_->EncodeResponse(target));
        batch.push_back(std::move(s));
      }
      if (batch.empty())
        return InvalidArgument(
            "sft.steps > 0 but the training examples have no solution to imitate (built-in tasks "
            "carry one; JSONL needs a 'solution' field or a string answer)");
      RankMessage m;
      m.kind = RankMessageKind::kSftStep;
      m.step = sft_step_;
      CHAINRL_ASSIGN_OR_RETURN(std::vector<SftExample> mine,
                               Scatter(std::move(m), &RankMessage::sft, batch));
      CHAINRL_ASSIGN_OR_RETURN(double loss, RunSftUpdate(*model_, *optimizer_, mine, lo_,
                                                         c_.GetInt("learner.micro_batch_tokens"),
                                                         /*skip_optimizer_step=*/false, dp_));
      if (sft_step_ % 10 == 0 || sft_step_ + 1 == steps) {
        CHAINRL_LOG(kInfo) << "SFT step " << sft_step_ + 1 << "/" << steps << ": loss " << loss;
      }
      history_.push_back({{"phase", "sft"}, {"sft_step", sft_step_ + 1}, {"loss", loss}});
      WriteProgress("sft");
    }
    CHAINRL_LOG(kInfo) << "SFT warm-up done in " << Since(t0) << " s";
    if (stop_) return Status::Ok();
  }
  sft_done_ = true;
  optimizer_.reset();
  RankMessage done;
  done.kind = RankMessageKind::kSftDone;
  CHAINRL_RETURN_IF_ERROR(Tell(done));
  json e;
  CHAINRL_RETURN_IF_ERROR(Evaluate("after_sft", &e));
  sft_eval_ = e;
  return Status::Ok();
}

Status Learner::StartTransport() {
  std::string bind = c_.GetString("learner.bind");
  LearnerEndpoints ep;
  if (bind == "ipc://") {
    const std::string base = "ipc://" + fs::absolute(o_.run_dir).string() + "/learner";
    ep = {base + ".work", base + ".traj", base + ".weights"};
  } else {
    CHAINRL_ASSIGN_OR_RETURN(ep, ResolveLearnerEndpoints(bind));
  }
  transport::ChannelOptions co;
  co.name = "learner";
  co.recv_hwm = 1000;
  co.send_timeout = milliseconds(100);
  co.allow_remote_bind = bind.rfind("tcp://127.", 0) != 0 && bind.rfind("tcp://localhost", 0) != 0 &&
                         bind.rfind("tcp://", 0) == 0;  // an explicit non-loopback bind is a choice
  CHAINRL_ASSIGN_OR_RETURN(work_, transport::Channel::Open(ctx_, transport::ChannelKind::kWorkServer,
                                                           ep.work, co));
  transport::ChannelOptions to = co;
  to.recv_hwm = 8;  // trajectories: a short queue, so a paused learner holds actors back
  CHAINRL_ASSIGN_OR_RETURN(
      traj_, transport::Channel::Open(ctx_, transport::ChannelKind::kTrajectorySink,
                                      ep.trajectories, to));
  transport::WeightsServerOptions wo;
  wo.channel = co;
  CHAINRL_ASSIGN_OR_RETURN(weights_, transport::WeightsServer::Start(ctx_, ep.weights, wo));
  LearnerEndpoints bound = {work_->endpoint(), traj_->endpoint(), weights_->endpoint()};
  CHAINRL_RETURN_IF_ERROR(WriteEndpointsFile((fs::path(o_.run_dir) / "endpoints.json").string(),
                                             bound, static_cast<int>(getpid())));
  CHAINRL_LOG(kInfo) << "serving work on " << bound.work << ", trajectories on "
                     << bound.trajectories << ", weights on " << bound.weights;
  return Status::Ok();
}

Status Learner::PublishWeights() {
  auto t0 = Clock::now();
  // In the actors' parameter dtype (the compute dtype): bfloat16 actors get half the bytes of
  // float32 master weights.
  const auto as = model_->options().ComputeDtype();
  const size_t n = model::FlatWeightsBytes(*model_, as);
  uint8_t* data = nullptr;
  transport::WeightsBuffer buf = transport::WeightsBuffer::Allocate(n, &data);
  model::PackFlatWeights(*model_, data, as);
  CHAINRL_RETURN_IF_ERROR(weights_->Publish(version_, std::move(buf),
                                            model::FlatWeightsFormat(*model_, as)));
  if (metrics_) {
    metrics_->gauge(metrics::GaugeId::kPolicyVersion).Set(static_cast<double>(version_));
    metrics_->counter(metrics::CounterId::kWeightUpdates).Increment();
    metrics_->counter(metrics::CounterId::kPhaseSeconds,
                      {{"phase", std::string(metrics::kPhaseWeightSync)}})
        .Increment(Since(t0));
  }
  return Status::Ok();
}

void Learner::HandleWork(transport::Received& msg) {
  const wire::Envelope& env = msg.envelope;
  const std::string& actor = env.sender();
  if (actor.empty()) return;
  switch (env.body_case()) {
    case wire::Envelope::kJoin: {
      ActorInfo& a = actors_[actor];
      const std::string process = env.join().host() + ":" + std::to_string(env.join().pid());
      if (!a.process.empty() && a.process != process) {
        // A restarted actor under the same name: whatever its predecessor held is lost with it.
        const size_t held = ledger_.in_flight();
        ledger_.Leave(actor);
        CHAINRL_LOG(kInfo) << actor << " restarted (" << a.process << " -> " << process
                           << "): " << held - ledger_.in_flight()
                           << " of its leases handed out again";
      }
      a.process = process;
      a.routing = msg.peer;
      a.max_credits = std::clamp<int64_t>(env.join().max_credits(), 1, 1024);
      a.pending_credits = 0;
      ledger_.Heartbeat(actor);
      CHAINRL_LOG(kInfo) << actor << " joined from " << env.join().host() << " (pid "
                         << env.join().pid() << ")";
      break;
    }
    case wire::Envelope::kWorkRequest: {
      ActorInfo& a = actors_[actor];
      if (a.max_credits < 1) a.max_credits = env.work_request().credits();
      a.routing = msg.peer;
      a.pending_credits = std::min<int64_t>(a.pending_credits + env.work_request().credits(),
                                            std::max<int64_t>(a.max_credits, 1));
      ledger_.Heartbeat(actor);
      break;
    }
    case wire::Envelope::kHeartbeat:
      ledger_.Heartbeat(actor);
      break;
    case wire::Envelope::kLeave:
      CHAINRL_LOG(kInfo) << actor << " left: " << env.leave().reason();
      ledger_.Leave(actor);
      actors_.erase(actor);
      break;
    default:
      CHAINRL_LOG(kWarn) << msg.peer_name << ": unexpected message on the work channel, ignored";
  }
}

int64_t Learner::OldestVersion(const wire::Trajectory& t) const {
  int64_t oldest = version_;
  for (const auto& s : t.samples())
    if (s.completion().token_ids_size() > 0)
      oldest = std::min(oldest, wire::OldestPolicyVersion(s.completion().policy_versions()));
  return oldest;
}

// A trajectory as a group to train on (fresh from an actor, or from a checkpoint's buffer).
Result<Accepted> Learner::MakeAccepted(const wire::Trajectory& t) {
  Accepted a;
  a.group.group_id = t.prompt_group_id();
  const size_t index = data_.IndexForGroup(t.prompt_group_id());
  CHAINRL_ASSIGN_OR_RETURN(const auto* prompt, PromptTokens(index));
  a.group.prompt = *prompt;
  if (const auto& spec = data_.train()[index].embeddings; !spec.empty() && embeddings_) {
    CHAINRL_ASSIGN_OR_RETURN(const rollout::EmbeddingRef ref, rollout::ParseEmbeddingRef(spec));
    CHAINRL_ASSIGN_OR_RETURN(a.group.prompt_embeddings, embeddings_->Get(ref));
    a.group.placeholder_token_id = placeholder_id_;
  }
  a.behaviour_version = OldestVersion(t);
  const double n = std::max(1, t.samples_size());
  double correct = 0, length = 0, truncated = 0;
  for (const auto& s : t.samples()) {
    SampleData sd;
    sd.tokens.assign(s.completion().token_ids().begin(), s.completion().token_ids().end());
    sd.behaviour_logprobs.assign(s.completion().behaviour_logprobs().begin(),
                                 s.completion().behaviour_logprobs().end());
    sd.reward = s.reward();
    for (const auto& [name, score] : s.reward_components()) a.component_means[name] += score / n;
    // No end of sequence: cut by the cap or budget, or stopped early in a loop that would have
    // run to the cap (the engine's repetition detector).
    sd.truncated = s.finish_reason() == wire::FINISH_LENGTH ||
                   s.finish_reason() == wire::FINISH_BUDGET ||
                   s.finish_reason() == wire::FINISH_REPETITION;
    auto it = s.reward_components().find(first_reward_);
    sd.correct = it != s.reward_components().end() && it->second >= 1.0;
    correct += sd.correct ? 1 : 0;
    length += static_cast<double>(sd.tokens.size());
    truncated += sd.truncated ? 1 : 0;
    a.group.samples.push_back(std::move(sd));
  }
  a.correct_fraction = correct / n;
  a.mean_length = length / n;
  a.truncated_fraction = truncated / n;
  return a;
}

void Learner::MergeSegment(const wire::Trajectory& t, wire::Trajectory* so_far) const {
  if (so_far->samples_size() == 0) {
    so_far->set_prompt_group_id(t.prompt_group_id());
    const uint32_t G = static_cast<uint32_t>(c_.GetInt("rollout.group_size"));
    for (uint32_t i = 0; i < G; ++i) {
      auto* s = so_far->add_samples();
      s->set_sample_index(i);
      s->set_finish_reason(wire::FINISH_UNFINISHED);
    }
  }
  for (const auto& s : t.samples()) {
    auto* d = so_far->mutable_samples(static_cast<int>(s.sample_index()));
    auto* c = d->mutable_completion();
    c->mutable_token_ids()->Add(s.completion().token_ids().begin(), s.completion().token_ids().end());
    c->mutable_behaviour_logprobs()->Add(s.completion().behaviour_logprobs().begin(),
                                         s.completion().behaviour_logprobs().end());
    wire::AppendPolicyVersionRuns(c->mutable_policy_versions(), s.completion().policy_versions());
    d->mutable_timings()->set_generate_seconds(d->timings().generate_seconds() +
                                               s.timings().generate_seconds());
    if (s.finish_reason() == wire::FINISH_UNFINISHED) continue;
    d->set_finish_reason(s.finish_reason());
    d->set_reward(s.reward());
    *d->mutable_reward_components() = s.reward_components();
    *d->mutable_reward_diagnostics() = s.reward_diagnostics();
    d->mutable_timings()->set_reward_seconds(s.timings().reward_seconds());
  }
}

void Learner::HandleTrajectory(const transport::Received& msg) {
  const auto& t = msg.envelope.trajectory();
  const uint64_t gid = t.prompt_group_id();
  // The samples this lease was to generate: all G of a fresh group, or the unfinished samples of
  // a group carried over from earlier segments.
  auto pit = partials_.find(gid);
  std::set<uint32_t> expected, got;
  if (pit == partials_.end()) {
    for (uint32_t i = 0; i < static_cast<uint32_t>(c_.GetInt("rollout.group_size")); ++i)
      expected.insert(i);
  } else {
    for (const auto& s : pit->second.samples())
      if (s.finish_reason() == wire::FINISH_UNFINISHED) expected.insert(s.sample_index());
  }
  bool finishes = true;
  for (const auto& s : t.samples()) {
    got.insert(s.sample_index());
    finishes = finishes && s.finish_reason() != wire::FINISH_UNFINISHED;
  }
  if (got != expected && ledger_.HoldsLease(t.lease_id(), gid)) {
    CHAINRL_LOG(kWarn) << msg.peer_name << ": trajectory for lease " << t.lease_id() << " of group "
                       << gid << " has " << got.size() << " samples, not the " << expected.size()
                       << " it was leased; ignored (the lease is handed out again when it expires)";
    return;
  }
  const int64_t oldest = OldestVersion(t);
  const Verdict v = ledger_.Complete(t.lease_id(), gid, oldest, version_, finishes);
  if (metrics_) {
    metrics_->histogram(metrics::HistogramId::kStaleness)
        .Observe(static_cast<double>(version_ - oldest));
    metrics_->counter(metrics::CounterId::kReceivedBytes, {{"channel", "trajectories"}})
        .Increment(static_cast<double>(msg.envelope.ByteSizeLong()));
  }
  if (v == Verdict::kDroppedStale) ++stale_dropped_;
  if (!IsAccepted(v)) {
    CHAINRL_LOG(kDebug) << msg.peer_name << ": trajectory for lease " << t.lease_id() << " "
                        << VerdictName(v);
    return;
  }
  for (const auto& s : t.samples())
    rollout_tokens_window_ += static_cast<int64_t>(s.completion().token_ids_size());
  // Segment rollout: keep the segment; the group is trained when its last sample finishes.
  wire::Envelope assembled;
  if (pit != partials_.end() || !finishes) {
    wire::Trajectory& so_far = partials_[gid];
    MergeSegment(t, &so_far);
    ++segments_received_;
    if (!finishes) {
      segment_actor_[gid] = msg.envelope.sender();
      return;
    }
    segment_actor_.erase(gid);
    assembled = wire::MakeEnvelope("learner");
    *assembled.mutable_trajectory() = std::move(so_far);
    partials_.erase(gid);
    assembled.mutable_trajectory()->set_lease_id(t.lease_id());
    assembled.mutable_trajectory()->set_actor_id(t.actor_id());
  }
  const wire::Trajectory& whole = assembled.has_trajectory() ? assembled.trajectory() : t;
  auto accepted = MakeAccepted(whole);
  if (!accepted.ok()) {
    CHAINRL_LOG(kError) << accepted.status().message();
    return;
  }
  Accepted a = std::move(*accepted);
  for (const auto& s : whole.samples())
    samples_multi_version_ += s.completion().policy_versions().versions_size() > 1 ? 1 : 0;
  if (metrics_) {
    for (const auto& s : a.group.samples) {
      metrics_->histogram(metrics::HistogramId::kResponseLength)
          .Observe(static_cast<double>(s.tokens.size()));
      metrics_->histogram(metrics::HistogramId::kReward).Observe(s.reward);
      if (s.truncated) metrics_->counter(metrics::CounterId::kResponsesTruncated).Increment();
    }
  }
  if (c_.GetBool("curriculum.filter_uniform_groups") || lo_.dynamic_sampling) {
    bool uniform = true;
    for (const auto& s : a.group.samples)
      uniform = uniform && s.reward == a.group.samples.front().reward;
    if (uniform) {
      ++groups_filtered_;
      return;
    }
  }
  a.serialized = assembled.has_trajectory() ? assembled.SerializeAsString()
                                             : msg.envelope.SerializeAsString();
  buffer_.push_back(std::move(a));
}

void Learner::Supply() {
  const size_t per_step = static_cast<size_t>(c_.GetInt("rollout.prompts_per_step"));
  // One step of lookahead: actors generate the next batch while this one trains.
  while (ledger_.pending() + ledger_.in_flight() + buffer_.size() < 2 * per_step) {
    Status st = ledger_.AddGroup(next_group_);
    ++next_group_;
    if (!st.ok()) {
      CHAINRL_LOG(kWarn) << st.message();
    }
  }
}

void Learner::Dispatch() {
  if (ledger_.pending() == 0) return;
  const int64_t budget = Budget();
  const int64_t max_new = c_.GetInt("rollout.max_new_tokens");
  const int64_t segment_tokens = c_.GetInt("rollout.segment_tokens");
  const uint64_t seed = static_cast<uint64_t>(c_.GetInt("run.seed"));
  // Every work item of this round samples alike but for its seed.
  wire::SamplingParams sampling;
  sampling.set_temperature(static_cast<float>(c_.GetFloat("rollout.temperature")));
  sampling.set_top_p(static_cast<float>(c_.GetFloat("rollout.top_p")));
  sampling.set_top_k(static_cast<int32_t>(c_.GetInt("rollout.top_k")));
  sampling.set_repetition_penalty(1.0f);
  for (int32_t id : prompts_->stop_token_ids()) sampling.add_stop_token_ids(static_cast<uint32_t>(id));
  for (int64_t id : c_.GetIntList("rollout.stop_token_ids"))
    sampling.add_stop_token_ids(static_cast<uint32_t>(id));
  for (const auto& s : c_.GetStringList("rollout.stop_strings")) sampling.add_stop_strings(s);
  for (auto& [name, a] : actors_) {
    if (a.pending_credits <= 0 || a.routing.empty() || ledger_.pending() == 0) continue;
    // Continuations go back to the actor that generated their last segment when it asks for
    // work: it may still hold their KV (under the same weights) and resume without a prefill.
    auto own_continuation = [this, &name = name](uint64_t gid) {
      auto it = segment_actor_.find(gid);
      return it != segment_actor_.end() && it->second == name;
    };
    std::vector<Lease> leases = ledger_.Dispatch(
        name, static_cast<size_t>(a.pending_credits),
        segment_actor_.empty() ? std::function<bool(uint64_t)>() : own_continuation);
    if (leases.empty()) continue;
    wire::Envelope env = wire::MakeEnvelope("learner");
    auto* batch = env.mutable_work_batch();
    for (const Lease& l : leases) {
      const size_t idx = data_.IndexForGroup(l.group_id);
      const data::Example& ex = data_.train()[idx];
      auto prompt = PromptTokens(idx);
      if (!prompt.ok()) {
        CHAINRL_LOG(kError) << prompt.status().message();
        continue;
      }
      wire::WorkItem* w = batch->add_items();
      w->set_prompt_group_id(l.group_id);
      w->mutable_prompt_token_ids()->Add((*prompt)->begin(), (*prompt)->end());
      auto* sp = w->mutable_sampling();
      *sp = sampling;
      sp->set_seed(Mix(seed ^ Mix(l.group_id * 1315423911ull + static_cast<uint64_t>(l.attempt))));
      w->set_token_budget(static_cast<uint32_t>(budget));
      w->set_max_new_tokens(static_cast<uint32_t>(max_new));
      w->set_group_size(static_cast<uint32_t>(c_.GetInt("rollout.group_size")));
      w->set_policy_version(version_);
      w->set_lease_id(l.lease_id);
      w->set_example_id(ex.id.substr(0, 200));
      w->set_answer_json(ex.answer.dump());
      w->set_metadata_json(ex.metadata.is_null() ? "{}" : ex.metadata.dump());
      w->set_segment_tokens(static_cast<uint32_t>(segment_tokens));
      if (!ex.embeddings.empty()) {
        w->set_prompt_embeddings(ex.embeddings);
        w->set_placeholder_token_id(placeholder_id_);
      }
      if (auto pit = partials_.find(l.group_id); pit != partials_.end()) {
        for (const auto& smp : pit->second.samples()) {
          if (smp.finish_reason() != wire::FINISH_UNFINISHED) continue;
          auto* carried = w->add_carried();
          carried->set_sample_index(smp.sample_index());
          *carried->mutable_segment() = smp.completion();
        }
      }
    }
    Status st = work_->SendTo(a.routing, env);
    if (!st.ok()) {
      // The work never left: its groups go back to the front of the queue at once, and this
      // actor gets no more until it asks again (a restarted one joins under a new routing id).
      CHAINRL_LOG(kWarn) << name << ": work not delivered: " << st.message();
      std::vector<uint64_t> ids;
      for (const Lease& l : leases) ids.push_back(l.lease_id);
      ledger_.Undelivered(ids);
      a.pending_credits = 0;
      continue;
    }
    a.pending_credits -= static_cast<int64_t>(leases.size());
    if (metrics_) {
      metrics_->counter(metrics::CounterId::kGroupsDispatched)
          .Increment(static_cast<double>(leases.size()));
      metrics_->counter(metrics::CounterId::kSentBytes, {{"channel", "work"}})
          .Increment(static_cast<double>(env.ByteSizeLong()));
    }
  }
}

void Learner::UpdateRejectMetrics() {
  if (!metrics_) return;
  for (int r = 0; r < static_cast<int>(wire::RejectReason::kCount); ++r) {
    const auto reason = static_cast<wire::RejectReason>(r);
    const uint64_t now =
        work_->rejects().Get(reason) + traj_->rejects().Get(reason) + weights_->rejects().Get(reason);
    if (now > rejected_seen_[r]) {
      metrics_->counter(metrics::CounterId::kMessagesRejected,
                        {{"reason", wire::RejectReasonName(reason)}})
          .Increment(static_cast<double>(now - rejected_seen_[r]));
      rejected_seen_[r] = now;
    }
  }
}

Status Learner::Pump() {
  // Everything that queued up (e.g. during a training step) is read before leases are expired:
  // an actor that heartbeated meanwhile is alive.
  for (int i = 0; i < 10000; ++i) {
    CHAINRL_ASSIGN_OR_RETURN(auto m, work_->Receive(milliseconds(0)));
    if (!m) break;
    HandleWork(*m);
  }
  for (int i = 0; i < 64; ++i) {
    CHAINRL_ASSIGN_OR_RETURN(auto m, traj_->Receive(milliseconds(0)));
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
  for (auto it = actors_.begin(); it != actors_.end();)
    it = ledger_.IsAlive(it->first) ? std::next(it) : actors_.erase(it);
  Supply();
  Dispatch();
  UpdateRejectMetrics();
  if (metrics_) {
    const auto& k = ledger_.counters();
    metrics_->gauge(metrics::GaugeId::kLeasesInFlight).Set(static_cast<double>(ledger_.in_flight()));
    metrics_->gauge(metrics::GaugeId::kActorsAlive).Set(static_cast<double>(actors_.size()));
    metrics_->gauge(metrics::GaugeId::kQueueDepth, {{"queue", "trained_groups"}})
        .Set(static_cast<double>(buffer_.size()));
    metrics_->gauge(metrics::GaugeId::kQueueDepth, {{"queue", "pending_groups"}})
        .Set(static_cast<double>(ledger_.pending()));
    if (k.reassigned > reassigned_seen_)
      metrics_->counter(metrics::CounterId::kLeasesReassigned)
          .Increment(static_cast<double>(k.reassigned - reassigned_seen_));
    if (k.lost > lost_seen_)
      metrics_->counter(metrics::CounterId::kGroupsLost).Increment(static_cast<double>(k.lost - lost_seen_));
    reassigned_seen_ = k.reassigned;
    lost_seen_ = k.lost;
    static uint64_t weights_sent_seen = 0;
    const uint64_t weights_sent = weights_->bytes_sent();
    metrics_->counter(metrics::CounterId::kSentBytes, {{"channel", "weights"}})
        .Increment(static_cast<double>(weights_sent - std::min(weights_sent, weights_sent_seen)));
    weights_sent_seen = weights_sent;
    metrics_->gauge(metrics::GaugeId::kResidentMemory)
        .Set(static_cast<double>(metrics::ResidentMemoryBytes()));
  }
  return Status::Ok();
}

// DAPO dynamic sampling (or curriculum.filter_uniform_groups) with max_num_gen_batches > 0: once
// that many generation rounds (rounds of prompts_per_step groups accepted since the last step)
// did not fill the batch, the step trains on the groups it has.
bool Learner::GenerationLimitReached() const {
  const int64_t max_rounds = lo_.max_num_gen_batches;
  if (buffer_.empty() || max_rounds <= 0 ||
      !(lo_.dynamic_sampling || c_.GetBool("curriculum.filter_uniform_groups")))
    return false;
  const uint64_t per_step = static_cast<uint64_t>(c_.GetInt("rollout.prompts_per_step"));
  return ledger_.counters().completed - completed_at_step_ >=
         static_cast<uint64_t>(max_rounds) * per_step;
}

Status Learner::TrainStep() {
  const size_t per_step =
      std::min(static_cast<size_t>(c_.GetInt("rollout.prompts_per_step")), buffer_.size());
  const uint64_t generated = ledger_.counters().completed - completed_at_step_;
  std::vector<GroupData> groups;
  json difficulty = json::object();  // bucket -> groups of this step (with difficulty buckets)
  double reward = 0, correct = 0, length = 0, truncated = 0;
  int64_t max_stale = 0;
  std::map<std::string, double> components;  // reward component -> mean over the step's groups
  const int64_t duplicated_before = groups_duplicated_;
  for (size_t i = 0; i < per_step; ++i) {
    Accepted a = std::move(buffer_.front());
    buffer_.pop_front();
    if (!trained_.insert(a.group.group_id).second) ++groups_duplicated_;
    if (data_.has_buckets()) {
      const std::string& d = data_.ForGroup(a.group.group_id).difficulty;
      difficulty[d] = difficulty.value(d, 0) + 1;
    }
    for (const auto& s : a.group.samples) reward += s.reward / a.group.samples.size();
    correct += a.correct_fraction;
    length += a.mean_length;
    truncated += a.truncated_fraction;
    for (const auto& [name, mean] : a.component_means) components[name] += mean / per_step;
    max_stale = std::max(max_stale, version_ - a.behaviour_version);
    groups.push_back(std::move(a.group));
  }
  const double n = static_cast<double>(per_step);
  const bool short_step = per_step < static_cast<size_t>(c_.GetInt("rollout.prompts_per_step"));
  if (short_step) ++gen_limit_steps_;
  // Shaped rewards and advantages (length methods, soft weighting): process_shaping.h.
  std::vector<ShapingGroup> sg(groups.size());
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& s : groups[g].samples) {
      ShapingSample x;
      x.reward = s.reward;
      x.length = static_cast<int64_t>(s.tokens.size());
      x.correct = s.correct;
      x.truncated = s.truncated;
      // No answer template is known to the process: a response that ended by a stop counts as
      // formatted; one stopped in a loop is recorded as truncated, so it is neither formatted nor
      // eligible for LASER-DE's bonus.
      x.formatted = !s.truncated;
      x.looping = s.truncated;
      x.tokens = s.tokens;
      sg[g].samples.push_back(x);
    }
  const ShapedStep shaped_step = shaping_->Shape(step_, Budget(), sg);
  double shaped = 0, soft_weight = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& samples = groups[g].samples;
    for (size_t i = 0; i < samples.size(); ++i) {
      samples[i].reward = shaped_step.rewards[g][i];
      samples[i].advantage = shaped_step.advantages[g][i];
      shaped += samples[i].reward / static_cast<double>(samples.size());
    }
    soft_weight += shaped_step.soft_weights[g] / n;
  }
  const RlStepOptions so = StepOptions();
  auto t0 = Clock::now();
  const double waited = std::chrono::duration<double>(t0 - last_step_end_).count();
  RlStepStats st;
  std::optional<PreferenceStepStats> pref;
  if (lo_.family == ObjectiveFamily::kPreference) {
    // Online DPO family: per group, the best (shaped) reward against the worst one(s) (LOGO: up
    // to 2); groups whose rewards are all equal give no pair.
    PairSelectionOptions ps;
    ps.num_rejected = lo_.preference.loss_type == PreferenceLossType::kLogo ? 2 : 1;
    std::vector<PreferencePairData> pairs;
    for (const auto& g : groups) {
      std::vector<double> r;
      for (const auto& smp : g.samples) r.push_back(smp.reward);
      if (static_cast<int64_t>(r.size()) <= ps.num_rejected) continue;
      auto sel = SelectGroupPair(r, ps);
      if (!sel || g.samples[sel->chosen].tokens.empty()) continue;
      PreferencePairData p;
      p.prompt = g.prompt;
      p.chosen = g.samples[sel->chosen].tokens;
      for (int64_t j : sel->rejected)
        if (!g.samples[j].tokens.empty()) p.rejected.push_back(g.samples[j].tokens);
      if (static_cast<int64_t>(p.rejected.size()) == ps.num_rejected) pairs.push_back(std::move(p));
    }
    RankMessage m;
    m.kind = RankMessageKind::kPreferenceStep;
    m.step = step_;
    CHAINRL_ASSIGN_OR_RETURN(auto mine, Scatter(std::move(m), &RankMessage::pairs, pairs));
    CHAINRL_ASSIGN_OR_RETURN(pref, RunPreferenceUpdate(*model_, *optimizer_, mine, lo_, so));
    st.loss = pref->loss;
    st.grad_norm = pref->grad_norm;
    st.lr = pref->lr;
    st.response_tokens = pref->response_tokens;
  } else {
    RankMessage m;
    m.kind = RankMessageKind::kPolicyStep;
    m.step = step_;
    CHAINRL_ASSIGN_OR_RETURN(auto mine, Scatter(std::move(m), &RankMessage::groups, groups));
    CHAINRL_ASSIGN_OR_RETURN(st, RunPolicyUpdate(*model_, *optimizer_, mine, lo_, so));
  }
  const double train_s = Since(t0);
  ++step_;
  ++version_;
  CHAINRL_RETURN_IF_ERROR(PublishWeights());
  tokens_trained_ += st.response_tokens;
  const double step_s = Since(last_step_end_);
  const double tokens_per_s = static_cast<double>(rollout_tokens_window_) / std::max(step_s, 1e-9);
  rollout_tokens_window_ = 0;
  last_step_end_ = Clock::now();
  json h = {{"phase", "rl"},
            {"step", step_},
            {"reward", reward / n},
            {"shaped_reward", shaped / n},
            {"accuracy", correct / n},
            {"mean_length", length / n},
            {"truncated", truncated / n},
            {"budget", Budget()},
            {"loss", st.loss},
            {"grad_norm", st.grad_norm},
            {"lr", st.lr},
            {"clip_fraction", st.policy.clip_fraction()},
            {"approx_kl", st.policy.approx_kl()},
            {"logprob_mismatch", st.policy.mismatch_tokens > 0
                                     ? st.policy.mismatch_abs_sum / st.policy.mismatch_tokens
                                     : 0.0},
            {"max_staleness", max_stale},
            {"tokens", st.response_tokens},
            {"train_seconds", train_s},
            {"wait_seconds", waited},
            {"rollout_tokens_per_s", tokens_per_s},
            {"groups", per_step},
            {"generated_groups", generated}};
  if (short_step) h["gen_limit_reached"] = true;
  if (pref) {
    h["pairs"] = pref->pairs;
    h["reward_accuracy"] = pref->reward_accuracy;
    h["reward_margin"] = pref->reward_margin;
  }
  if (data_.has_buckets()) h["difficulty"] = difficulty;
  if (shaping_->options().soft_weighting) h["soft_weight_mean"] = soft_weight;
  if (lo_.mastered_token_mask) h["mastered_masked_tokens"] = st.mastered_masked_tokens;
  if (shaped_step.laser_targets[0] > 0) {
    h["laser_d_targets"] = shaped_step.laser_targets;
    if (shaped_step.laser_targets_updated) h["laser_d_updated"] = true;
  }
  completed_at_step_ = ledger_.counters().completed;
  history_.push_back(h);
  log::Event("step", h.dump());
  if (metrics_) {
    using metrics::GaugeId;
    metrics_->counter(metrics::CounterId::kSteps).Increment();
    metrics_->counter(metrics::CounterId::kTrainingTokens).Increment(static_cast<double>(st.response_tokens));
    metrics_->counter(metrics::CounterId::kGroupsTrained).Increment(n);
    metrics_->counter(metrics::CounterId::kGroupsDuplicated)
        .Increment(static_cast<double>(groups_duplicated_ - duplicated_before));
    for (const auto& [name, mean] : components)
      metrics_->gauge(GaugeId::kRewardComponentMean, {{"component", name}}).Set(mean);
    metrics_->counter(metrics::CounterId::kPhaseSeconds, {{"phase", std::string(metrics::kPhaseTraining)}})
        .Increment(train_s);
    metrics_->counter(metrics::CounterId::kPhaseSeconds, {{"phase", std::string(metrics::kPhaseWaiting)}})
        .Increment(waited);
    metrics_->histogram(metrics::HistogramId::kStepDuration).Observe(step_s);
    metrics_->gauge(GaugeId::kRewardMean).Set(reward / n);
    metrics_->gauge(GaugeId::kTruncation).Set(truncated / n);
    metrics_->gauge(GaugeId::kLoss).Set(st.loss);
    metrics_->gauge(GaugeId::kKl).Set(st.policy.approx_kl());
    metrics_->gauge(GaugeId::kClipFraction).Set(st.policy.clip_fraction());
    metrics_->gauge(GaugeId::kGradNorm).Set(st.grad_norm);
    metrics_->gauge(GaugeId::kLearningRate).Set(st.lr);
    metrics_->gauge(GaugeId::kLogprobMismatch).Set(h["logprob_mismatch"].get<double>());
    metrics_->gauge(GaugeId::kStalenessMax).Set(static_cast<double>(max_stale));
    metrics_->gauge(GaugeId::kTokenBudget).Set(static_cast<double>(Budget()));
    if (!std::isnan(st.policy.entropy_mean()))
      metrics_->gauge(GaugeId::kEntropy).Set(st.policy.entropy_mean());
  }
  CHAINRL_LOG(kDebug) << "step " << step_ << ": reward " << reward / n << ", accuracy "
                      << correct / n << ", length " << length / n << ", loss " << st.loss;
  return Status::Ok();
}

void Learner::WriteProgress(const std::string& phase) {
  const int64_t total = c_.GetInt("run.total_steps");
  json p = {{"phase", phase},
            {"step", step_},
            {"total_steps", total},
            {"sft_step", sft_step_},
            {"sft_steps", c_.GetInt("sft.steps")},
            {"version", version_},
            {"budget", Budget()},
            {"elapsed_seconds", wall_before_ + Since(start_)},
            {"actors", actors_.size()}};
  if (!history_.empty()) {
    const json& h = history_.back();
    for (const char* k : {"reward", "accuracy", "mean_length", "rollout_tokens_per_s", "loss"})
      if (h.contains(k)) p[k] = h[k];
  }
  if (phase == "rl" && step_ > 0) {
    double per_step = 0;
    int n = 0;
    for (auto it = history_.rbegin(); it != history_.rend() && n < 5; ++it)
      if (it->value("phase", "") == "rl") per_step += it->value("train_seconds", 0.0) +
                                                      it->value("wait_seconds", 0.0),
                                            ++n;
    if (n > 0) p["eta_seconds"] = per_step / n * static_cast<double>(total - step_);
  }
  if (!evals_.empty()) p["eval_accuracy"] = evals_.back()["accuracy"];
  (void)WriteFileAtomic((fs::path(o_.run_dir) / "progress.json").string(), p.dump() + "\n");
}

// Mean response length of the training rollouts over a window of steps.
std::vector<double> SmoothedLengths(const json& history, int window) {
  std::vector<double> raw, out;
  for (const auto& h : history)
    if (h.value("phase", "") == "rl") raw.push_back(h.value("mean_length", 0.0));
  for (size_t i = 0; i + window <= raw.size(); ++i)
    out.push_back(std::accumulate(raw.begin() + i, raw.begin() + i + window, 0.0) / window);
  if (out.empty() && !raw.empty())
    out.push_back(std::accumulate(raw.begin(), raw.end(), 0.0) / static_cast<double>(raw.size()));
  return out;
}

Status Learner::Finish(bool completed) {
  std::optional<bool> ranks_agree;
  if (dp_) {  // the other ranks leave, after agreeing that every rank holds the same parameters
    RankMessage m;
    m.kind = RankMessageKind::kStop;
    CHAINRL_RETURN_IF_ERROR(Tell(m));
    CHAINRL_ASSIGN_OR_RETURN(ranks_agree, ParametersAgree());
    if (!*ranks_agree) {
      CHAINRL_LOG(kError) << "data parallel: the ranks' parameters differ after the run";
    }
  }
  const bool final_eval_needed = sft_done_;
  json fe = nullptr;
  if (final_eval_needed && !stop_) CHAINRL_RETURN_IF_ERROR(Evaluate("after_rl", &fe));
  if (optimizer_) CHAINRL_RETURN_IF_ERROR(Checkpoint());
  std::string export_dir;
  if (c_.GetBool("checkpoint.export_hf") && completed) {
    export_dir = (fs::path(o_.run_dir) / "export").string();
    CHAINRL_RETURN_IF_ERROR(model::SaveModel(*model_, export_dir));
    CHAINRL_RETURN_IF_ERROR(model::CopyTokenizerFiles(tokenizer_dir_, export_dir));
    CHAINRL_LOG(kInfo) << "exported the policy to " << export_dir;
  }
  const auto& k = ledger_.counters();
  auto lengths = SmoothedLengths(history_, 5);
  json s = {{"run", c_.GetString("run.name")},
            {"completed", completed},
            {"steps", step_},
            {"total_steps", c_.GetInt("run.total_steps")},
            {"sft_steps", sft_step_},
            {"policy_version", version_},
            {"groups_dispatched", k.dispatched},
            {"groups_accepted", k.completed},
            {"groups_trained", static_cast<int64_t>(trained_.size())},
            {"groups_buffered", static_cast<int64_t>(buffer_.size())},
            {"groups_in_flight", static_cast<int64_t>(ledger_.in_flight())},
            {"groups_duplicated", groups_duplicated_},
            {"groups_lost", k.lost},
            {"groups_filtered", groups_filtered_},
            {"steps_at_gen_limit", gen_limit_steps_},
            {"leases_reassigned", k.reassigned},
            {"results_discarded_duplicate", k.duplicates_discarded},
            {"results_discarded_unknown", k.unknown_discarded},
            {"results_dropped_stale", stale_dropped_},
            {"samples_multi_version", samples_multi_version_},
            {"segments_received", segments_received_},
            {"segments_continued", k.segments_continued},
            {"prompt_embedding_cache",
             embeddings_ ? EmbeddingCacheJson(embeddings_->stats()) : json(nullptr)},
            {"groups_part_generated", static_cast<int64_t>(partials_.size())},
            {"actors_declared_dead", k.actors_declared_dead},
            {"rejected_messages",
             work_ ? work_->rejects().Total() + traj_->rejects().Total() +
                         weights_->rejects().Total()
                   : 0},
            {"tokens_trained", tokens_trained_},
            {"accuracy_after_sft", sft_eval_.is_object() ? sft_eval_["accuracy"] : json(nullptr)},
            {"mean_length_after_sft",
             sft_eval_.is_object() ? sft_eval_["mean_length"] : json(nullptr)},
            {"accuracy_after_rl", fe.is_object() ? fe["accuracy"] : json(nullptr)},
            {"mean_length_after_rl", fe.is_object() ? fe["mean_length"] : json(nullptr)},
            {"mean_length_peak",
             lengths.empty() ? json(nullptr) : json(*std::max_element(lengths.begin(), lengths.end()))},
            {"mean_length_final", lengths.empty() ? json(nullptr) : json(lengths.back())},
            {"evals", evals_},
            {"export_dir", export_dir},
            {"wall_seconds", wall_before_ + Since(start_)}};
  if (!history_.empty()) s["final_step"] = history_.back();
  s["learner_ranks"] = dp_ ? dp_->world_size() : 1;
  if (ranks_agree) s["ranks_parameters_identical"] = *ranks_agree;
  // The best held-out accuracy of the run (after SFT, periodic, final) and where it was reached.
  for (const auto& e : evals_)
    if (!s.contains("accuracy_best") || e.value("accuracy", 0.0) > s["accuracy_best"].get<double>()) {
      s["accuracy_best"] = e.value("accuracy", 0.0);
      s["accuracy_best_step"] = e.value("step", 0);
      s["accuracy_best_label"] = e.value("label", "");
    }
  CHAINRL_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(o_.run_dir) / "summary.json").string(), s.dump(1) + "\n"));
  WriteProgress("done");
  log::Event("summary", s.dump());
  // Final figures for a Pushgateway (metrics.pushgateway), kept after this process has exited.
  if (const std::string url = c_.GetString("metrics.pushgateway"); metrics_ && !url.empty()) {
    if (Status st = metrics_->Push(url); !st.ok()) {
      CHAINRL_LOG(kWarn) << st.message();
    }
  }
  return Status::Ok();
}

// The frozen reference: for the KL term, and for DPO/IPO unless reference_free.
Status Learner::LoadReference() {
  const PreferenceLossType t = lo_.preference.loss_type;
  const bool preference_ref = lo_.family == ObjectiveFamily::kPreference &&
                              (t == PreferenceLossType::kDpo || t == PreferenceLossType::kIpo) &&
                              !lo_.preference.reference_free;
  if (lo_.policy.kl_coef <= 0 && !preference_ref) return Status::Ok();
  const std::string ref = c_.GetString("model.reference_path");
  if (!ref.empty()) {
    // Same options as the policy, so that its logprobs match the policy's at equal weights.
    CHAINRL_ASSIGN_OR_RETURN(reference_, model::LoadModel(ref, model_->options()));
  } else {
    reference_ = model::CopyModel(*model_, model_->options());
  }
  reference_->eval();
  return Status::Ok();
}

// Pair `index` of the offline data tokenized (the first rejected response unless LOGO).
Result<PreferencePairData> Learner::OfflinePair(size_t index) {
  if (auto it = pair_cache_.find(index); it != pair_cache_.end()) return it->second;
  const data::PreferenceExample& e = preference_data_[index];
  data::Example ex;
  ex.id = e.id;
  ex.prompt = e.prompt;
  ex.messages = e.messages;
  PreferencePairData p;
  CHAINRL_ASSIGN_OR_RETURN(p.prompt, prompts_->Render(ex));
  CHAINRL_ASSIGN_OR_RETURN(p.chosen, prompts_->EncodeResponse(e.chosen));
  const size_t m = lo_.preference.loss_type == PreferenceLossType::kLogo ? e.rejected.size() : 1;
  for (size_t i = 0; i < m && i < e.rejected.size(); ++i) {
    CHAINRL_ASSIGN_OR_RETURN(auto r, prompts_->EncodeResponse(e.rejected[i]));
    p.rejected.push_back(std::move(r));
  }
  return pair_cache_[index] = std::move(p);
}

// Offline DPO family: rollout.prompts_per_step pairs per step in a seeded order per epoch, one
// optimiser step each; checkpoints and summary as in RL (no actors, no weights published).
Status Learner::RunOfflinePreference() {
  const int64_t total = c_.GetInt("run.total_steps");
  const int64_t every = c_.GetInt("checkpoint.every");
  const uint64_t n = preference_data_.size();
  const uint64_t seed = static_cast<uint64_t>(c_.GetInt("run.seed"));
  CHAINRL_LOG(kInfo) << lo_.algorithm << " (offline): steps " << step_ << ".." << total << " over "
                     << n << " pairs";
  std::vector<size_t> order(n);
  uint64_t order_epoch = ~0ull;
  while (step_ < total && !stop_) {
    const auto t0 = Clock::now();
    const uint64_t per_step = static_cast<uint64_t>(c_.GetInt("rollout.prompts_per_step"));
    std::vector<PreferencePairData> batch;
    size_t want_m = 0;
    for (uint64_t i = 0; i < per_step; ++i) {
      const uint64_t k = static_cast<uint64_t>(step_) * per_step + i;
      if (k / n != order_epoch) {
        order_epoch = k / n;
        std::iota(order.begin(), order.end(), 0);
        if (c_.GetBool("data.shuffle")) {
          std::mt19937_64 rng(Mix(seed ^ Mix(order_epoch + 0x9d)));
          std::shuffle(order.begin(), order.end(), rng);
        }
      }
      CHAINRL_ASSIGN_OR_RETURN(PreferencePairData p, OfflinePair(order[k % n]));
      if (p.chosen.empty() || p.rejected.empty()) continue;
      if (want_m == 0) want_m = p.rejected.size();
      if (p.rejected.size() != want_m) p.rejected.resize(std::min(want_m, p.rejected.size()));
      if (p.rejected.size() == want_m) batch.push_back(std::move(p));
    }
    RankMessage m;
    m.kind = RankMessageKind::kPreferenceStep;
    m.step = step_;
    CHAINRL_ASSIGN_OR_RETURN(auto mine, Scatter(std::move(m), &RankMessage::pairs, batch));
    CHAINRL_ASSIGN_OR_RETURN(PreferenceStepStats st,
                             RunPreferenceUpdate(*model_, *optimizer_, mine, lo_, StepOptions()));
    ++step_;
    ++version_;
    tokens_trained_ += st.response_tokens;
    json h = {{"phase", "preference"},
              {"step", step_},
              {"loss", st.loss},
              {"reward_accuracy", st.reward_accuracy},
              {"reward_margin", st.reward_margin},
              {"pairs", st.pairs},
              {"grad_norm", st.grad_norm},
              {"lr", st.lr},
              {"tokens", st.response_tokens},
              {"train_seconds", Since(t0)}};
    history_.push_back(h);
    log::Event("step", h.dump());
    if (metrics_) {
      metrics_->counter(metrics::CounterId::kSteps).Increment();
      metrics_->gauge(metrics::GaugeId::kLoss).Set(st.loss);
      metrics_->gauge(metrics::GaugeId::kGradNorm).Set(st.grad_norm);
      metrics_->gauge(metrics::GaugeId::kLearningRate).Set(st.lr);
    }
    CHAINRL_RETURN_IF_ERROR(ApplyStage());
    if (every > 0 && step_ % every == 0 && step_ < total) CHAINRL_RETURN_IF_ERROR(Checkpoint());
    WriteProgress("rl");
  }
  return Status::Ok();
}

void Learner::SetThreads() const {
  if (std::getenv("CHAINRL_THREADS") != nullptr) return;  // the environment overrides the config
  int64_t threads = c_.GetInt("learner.threads");
  if (threads == 0) {
    // Every core, shared by the ranks on this host (torchrun's LOCAL_WORLD_SIZE; chainrl train
    // sets it too), so that N ranks do not each start a thread per core.
    int64_t local = 1;
    if (const char* v = std::getenv("LOCAL_WORLD_SIZE"); v != nullptr && dp_ != nullptr)
      local = std::max<int64_t>(1, std::strtoll(v, nullptr, 10));
    threads = std::max<int64_t>(1, std::max(1u, std::thread::hardware_concurrency()) / local);
  }
  at::set_num_threads(static_cast<int>(threads));
}

Result<std::unique_ptr<Optimizer>> Learner::MakeSftOptimizer() const {
  OptimizerOptions oo = lo_.optimizer;
  oo.lr = c_.GetFloat("sft.lr");
  oo.lr_warmup_steps = c_.GetInt("sft.warmup_steps");
  oo.lr_scheduler = LrSchedule::kConstant;
  return Optimizer::Create(model_->named_parameters().pairs(), oo);
}

Result<std::unique_ptr<Optimizer>> Learner::MakeRlOptimizer() const {
  OptimizerOptions oo = lo_.optimizer;
  if (oo.lr_scheduler == LrSchedule::kCosine && oo.total_steps == 0)
    oo.total_steps = c_.GetInt("run.total_steps");
  return Optimizer::Create(model_->named_parameters().pairs(), oo);
}

RlStepOptions Learner::StepOptions() const {
  RlStepOptions so;
  so.micro_batch_tokens = c_.GetInt("learner.micro_batch_tokens");
  so.reference = reference_.get();
  so.data_parallel = dp_;
  if (offline_preference_) return so;  // logprobs of the data at temperature 1
  so.temperature = std::max(1e-6, c_.GetFloat("rollout.temperature"));
  so.ppo_epochs = c_.GetInt("learner.ppo_epochs");
  so.mini_batches = c_.GetInt("learner.mini_batches");
  so.recompute_old_logprobs = c_.GetString("learner.old_logprobs") == "recompute";
  return so;
}

template <typename T>
Result<std::vector<T>> Learner::Scatter(RankMessage m, std::vector<T> RankMessage::*field,
                                        const std::vector<T>& batch) {
  if (!dp_) return batch;
  for (int r = 1; r < dp_->world_size(); ++r) {
    m.*field = ShardOf(batch, r, dp_->world_size());
    CHAINRL_RETURN_IF_ERROR(dp_->Send(r, EncodeRankMessage(m)));
  }
  return ShardOf(batch, 0, dp_->world_size());
}

Status Learner::Tell(const RankMessage& m) {
  if (!dp_) return Status::Ok();
  const std::string bytes = EncodeRankMessage(m);
  for (int r = 1; r < dp_->world_size(); ++r) CHAINRL_RETURN_IF_ERROR(dp_->Send(r, bytes));
  return Status::Ok();
}

Result<bool> Learner::ParametersAgree() {
  uint32_t crc = 0;  // over the parameters' bytes
  for (const auto& p : model_->parameters()) {
    torch::Tensor t = p.detach().to(torch::kCPU).contiguous();
    crc = crc32c::Extend(crc, t.data_ptr(), t.nbytes());
  }
  return dp_->SameOnEveryRank(crc);
}

Status Learner::CheckSameModel() {
  // Names, shapes and dtypes of the parameters: a rank started with another model config would
  // otherwise fail inside a collective with an unhelpful message, or worse.
  std::string layout;
  for (const auto& [name, p] : model_->named_parameters().pairs()) {
    layout += name + ":" + std::to_string(static_cast<int>(p.scalar_type()));
    for (int64_t d : p.sizes()) layout += "," + std::to_string(d);
    layout += ";";
  }
  CHAINRL_ASSIGN_OR_RETURN(bool same,
                           dp_->SameOnEveryRank(crc32c::Value(layout.data(), layout.size())));
  if (same) return Status::Ok();
  return InvalidArgument(
      "data parallel: the ranks' models differ (parameter names, shapes or "
      "dtypes); every rank must run the same model config (this rank: " +
      std::to_string(model_->named_parameters().size()) + " parameters, " +
      model::TorchDtypeName(model_->options().dtype) + ")");
}

Status Learner::FollowStep(const RankMessage& m) {
  if (!optimizer_) {  // the first update of the RL phase, as rank 0's Run() builds it
    sft_done_ = true;
    CHAINRL_ASSIGN_OR_RETURN(optimizer_, MakeRlOptimizer());
    CHAINRL_RETURN_IF_ERROR(LoadReference());
  }
  step_ = m.step;
  CHAINRL_RETURN_IF_ERROR(ApplyStage());  // rank 0 applied the same stage at this step
  if (m.kind == RankMessageKind::kPolicyStep)
    return RunPolicyUpdate(*model_, *optimizer_, m.groups, lo_, StepOptions()).status();
  return RunPreferenceUpdate(*model_, *optimizer_, m.pairs, lo_, StepOptions()).status();
}

// A follower (rank > 0) holds the model and optimiser that rank 0 holds and takes every update
// with it: rank 0 sends each update's shard, the update's collectives sum the gradients, and each
// rank takes the same optimiser step. Followers read no data, talk to no actor, write nothing:
// rank 0 does all of that. They wait for rank 0 as long as it takes (it may wait for rollouts),
// leave when it says stop, and fail as soon as it has gone.
Status Learner::Follow() {
  const int rank = dp_->rank();
  log::SetRole("learner-rank" + std::to_string(rank));
  SetThreads();
  CHAINRL_RETURN_IF_ERROR(SetupObjective());  // shaping too: curriculum stages set its options
  CHAINRL_RETURN_IF_ERROR(LoadPolicy());
  CHAINRL_LOG(kInfo) << "data parallel: rank " << rank << " of " << dp_->world_size()
                     << ", following rank 0";
  int64_t updates = 0;
  while (true) {
    CHAINRL_ASSIGN_OR_RETURN(std::string bytes, dp_->Receive());
    CHAINRL_ASSIGN_OR_RETURN(RankMessage m, DecodeRankMessage(bytes));
    switch (m.kind) {
      case RankMessageKind::kStart:
        step_ = m.step;
        sft_step_ = m.sft_step;
        sft_done_ = m.sft_done;
        if (!m.resume_dir.empty()) {  // the same optimiser state as rank 0 (a shared directory)
          CHAINRL_ASSIGN_OR_RETURN(optimizer_, sft_done_ ? MakeRlOptimizer() : MakeSftOptimizer());
          Status st = LoadCheckpoint(m.resume_dir, *model_, *optimizer_).status();
          if (!st.ok())
            return st.WithPrefix("rank " + std::to_string(rank) + " resuming from rank 0's " +
                                 "checkpoint (checkpoint.dir must be readable by every rank)");
          CHAINRL_LOG(kInfo) << "resumed from " << m.resume_dir << " at step " << step_;
        }
        CHAINRL_RETURN_IF_ERROR(CheckSameModel());
        CHAINRL_RETURN_IF_ERROR(dp_->Broadcast(model_->parameters()));
        if (sft_done_ && optimizer_) {  // resumed in the RL phase: its reference, as rank 0's
          CHAINRL_RETURN_IF_ERROR(LoadReference());
          CHAINRL_RETURN_IF_ERROR(ApplyStage());
        }
        break;
      case RankMessageKind::kSftStep:
        if (!optimizer_) {
          CHAINRL_ASSIGN_OR_RETURN(optimizer_, MakeSftOptimizer());
        }
        sft_step_ = m.step;
        CHAINRL_RETURN_IF_ERROR(RunSftUpdate(*model_, *optimizer_, m.sft, lo_,
                                             c_.GetInt("learner.micro_batch_tokens"),
                                             /*skip_optimizer_step=*/false, dp_)
                                    .status());
        ++updates;
        break;
      case RankMessageKind::kSftDone:
        sft_done_ = true;
        optimizer_.reset();
        break;
      case RankMessageKind::kPolicyStep:
      case RankMessageKind::kPreferenceStep:
        CHAINRL_RETURN_IF_ERROR(FollowStep(m));
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

Status Learner::Run() {
  log::SetRole("learner");
  SetThreads();
  CHAINRL_RETURN_IF_ERROR(Setup());
  if (dp_ && lo_.drpo)
    return InvalidArgument(
        "length_shaping.methods 'drpo' scores the whole batch at once: it cannot run with "
        "several learner ranks");
  std::string resume = o_.resume.empty() ? c_.GetString("checkpoint.resume") : o_.resume;
  if (!resume.empty()) CHAINRL_RETURN_IF_ERROR(Resume(resume));
  if (offline_preference_) sft_done_ = true;  // no warm-up: the pairs are the training data
  if (dp_) {
    // The other ranks start where this one does: the same checkpoint (optimiser moments and step
    // count), then rank 0's parameters, so every rank steps from the same point.
    RankMessage m;
    m.kind = RankMessageKind::kStart;
    m.step = step_;
    m.sft_step = sft_step_;
    m.sft_done = sft_done_;
    m.resume_dir = resumed_from_;
    CHAINRL_RETURN_IF_ERROR(Tell(m));
    CHAINRL_RETURN_IF_ERROR(CheckSameModel());
    CHAINRL_RETURN_IF_ERROR(dp_->Broadcast(model_->parameters()));
    CHAINRL_LOG(kInfo) << "data parallel: rank 0 of " << dp_->world_size()
                       << ", the batch of every update split across the ranks";
  }
  if (!sft_done_) {
    CHAINRL_RETURN_IF_ERROR(RunSft());
    if (stop_) return Finish(false);
  }
  if (!optimizer_) {
    CHAINRL_ASSIGN_OR_RETURN(optimizer_, MakeRlOptimizer());
  }
  CHAINRL_RETURN_IF_ERROR(LoadReference());
  CHAINRL_RETURN_IF_ERROR(ApplyStage());
  if (offline_preference_) {
    CHAINRL_RETURN_IF_ERROR(RunOfflinePreference());
    return Finish(step_ >= c_.GetInt("run.total_steps"));
  }
  CHAINRL_RETURN_IF_ERROR(StartTransport());
  CHAINRL_RETURN_IF_ERROR(PublishWeights());
  const int64_t total = c_.GetInt("run.total_steps");
  const int64_t every = c_.GetInt("checkpoint.every");
  const int64_t eval_every = c_.GetInt("run.eval_every");
  const size_t per_step = static_cast<size_t>(c_.GetInt("rollout.prompts_per_step"));
  CHAINRL_LOG(kInfo) << "RL: steps " << step_ << ".." << total << ", " << per_step
                     << " groups of " << c_.GetInt("rollout.group_size") << " per step";
  last_step_end_ = Clock::now();
  completed_at_step_ = ledger_.counters().completed;
  auto last_progress = Clock::now() - std::chrono::hours(1);
  while (step_ < total && !stop_) {
    CHAINRL_RETURN_IF_ERROR(Pump());
    if (buffer_.size() >= per_step || GenerationLimitReached()) {
      CHAINRL_RETURN_IF_ERROR(TrainStep());
      CHAINRL_RETURN_IF_ERROR(ApplyStage());
      if (every > 0 && step_ % every == 0 && step_ < total) CHAINRL_RETURN_IF_ERROR(Checkpoint());
      if (eval_every > 0 && step_ % eval_every == 0 && step_ < total)
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
    CHAINRL_ASSIGN_OR_RETURN(auto m, traj_->Receive(milliseconds(20)));
    if (m && m->envelope.has_trajectory()) HandleTrajectory(*m);
  }
  return Finish(step_ >= total);
}

}  // namespace

Status RunLearner(const Config& config, const LearnerProcessOptions& options,
                  const std::atomic<bool>& stop) {
  // Started by a torchrun-style launcher as one of several ranks (RANK, WORLD_SIZE, MASTER_ADDR,
  // MASTER_PORT): rank 0 is the learner the actors talk to; the others follow it (Follow()).
  CHAINRL_ASSIGN_OR_RETURN(const RankInfo who, RankInfoFromEnvironment());
  if (options.run_dir.empty() && who.rank == 0)
    return InvalidArgument("the learner needs a run directory");
  std::unique_ptr<DataParallel> dp;
  if (who.world_size > 1) {
    DataParallelOptions dpo;
    dpo.backend = config.GetString("distributed.backend");
    dpo.timeout_seconds = config.GetFloat("distributed.timeout_seconds");
    CHAINRL_ASSIGN_OR_RETURN(dp, DataParallel::Join(who, dpo));
  }
  Learner l(config, options, stop, dp.get());
  return who.rank == 0 ? l.Run() : l.Follow();
}

}  // namespace chainrl::learner
