// The actor's loop (see actor.h): credits, leases, generation, rewards, trajectories, weights.
#include "actors/actor.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/channel.h"
#include "core/cpu_budget.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/weights_transfer.h"
#include "core/wire.h"
#include "model/flat_weights.h"
#include "model/lora_io.h"
#include "model/model_io.h"
#include "model/tokenizer.h"
#include "rewards/reward_config.h"
#include "rewards/reward_metrics.h"
#include "rewards/reward_pool.h"
#include "rollout/embedding_cache.h"
#include "rollout/engine.h"

namespace chainrl::actors {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int64_t UnixMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

wire::FinishReason ToWire(rollout::FinishReason f) {
  switch (f) {
    case rollout::FinishReason::kStop:
      return wire::FINISH_STOP;
    case rollout::FinishReason::kLength:
      return wire::FINISH_LENGTH;
    case rollout::FinishReason::kBudget:
      return wire::FINISH_BUDGET;
    case rollout::FinishReason::kRepetition:
      return wire::FINISH_REPETITION;
    default:
      return wire::FINISH_ABORTED;
  }
}

// Sends a heartbeat every `interval` on its own socket, so that a long generation or a blocked
// trajectory queue never makes the learner think this actor is dead.
class HeartbeatThread {
 public:
  HeartbeatThread(transport::Context& ctx, std::string endpoint, std::string id,
                  milliseconds interval, transport::CurveKeys curve)
      : ctx_(ctx),
        endpoint_(std::move(endpoint)),
        id_(std::move(id)),
        interval_(interval),
        curve_(std::move(curve)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~HeartbeatThread() {
    stop_ = true;
    thread_.join();
  }
  std::atomic<int64_t> version{-1};
  std::atomic<uint32_t> in_flight{0};
  // The leases this actor holds (received, trajectory not yet sent), told to the learner so that
  // one restarted from a checkpoint can hand out at once the leases whose results it never got.
  void SetLeases(std::vector<uint64_t> ids) {
    std::lock_guard<std::mutex> lock(mu_);
    leases_ = std::move(ids);
  }

 private:
  void Run() {
    transport::ChannelOptions o;
    o.name = id_;
    o.send_timeout = milliseconds(200);
    o.send_hwm = 4;
    o.curve = curve_;
    auto ch = transport::Channel::Open(ctx_, transport::ChannelKind::kWorkClient, endpoint_, o);
    if (!ch.ok()) {
      CHAINRL_LOG(kError) << "heartbeat channel: " << ch.status().message();
      return;
    }
    while (!stop_) {
      wire::Envelope env = wire::MakeEnvelope(id_);
      auto* hb = env.mutable_heartbeat();
      hb->set_policy_version(std::max<int64_t>(version.load(), 0));
      hb->set_in_flight(in_flight.load());
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (uint64_t id : leases_) hb->add_lease_ids(id);
      }
      hb->set_unix_ms(UnixMs());
      (void)(*ch)->Send(env);  // a learner that is away simply misses it
      for (auto t = Clock::now(); !stop_ && Clock::now() - t < interval_;)
        std::this_thread::sleep_for(milliseconds(10));
    }
  }
  transport::Context& ctx_;
  std::string endpoint_, id_;
  milliseconds interval_;
  transport::CurveKeys curve_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<uint64_t> leases_;
};

// One sample to generate: all G of a fresh item, or only the carried samples of a continuation
// (segment rollout), each resuming its tokens (same seed, so its draws go on).
struct Job {
  size_t item;
  uint32_t sample_index;
  std::vector<int32_t> carried;
};

// The work items held at once, generated together (continuous batching across prompt groups),
// and what became of them. jobs, reqs, results and score_of are indexed alike.
struct WorkBatch {
  std::vector<wire::WorkItem> items;
  std::vector<Job> jobs;
  std::vector<rollout::GenerationRequest> reqs;
  std::vector<rollout::GenerationResult> results;
  rollout::EngineStats engine_stats;
  std::vector<int64_t> score_of;  // index into scores; -1 for a sample whose segment ended first
  std::vector<rewards::RewardResult> scores;
  int64_t new_tokens = 0;
  Clock::time_point t0, t1, t2;  // generation starts, rewards start, rewards end
};

// The cap on a sample's whole response.
int64_t ResponseCap(const wire::WorkItem& item) {
  return item.max_new_tokens() > 0 ? item.max_new_tokens() : item.token_budget();
}

// The longest prompt + response any item may need.
int64_t LongestSequence(const std::vector<wire::WorkItem>& items) {
  int64_t max_len = 0;
  for (const auto& item : items)
    max_len = std::max<int64_t>(max_len, item.prompt_token_ids_size() + ResponseCap(item));
  return max_len;
}

std::vector<Job> JobsOf(const std::vector<wire::WorkItem>& items) {
  std::vector<Job> jobs;
  for (size_t b = 0; b < items.size(); ++b) {
    const auto& item = items[b];
    if (item.carried_size() > 0) {
      for (const auto& c : item.carried())
        jobs.push_back(
            {b, c.sample_index(),
             std::vector<int32_t>(c.segment().token_ids().begin(), c.segment().token_ids().end())});
    } else {
      for (uint32_t i = 0; i < item.group_size(); ++i) jobs.push_back({b, i, {}});
    }
  }
  return jobs;
}

Result<rollout::GenerationRequest> RequestFor(const wire::WorkItem& item, const Job& j) {
  const int64_t cap = ResponseCap(item);
  rollout::GenerationRequest r;
  // Stable across leases, so that a continuation finds the KV its last segment left here.
  r.id = std::to_string(item.prompt_group_id()) + ":" + std::to_string(j.sample_index);
  r.prompt.assign(item.prompt_token_ids().begin(), item.prompt_token_ids().end());
  r.carried = j.carried;  // shorter than cap: checked when the work item was decoded
  r.sampling.temperature = item.sampling().temperature();
  r.sampling.top_k = item.sampling().top_k();
  r.sampling.top_p = item.sampling().top_p();
  r.sampling.seed = item.sampling().seed() + j.sample_index;
  r.max_new_tokens = cap;
  r.budget_tokens = item.token_budget() < cap ? item.token_budget() : 0;
  r.segment_tokens = item.segment_tokens();
  if (!item.prompt_embeddings().empty()) {
    CHAINRL_ASSIGN_OR_RETURN(r.embeddings, rollout::ParseEmbeddingRef(item.prompt_embeddings()));
    r.placeholder_token_id = item.placeholder_token_id();
  }
  r.stop_token_ids.assign(item.sampling().stop_token_ids().begin(),
                          item.sampling().stop_token_ids().end());
  r.stop_strings.assign(item.sampling().stop_strings().begin(),
                        item.sampling().stop_strings().end());
  return r;
}

}  // namespace

Status CheckWorkItem(const wire::WorkItem& item, int64_t max_positions, int64_t vocab_size) {
  const int64_t prompt = item.prompt_token_ids_size();
  if (prompt == 0) return InvalidArgument("the prompt has no tokens");
  const int64_t cap = ResponseCap(item);
  if (prompt + cap > max_positions)
    return InvalidArgument("a prompt of " + std::to_string(prompt) + " tokens and up to " +
                           std::to_string(cap) + " new tokens exceed the model's context of " +
                           std::to_string(max_positions) + " positions (max_position_embeddings)");
  auto outside = [&](uint32_t id, const std::string& where) {
    return InvalidArgument(where + " token id " + std::to_string(id) +
                           " is outside the model's vocabulary [0, " + std::to_string(vocab_size) +
                           ")");
  };
  int64_t placeholders = 0;
  for (uint32_t id : item.prompt_token_ids()) {
    if (static_cast<int64_t>(id) >= vocab_size) return outside(id, "prompt");
    placeholders += static_cast<int64_t>(id) == item.placeholder_token_id();
  }
  for (const auto& c : item.carried())
    for (uint32_t id : c.segment().token_ids())
      if (static_cast<int64_t>(id) >= vocab_size) return outside(id, "carried");
  if (!item.prompt_embeddings().empty()) {
    auto ref = rollout::ParseEmbeddingRef(item.prompt_embeddings());
    if (!ref.ok()) return InvalidArgument("prompt embeddings: " + ref.status().message());
    if (item.placeholder_token_id() < 0 || item.placeholder_token_id() >= vocab_size)
      return InvalidArgument("prompt embeddings: placeholder token id " +
                             std::to_string(item.placeholder_token_id()) +
                             " is outside the model's vocabulary");
    if (placeholders == 0)
      return InvalidArgument("prompt embeddings: the prompt has no placeholder token " +
                             std::to_string(item.placeholder_token_id()));
  }
  return Status::Ok();
}

namespace {

class Actor {
 public:
  Actor(const Config& config, const ActorOptions& options, const std::atomic<bool>& stop)
      : config_(config),
        options_(options),
        stop_(stop),
        id_("actor-" + std::to_string(options.index)) {}

  Status Run();

 private:
  Status Connect();
  // Swaps in the newest announced weights. wait: until some version is loaded or `max_wait`.
  Status UpdateWeights(bool wait, milliseconds max_wait = milliseconds::max());
  // The learner hands out work stamped with its policy version; an actor behind it (e.g. after a
  // learner restart, when the new weights server does not know us yet) rejoins and fetches.
  Status CatchUp(int64_t wanted);
  Status ConnectWeights();
  // Tells the learner who we are (host, pid, credits): after connecting, and again once weights
  // show which learner hands out work. The learner counts our credits from zero again.
  void SendJoin();
  Status Pump(milliseconds timeout);
  // Generates everything held, scores the finished samples and sends one trajectory per item.
  Status GenerateAndSend();
  // Hands `item`'s lease back to the learner (WorkDeclined), saying why.
  void Decline(const wire::WorkItem& item, const std::string& why);
  rollout::EngineOptions EngineOptionsFor(int64_t max_seq_len);
  // The batch's requests generated, on the engine kept from earlier calls where it is long enough.
  Status Generate(WorkBatch& w);
  // The finished samples' reward inputs; sets w.score_of and counts w.new_tokens.
  std::vector<rewards::RewardInput> RewardInputs(WorkBatch& w) const;
  void RecordBatchMetrics(const WorkBatch& w);
  // Item b's samples as a trajectory, stamped with the next sequence number.
  wire::Envelope TrajectoryOf(const WorkBatch& w, size_t b);
  void FillSample(const WorkBatch& w, size_t k, wire::Sample* s) const;
  Status SendTrajectory(const wire::Envelope& env);
  void Leave(const std::string& reason);

  const Config& config_;
  ActorOptions options_;
  const std::atomic<bool>& stop_;
  std::string id_;
  transport::Context ctx_{1};
  std::unique_ptr<transport::Channel> work_, traj_;
  std::unique_ptr<transport::WeightsClient> weights_;
  std::unique_ptr<HeartbeatThread> heartbeat_;
  std::unique_ptr<metrics::MetricsRegistry> metrics_;
  std::shared_ptr<model::DecoderModel> model_;
  std::optional<Tokenizer> tokenizer_;
  std::unique_ptr<rewards::RewardPool> rewards_;
  // The reward workers' figures in metrics_ (gone before metrics_ and rewards_ are).
  std::unique_ptr<rewards::RewardWorkerMetrics> reward_worker_metrics_;
  // Prompt embeddings of work items that carry them: loaded once, reused by the G samples of a
  // group and by its later segments while they stay in the cache.
  std::shared_ptr<rollout::EmbeddingCache> embeddings_;
  // The engine lives across leases: a sample continued here (segment rollout) under the weights
  // its KV was computed with resumes from the KV kept in its slot instead of prefilling its prompt
  // and carried tokens again. Rebuilt only for longer sequences; its kept KV is dropped when the
  // weights changed since the last call.
  std::unique_ptr<rollout::RolloutEngine> engine_;
  int64_t engine_max_len_ = 0;
  int64_t kv_version_ = -1;  // the weights the engine's kept KV belongs to
  int64_t continued_resumed_ = 0, continued_prefilled_ = 0;
  int64_t version_ = -1;
  int credits_ = 2;
  int outstanding_ = 0;  // credits asked for and not yet answered
  std::deque<wire::WorkItem> items_;
  Clock::time_point last_heard_ = Clock::now();
  uint64_t seq_ = 0;
};

Status Actor::Connect() {
  transport::ChannelOptions o;
  o.name = id_;
  o.curve = options_.curve;
  work_.reset();
  CHAINRL_ASSIGN_OR_RETURN(work_,
                           transport::Channel::Open(ctx_, transport::ChannelKind::kWorkClient,
                                                    options_.endpoints.work, o));
  if (!traj_) {
    transport::ChannelOptions t = o;
    t.send_hwm = 4;  // a paused learner holds us back after a few trajectories: bounded memory
    t.send_timeout = milliseconds(500);
    CHAINRL_ASSIGN_OR_RETURN(
        traj_, transport::Channel::Open(ctx_, transport::ChannelKind::kTrajectorySource,
                                        options_.endpoints.trajectories, t));
  }
  CHAINRL_RETURN_IF_ERROR(ConnectWeights());
  SendJoin();
  last_heard_ = Clock::now();
  return Status::Ok();
}

void Actor::SendJoin() {
  wire::Envelope join = wire::MakeEnvelope(id_);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  join.mutable_join()->set_host(host);
  join.mutable_join()->set_pid(static_cast<uint32_t>(getpid()));
  join.mutable_join()->set_max_credits(static_cast<uint32_t>(credits_));
  (void)work_->Send(join);
  outstanding_ = 0;  // a join starts the learner's count of our credits afresh
}

Status Actor::ConnectWeights() {
  transport::WeightsClientOptions wo;
  wo.channel.name = id_;
  wo.channel.curve = options_.curve;
  weights_.reset();
  CHAINRL_ASSIGN_OR_RETURN(weights_,
                           transport::WeightsClient::Connect(ctx_, options_.endpoints.weights, wo));
  return Status::Ok();
}

Status Actor::CatchUp(int64_t wanted) {
  if (wanted <= version_) return Status::Ok();
  CHAINRL_RETURN_IF_ERROR(UpdateWeights(/*wait=*/true, milliseconds(1000)));
  if (version_ >= wanted) return Status::Ok();
  CHAINRL_LOG(kInfo) << "work is stamped with policy version " << wanted << " but we hold "
                     << version_ << "; rejoining the weights server";
  CHAINRL_RETURN_IF_ERROR(ConnectWeights());
  const int64_t before = version_;
  version_ = -1;  // a restarted learner may publish versions we already saw: take its latest
  CHAINRL_RETURN_IF_ERROR(UpdateWeights(/*wait=*/true, milliseconds(10000)));
  if (version_ < 0) version_ = before;
  SendJoin();  // a restarted learner may never have heard our first join
  return Status::Ok();
}

Status Actor::UpdateWeights(bool wait, milliseconds max_wait) {
  const auto deadline =
      max_wait == milliseconds::max() ? Clock::time_point::max() : Clock::now() + max_wait;
  const int64_t start_version = version_;
  // A Join that reached no one (sockets the learner bound only to check them at start-up, a
  // learner restarting) is never answered: while waiting, join again, every 5 s at first and
  // at most every 60 s.
  auto rejoin_after = milliseconds(5000);
  auto last_join = Clock::now();
  while (!stop_ && Clock::now() < deadline) {
    if (wait && version_ != start_version) return Status::Ok();
    CHAINRL_ASSIGN_OR_RETURN(auto announce, weights_->PollAnnounce(milliseconds(wait ? 500 : 0)));
    if (!announce) {
      if (!wait) return Status::Ok();
      if (Clock::now() - last_join > rejoin_after) {
        CHAINRL_LOG(kInfo) << "no weights announced for " << rejoin_after.count() / 1000
                           << " s; joining the weights server again";
        CHAINRL_RETURN_IF_ERROR(ConnectWeights());
        last_join = Clock::now();
        rejoin_after = std::min(rejoin_after * 2, milliseconds(60000));
      }
      continue;
    }
    auto t0 = Clock::now();
    auto buf = weights_->Fetch(*announce);
    if (!buf.ok()) {
      CHAINRL_LOG(kWarn) << "weights version " << announce->version() << ": "
                         << buf.status().message() << " (will retry with the next announcement)";
      if (!wait) return Status::Ok();
      continue;
    }
    CHAINRL_RETURN_IF_ERROR(model::UnpackFlatWeights(*model_, buf->bytes, announce->format(),
                                                     "weights from " + options_.endpoints.weights));
    if (model_->has_lora() && config_.GetBool("lora.actor_merge")) model_->MergeLora();
    if (metrics_)
      metrics_->counter(metrics::CounterId::kReceivedBytes, {{"channel", "weights"}})
          .Increment(static_cast<double>(buf->bytes.size()));
    weights_->Recycle(std::move(*buf));
    version_ = announce->version();
    heartbeat_->version = version_;
    last_heard_ = Clock::now();
    if (metrics_) {
      metrics_->counter(metrics::CounterId::kWeightUpdates).Increment();
      metrics_->gauge(metrics::GaugeId::kPolicyVersion).Set(static_cast<double>(version_));
      metrics_
          ->counter(metrics::CounterId::kPhaseSeconds,
                    {{"phase", std::string(metrics::kPhaseWeightSync)}})
          .Increment(Seconds(t0, Clock::now()));
    }
    CHAINRL_LOG(kDebug) << "policy version " << version_;
    return Status::Ok();
  }
  return Status::Ok();
}

Status Actor::Pump(milliseconds timeout) {
  CHAINRL_ASSIGN_OR_RETURN(auto msg, work_->Receive(timeout));
  if (!msg) return Status::Ok();
  last_heard_ = Clock::now();
  const wire::Envelope& env = msg->envelope;
  if (env.has_error()) {
    Status refusal = transport::IsRefusal(env, msg->peer_name);
    if (env.error().code() == wire::ERROR_VERSION_MISMATCH) return refusal;
    CHAINRL_LOG(kWarn) << refusal.message();
    return Status::Ok();
  }
  if (env.has_work_batch()) {
    outstanding_ = std::max(0, outstanding_ - env.work_batch().items_size());
    for (const auto& item : env.work_batch().items()) items_.push_back(item);
    std::vector<uint64_t> held;
    for (const auto& item : items_) held.push_back(item.lease_id());
    heartbeat_->SetLeases(std::move(held));
  }
  return Status::Ok();
}

Status Actor::SendTrajectory(const wire::Envelope& env) {
  // Blocks (in send_timeout slices) while the learner's queue is full: backpressure, not buffering.
  while (!stop_) {
    Status st = traj_->Send(env);
    if (st.ok() && metrics_)
      metrics_->counter(metrics::CounterId::kSentBytes, {{"channel", "trajectories"}})
          .Increment(static_cast<double>(env.ByteSizeLong()));
    if (st.ok()) return st;
    if (st.code() != StatusCode::kDeadlineExceeded) return st;
  }
  return Aborted("stopping with a trajectory unsent");
}

void Actor::Decline(const wire::WorkItem& item, const std::string& why) {
  CHAINRL_LOG(kWarn) << "declining lease " << item.lease_id() << " (group "
                     << item.prompt_group_id() << ", example '" << item.example_id().substr(0, 128)
                     << "'): " << why;
  wire::Envelope env = wire::MakeEnvelope(id_);
  auto* d = env.mutable_work_declined();
  d->set_lease_id(item.lease_id());
  d->set_prompt_group_id(item.prompt_group_id());
  d->set_reason(why.substr(0, 1024));
  (void)work_->Send(env);  // unsent, the lease expires at the learner instead
  if (metrics_) metrics_->counter(metrics::CounterId::kLeasesDeclined).Increment();
}

Status Actor::GenerateAndSend() {
  // Everything held is generated together: continuous batching across prompt groups. An item this
  // model cannot make is declined alone, before anything is allocated for it.
  WorkBatch w;
  const auto& mc = model_->config();
  for (auto& item : items_) {
    Status fits = CheckWorkItem(item, mc.max_position_embeddings, mc.vocab_size);
    if (fits.ok()) {
      w.items.push_back(std::move(item));
    } else {
      Decline(item, fits.message());
    }
  }
  items_.clear();
  if (w.items.empty()) {
    heartbeat_->SetLeases({});
    return Status::Ok();
  }
  int64_t wanted = -1;
  for (const auto& item : w.items) wanted = std::max<int64_t>(wanted, item.policy_version());
  CHAINRL_RETURN_IF_ERROR(CatchUp(wanted));
  heartbeat_->in_flight = static_cast<uint32_t>(w.items.size());
  std::vector<uint64_t> held;
  for (const auto& item : w.items) held.push_back(item.lease_id());
  heartbeat_->SetLeases(std::move(held));
  w.t0 = Clock::now();
  CHAINRL_RETURN_IF_ERROR(Generate(w));
  w.t1 = Clock::now();
  // Rewards for every finished sample at once (plugins batch their calls); a sample whose segment
  // ended first is scored when it finishes, in a later lease.
  CHAINRL_ASSIGN_OR_RETURN(w.scores, rewards_->Score(RewardInputs(w)));
  w.t2 = Clock::now();
  RecordBatchMetrics(w);
  for (size_t b = 0; b < w.items.size(); ++b)
    CHAINRL_RETURN_IF_ERROR(SendTrajectory(TrajectoryOf(w, b)));
  heartbeat_->in_flight = 0;
  heartbeat_->SetLeases({});
  return Status::Ok();
}

rollout::EngineOptions Actor::EngineOptionsFor(int64_t max_seq_len) {
  rollout::EngineOptions eo;
  eo.max_batch = config_.GetInt("rollout.max_batch_size");
  eo.max_seq_len = max_seq_len;
  // Always false: the schema refuses true, as trajectories have no field for the entropies.
  eo.compute_entropy = config_.GetBool("rollout.compute_entropy");
  const Tokenizer& tok = *tokenizer_;
  eo.token_bytes = [&tok](int32_t id) {
    auto b = tok.DecodeBytes({id});
    return b.ok() ? *b : std::string();
  };
  eo.embedding_cache = embeddings_;
  eo.segment_min_occupancy = config_.GetFloat("rollout.segment_min_occupancy");
  eo.prompt_hold_bytes = config_.GetInt("rollout.prompt_hold_bytes");
  eo.repetition_detection = config_.GetBool("rollout.repetition_detection");
  eo.repetition.min_repeats = config_.GetInt("rollout.repetition_min_repeats");
  // New weights are swapped in between decode steps: the batch in progress goes on under them
  // (its tokens record which version produced them) instead of being thrown away or waited for.
  eo.between_steps = [this]() -> Result<int64_t> {
    CHAINRL_RETURN_IF_ERROR(UpdateWeights(/*wait=*/false));
    return std::max<int64_t>(version_, 0);
  };
  return eo;
}

Status Actor::Generate(WorkBatch& w) {
  w.jobs = JobsOf(w.items);
  for (const Job& j : w.jobs) {
    CHAINRL_ASSIGN_OR_RETURN(auto r, RequestFor(w.items[j.item], j));
    w.reqs.push_back(std::move(r));
  }
  const int64_t max_len = LongestSequence(w.items);
  // Room for the longest sequence so far, with headroom so that a slightly longer prompt does not
  // rebuild the engine (and drop its kept KV).
  const bool rebuild = !engine_ || max_len > engine_max_len_;
  if (rebuild) engine_max_len_ = std::max(max_len, engine_max_len_ + engine_max_len_ / 4);
  const rollout::EngineOptions eo = EngineOptionsFor(engine_max_len_);
  torch::NoGradGuard no_grad;
  if (rebuild) {
    engine_ = std::make_unique<rollout::RolloutEngine>(model_, eo);
  } else if (kv_version_ != version_) {
    engine_->InvalidateKeptKv();  // computed under other weights: continuations prefill again
  }
  engine_->ResetStats();
  auto generated = engine_->Generate(w.reqs);
  if (!generated.ok()) {
    engine_.reset();  // nothing of a failed call is kept
    return generated.status();
  }
  w.results = std::move(*generated);
  kv_version_ = version_;
  w.engine_stats = engine_->stats();
  continued_resumed_ += w.engine_stats.resumed + w.engine_stats.restored;
  continued_prefilled_ += w.engine_stats.reprefilled;
  if (w.engine_stats.version_changes_mid_sequence > 0) {
    CHAINRL_LOG(kDebug) << "weights swapped " << w.engine_stats.version_changes_mid_sequence
                        << " time(s) in the middle of a generation batch";
  }
  return Status::Ok();
}

std::vector<rewards::RewardInput> Actor::RewardInputs(WorkBatch& w) const {
  const Tokenizer& tok = *tokenizer_;
  std::vector<rewards::RewardInput> inputs;
  w.score_of.assign(w.jobs.size(), -1);
  std::vector<std::string> prompt_texts(w.items.size());
  for (size_t b = 0; b < w.items.size(); ++b) {
    const auto& ids = w.items[b].prompt_token_ids();
    auto text = tok.Decode({ids.begin(), ids.end()});
    prompt_texts[b] = text.ok() ? *text : "";
  }
  for (size_t k = 0; k < w.jobs.size(); ++k) {
    const auto& r = w.results[k];
    const auto& item = w.items[w.jobs[k].item];
    w.new_tokens += static_cast<int64_t>(r.tokens.size());
    if (r.finish == rollout::FinishReason::kUnfinished) continue;
    std::vector<int32_t> all = w.reqs[k].carried;
    all.insert(all.end(), r.tokens.begin(), r.tokens.end());
    rewards::RewardInput in;
    in.example_id = item.example_id();
    in.prompt = prompt_texts[w.jobs[k].item];
    auto text = tok.Decode(all, /*skip_special=*/true);
    in.response = text.ok() ? *text : "";
    if (r.stop_text_bytes >= 0) {
      auto raw = tok.DecodeBytes(all);
      if (raw.ok()) in.response = raw->substr(0, static_cast<size_t>(r.stop_text_bytes));
    }
    in.token_ids = std::move(all);
    in.finish_reason = rollout::FinishReasonName(r.finish);
    in.answer_json = item.answer_json().empty() ? "null" : item.answer_json();
    in.metadata_json = item.metadata_json().empty() ? "{}" : item.metadata_json();
    w.score_of[k] = static_cast<int64_t>(inputs.size());
    inputs.push_back(std::move(in));
  }
  return inputs;
}

void Actor::RecordBatchMetrics(const WorkBatch& w) {
  if (!metrics_) return;
  const rollout::EngineStats& es = w.engine_stats;
  metrics_->counter(metrics::CounterId::kRolloutTokens)
      .Increment(static_cast<double>(w.new_tokens));
  metrics_->counter(metrics::CounterId::kPrefillTokens)
      .Increment(static_cast<double>(es.prefill_tokens));
  // Group prefix sharing as a cache: a new sample's prompt either took a group member's prefill
  // (a hit) or was prefilled (a miss).
  metrics_->counter(metrics::CounterId::kCacheHits, {{"cache", "prefix"}})
      .Increment(static_cast<double>(es.prompt_shared));
  metrics_->counter(metrics::CounterId::kCacheMisses, {{"cache", "prefix"}})
      .Increment(static_cast<double>(es.prompt_prefills));
  // Segment continuations as a cache: resumed from KV kept here (a hit) or prefilled again.
  metrics_->counter(metrics::CounterId::kCacheHits, {{"cache", "segment_kv"}})
      .Increment(static_cast<double>(es.resumed + es.restored));
  metrics_->counter(metrics::CounterId::kCacheMisses, {{"cache", "segment_kv"}})
      .Increment(static_cast<double>(es.reprefilled));
  metrics_
      ->counter(metrics::CounterId::kPhaseSeconds,
                {{"phase", std::string(metrics::kPhaseGeneration)}})
      .Increment(Seconds(w.t0, w.t1));
  metrics_
      ->counter(metrics::CounterId::kPhaseSeconds, {{"phase", std::string(metrics::kPhaseReward)}})
      .Increment(Seconds(w.t1, w.t2));
  rewards::CountRewardOutcomes(*metrics_, rewards_->specs(), w.scores);
}

wire::Envelope Actor::TrajectoryOf(const WorkBatch& w, size_t b) {
  const auto& item = w.items[b];
  wire::Envelope env = wire::MakeEnvelope(id_);
  env.set_seq(++seq_);
  auto* t = env.mutable_trajectory();
  t->set_prompt_group_id(item.prompt_group_id());
  t->set_lease_id(item.lease_id());
  t->set_actor_id(id_);
  for (size_t k = 0; k < w.jobs.size(); ++k) {
    if (w.jobs[k].item == b) FillSample(w, k, t->add_samples());
  }
  return env;
}

void Actor::FillSample(const WorkBatch& w, size_t k, wire::Sample* s) const {
  const auto& r = w.results[k];
  s->set_sample_index(w.jobs[k].sample_index);
  auto* seg = s->mutable_completion();
  for (int32_t id : r.tokens) seg->add_token_ids(static_cast<uint32_t>(id));
  for (float lp : r.logprobs) seg->add_behaviour_logprobs(std::min(lp, 0.0f));
  *seg->mutable_policy_versions() = wire::CompressPolicyVersions(r.versions);
  s->mutable_timings()->set_generate_seconds(Seconds(w.t0, w.t1));
  if (w.score_of[k] < 0) {
    s->set_finish_reason(wire::FINISH_UNFINISHED);
    return;
  }
  const auto& specs = rewards_->specs();
  const auto& score = w.scores[static_cast<size_t>(w.score_of[k])];
  s->set_finish_reason(ToWire(r.finish));
  s->set_reward(score.total);
  s->set_correct(score.correct());
  for (size_t j = 0; j < score.rewards.size() && j < specs.size(); ++j) {
    const auto& o = score.rewards[j];
    (*s->mutable_reward_components())[specs[j].name] = o.score;
    if (o.error != rewards::RewardError::kNone)
      (*s->mutable_reward_diagnostics())[specs[j].name] =
          std::string(rewards::RewardErrorName(o.error)) + ": " + o.message.substr(0, 1024);
  }
  s->mutable_timings()->set_reward_seconds(Seconds(w.t1, w.t2));
}

void Actor::Leave(const std::string& reason) {
  if (!work_) return;
  wire::Envelope env = wire::MakeEnvelope(id_);
  env.mutable_leave()->set_reason(reason);
  (void)work_->Send(env);
  if (weights_) weights_->Leave();
}

Status Actor::Run() {
  log::SetRole(id_);
  credits_ = static_cast<int>(config_.GetInt("actors.credits"));
  metrics::MetricsOptions metrics_options;
  metrics_options.set_role("actor").set_actor_id(options_.index).set_listen("");  // metrics.bind
  if (!options_.run_dir.empty())
    metrics_options.set_address_file(
        (std::filesystem::path(options_.run_dir) / ("metrics-" + id_ + ".addr")).string());
  metrics_ = metrics::StartProcessMetrics(config_, metrics_options);
  const std::string model_dir = config_.GetString("model.path");
  std::string tok_dir = config_.GetString("tokenizer.path");
  if (tok_dir.empty()) tok_dir = model_dir;
  CHAINRL_ASSIGN_OR_RETURN(tokenizer_, Tokenizer::FromDir(tok_dir));
  // Actors hold their weights in the compute dtype (no master copy); the learner publishes in it.
  CHAINRL_ASSIGN_OR_RETURN(auto mo,
                           model::ModelOptionsFromConfig(config_, model::ModelRole::kInference));
  CHAINRL_RETURN_IF_ERROR(model::RequireCpuProcess(mo, config_));
  // The learner publishes the policy before any work: weight files are read when they are here,
  // and an actor on a host with only the model's config (--fetch-run) starts from its shape.
  bool has_weights = false;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(model_dir, ec))
    has_weights = has_weights || e.path().extension() == ".safetensors";
  if (has_weights) {
    CHAINRL_ASSIGN_OR_RETURN(model_, model::LoadModel(model_dir, mo));
  } else {
    CHAINRL_ASSIGN_OR_RETURN(model_, model::BuildModelFromConfig(model_dir, mo));
  }
  CHAINRL_LOG(kInfo) << "model " << model_dir << ": " << model::TorchDtypeName(mo.dtype)
                     << " weights on " << mo.device.str();
  // A LoRA run publishes the adapters alone: the base must be here, and the adapters the learner
  // sends (in this dtype) replace these before anything is generated.
  CHAINRL_ASSIGN_OR_RETURN(const bool lora,
                           model::AttachLoraFromConfig(*model_, config_, mo.dtype));
  if (lora && !has_weights)
    return InvalidArgument(model_dir +
                           " holds no weights, and with lora.enabled the learner "
                           "publishes only the adapters: this host needs the base "
                           "model's safetensors at model.path");
  if (lora) {
    CHAINRL_LOG(kInfo) << "LoRA rank " << model_->lora_options().rank
                       << ": taking the learner's adapters on the base model ("
                       << (config_.GetBool("lora.actor_merge") ? "merged into the weights"
                                                               : "unmerged")
                       << ")";
  }
  model_->eval();
  // Reward plugins are the one part of a run each actor host installs itself.
  auto rewards = rewards::CreateRewardPool(config_);
  if (!rewards.ok())
    return rewards.status().WithPrefix(
        "this actor's rewards (reward plugins are installed on every actor host, at the paths "
        "the run's [[rewards]] name)");
  rewards_ = std::move(rewards).value();
  if (metrics_) {
    reward_worker_metrics_ = std::make_unique<rewards::RewardWorkerMetrics>(*metrics_, *rewards_);
    metrics_->counter(metrics::CounterId::kLeasesDeclined);  // the series exists from the start
  }
  embeddings_ = rollout::MakeEmbeddingCache(config_, model_->config().hidden_size, metrics_.get());
  const auto hb_interval = milliseconds(
      static_cast<int64_t>(config_.GetFloat("actors.heartbeat_interval_seconds") * 1000));
  const auto silence_limit = milliseconds(
      static_cast<int64_t>(config_.GetFloat("actors.heartbeat_timeout_seconds") * 3000));
  heartbeat_ = std::make_unique<HeartbeatThread>(ctx_, options_.endpoints.work, id_, hb_interval,
                                                 options_.curve);
  CHAINRL_RETURN_IF_ERROR(Connect());
  CHAINRL_LOG(kInfo) << "connected to " << options_.endpoints.work << "; waiting for weights";
  CHAINRL_RETURN_IF_ERROR(UpdateWeights(/*wait=*/true));
  if (!stop_) {
    CHAINRL_LOG(kInfo) << "policy version " << version_ << " loaded; generating";
    // The first join may have gone to sockets the learner bound only to check them at start-up
    // and then closed (ZeroMQ drops what such a peer received): the learner that published these
    // weights is the one that hands out work, so join it again before asking.
    SendJoin();
  }
  while (!stop_) {
    CHAINRL_RETURN_IF_ERROR(UpdateWeights(/*wait=*/false));
    const int want = credits_ - static_cast<int>(items_.size()) - outstanding_;
    if (want > 0) {
      wire::Envelope req = wire::MakeEnvelope(id_);
      req.mutable_work_request()->set_credits(static_cast<uint32_t>(want));
      if (work_->Send(req).ok()) outstanding_ += want;
    }
    CHAINRL_RETURN_IF_ERROR(Pump(items_.empty() ? milliseconds(200) : milliseconds(0)));
    while (!items_.empty() && static_cast<int>(items_.size()) < credits_) {
      // Take whatever else has already arrived, without waiting.
      const size_t before = items_.size();
      CHAINRL_RETURN_IF_ERROR(Pump(milliseconds(0)));
      if (items_.size() == before) break;
    }
    if (!items_.empty()) {
      Status sent = GenerateAndSend();
      if (!sent.ok() && stop_ && sent.code() == StatusCode::kAborted) {
        // Asked to stop while the learner took no more trajectories (it may have finished): the
        // leases held go back with the Leave below; that is a stop, not a failure.
        CHAINRL_LOG(kWarn) << sent.message() << "; its lease goes back to the learner";
        break;
      }
      CHAINRL_RETURN_IF_ERROR(sent);
      continue;
    }
    if (Clock::now() - last_heard_ > silence_limit) {
      // The learner has been silent for long: it may have restarted. Reconnect and rejoin.
      CHAINRL_LOG(kWarn)
          << "no word from the learner for "
          << std::chrono::duration_cast<milliseconds>(Clock::now() - last_heard_).count() / 1000.0
          << " s; reconnecting to " << options_.endpoints.work;
      CHAINRL_RETURN_IF_ERROR(Connect());
    }
    if (metrics_)
      metrics_->gauge(metrics::GaugeId::kResidentMemory)
          .Set(static_cast<double>(metrics::ResidentMemoryBytes()));
  }
  Leave("stopped");
  const auto es = embeddings_->stats();
  if (es.hits + es.misses > 0) {
    CHAINRL_LOG(kInfo) << "prompt-embedding cache: " << es.hits << " hits, " << es.misses
                       << " misses, " << es.evictions << " evictions, " << es.bytes
                       << " bytes held";
  }
  if (continued_resumed_ + continued_prefilled_ > 0) {
    CHAINRL_LOG(kInfo) << "segments continued here: " << continued_resumed_
                       << " resumed from kept KV, " << continued_prefilled_ << " prefilled again";
  }
  CHAINRL_LOG(kInfo) << "stopped";
  // Final figures for a Pushgateway (metrics.pushgateway), kept after this process has exited.
  metrics::PushFinalMetrics(metrics_.get(), config_.GetString("metrics.pushgateway"));
  return Status::Ok();
}

}  // namespace

int ActorThreads(const Config& config, const char* env_threads) {
  if (const int n = PositiveCount(env_threads); n > 0) return n;
  const int64_t configured = config.GetInt("actors.threads");
  if (configured > 0) return static_cast<int>(configured);
  return ThreadShare(ReadCpuBudget(), CpuProcessesFromEnv(1));
}

Status RunActor(const Config& config, const ActorOptions& options, const std::atomic<bool>& stop) {
  const ThreadChoice choice =
      ChooseThreads("actors.threads", config.GetInt("actors.threads"), /*processes=*/1);
  at::set_num_threads(choice.threads);
  CHAINRL_LOG(kInfo) << "actor-" << options.index << ": compute threads: " << choice.threads << " ("
                     << choice.why << ")";
  Actor actor(config, options, stop);
  return actor.Run();
}

}  // namespace chainrl::actors
