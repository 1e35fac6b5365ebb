// Training batches from accepted trajectories, and a step's figures (see train_batch.h).
#include "learner/train_batch.h"

#include <algorithm>
#include <utility>

#include "core/wire.h"
#include "learner/record_file.h"

namespace chainrl::learner {

using nlohmann::json;

SampleEnd SampleEndOf(wire::FinishReason r) {
  switch (r) {
    case wire::FINISH_LENGTH:
      return SampleEnd::kLength;
    case wire::FINISH_BUDGET:
      return SampleEnd::kBudget;
    case wire::FINISH_REPETITION:
      return SampleEnd::kRepetition;
    case wire::FINISH_ABORTED:
      return SampleEnd::kAborted;
    default:
      return SampleEnd::kStop;
  }
}

AcceptedGroup GroupFromTrajectory(const wire::Trajectory& t, std::vector<int32_t> prompt,
                                  int64_t behaviour_version) {
  AcceptedGroup a;
  a.group.group_id = t.prompt_group_id();
  a.group.prompt = std::move(prompt);
  a.behaviour_version = behaviour_version;
  const double n = std::max(1, t.samples_size());
  double correct = 0, length = 0, truncated = 0;
  for (const auto& s : t.samples()) {
    SampleData sd;
    sd.tokens.assign(s.completion().token_ids().begin(), s.completion().token_ids().end());
    sd.behaviour_logprobs.assign(s.completion().behaviour_logprobs().begin(),
                                 s.completion().behaviour_logprobs().end());
    const wire::PolicyVersionRuns& runs = s.completion().policy_versions();
    int64_t covered = 0;
    for (int k = 0; k < runs.versions_size() && k < runs.lengths_size(); ++k) {
      sd.versions.push_back({runs.versions(k), static_cast<int64_t>(runs.lengths(k))});
      covered += runs.lengths(k);
    }
    if (covered != static_cast<int64_t>(sd.tokens.size())) sd.versions.clear();  // unknown
    sd.reward = s.reward();
    for (const auto& [name, score] : s.reward_components()) a.component_means[name] += score / n;
    sd.end = SampleEndOf(s.finish_reason());
    sd.correct = s.correct();  // the actor's reward verdict
    correct += sd.correct ? 1 : 0;
    length += static_cast<double>(sd.tokens.size());
    truncated += sd.truncated() ? 1 : 0;
    a.group.samples.push_back(std::move(sd));
  }
  a.correct_fraction = correct / n;
  a.mean_length = length / n;
  a.truncated_fraction = truncated / n;
  return a;
}

size_t CountStale(const std::deque<AcceptedGroup>& buffer, size_t n, int64_t version,
                  int64_t bound) {
  size_t k = 0;
  for (size_t i = 0; i < n && i < buffer.size(); ++i)
    k += version - buffer[i].behaviour_version > bound ? 1 : 0;
  return k;
}

std::vector<AcceptedGroup> TakeStale(std::deque<AcceptedGroup>* buffer, int64_t version,
                                     int64_t bound) {
  std::vector<AcceptedGroup> stale;
  if (CountStale(*buffer, buffer->size(), version, bound) == 0) return stale;
  std::deque<AcceptedGroup> kept;
  for (AcceptedGroup& a : *buffer) {
    if (version - a.behaviour_version > bound) {
      stale.push_back(std::move(a));
    } else {
      kept.push_back(std::move(a));
    }
  }
  *buffer = std::move(kept);
  return stale;
}

StepBatch TakeStepBatch(std::deque<AcceptedGroup>* buffer, size_t n, int64_t version,
                        std::set<uint64_t>* trained,
                        const std::function<std::string(uint64_t)>& difficulty_of) {
  StepBatch b;
  if (difficulty_of) b.difficulty = json::object();
  for (size_t i = 0; i < n; ++i) {
    AcceptedGroup a = std::move(buffer->front());
    buffer->pop_front();
    if (!trained->insert(a.group.group_id).second) ++b.duplicated;
    if (difficulty_of) {
      const std::string d = difficulty_of(a.group.group_id);
      b.difficulty[d] = b.difficulty.value(d, 0) + 1;
    }
    for (const auto& s : a.group.samples) b.reward += s.reward / a.group.samples.size();
    b.correct += a.correct_fraction;
    b.length += a.mean_length;
    b.truncated += a.truncated_fraction;
    for (const auto& [name, mean] : a.component_means) b.components[name] += mean / n;
    b.max_staleness = std::max(b.max_staleness, version - a.behaviour_version);
    b.groups.push_back(std::move(a.group));
  }
  return b;
}

std::vector<ShapingGroup> ShapingInputs(const std::vector<GroupData>& groups) {
  std::vector<ShapingGroup> sg(groups.size());
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& s : groups[g].samples) {
      ShapingSample x;
      x.reward = s.reward;
      x.length = static_cast<int64_t>(s.tokens.size());
      x.correct = s.correct;
      x.truncated = s.truncated();
      x.formatted = !s.truncated();
      x.looping = s.end == SampleEnd::kRepetition;
      x.tokens = s.tokens;
      sg[g].samples.push_back(x);
    }
  return sg;
}

void ApplyShaping(const ShapedStep& shaped, StepBatch* batch) {
  const double n = batch->size();
  for (size_t g = 0; g < batch->groups.size(); ++g) {
    auto& samples = batch->groups[g].samples;
    for (size_t i = 0; i < samples.size(); ++i) {
      samples[i].reward = shaped.rewards[g][i];
      samples[i].advantage = shaped.advantages[g][i];
      batch->shaped_reward += samples[i].reward / static_cast<double>(samples.size());
    }
    batch->soft_weight += shaped.soft_weights[g] / n;
  }
  batch->laser_targets = shaped.laser_targets;
  batch->laser_targets_updated = shaped.laser_targets_updated;
}

double LogprobMismatch(const PolicyLossStats& s) {
  return s.mismatch_tokens > 0 ? s.mismatch_abs_sum / s.mismatch_tokens : 0.0;
}

json StepHistoryEntry(const StepBatch& b, const StepOutcome& o) {
  const double n = b.size();
  const RlStepStats& st = o.stats;
  json h = {{"phase", "rl"},
            {"step", o.step},
            {"reward", b.reward / n},
            {"shaped_reward", b.shaped_reward / n},
            {"accuracy", b.correct / n},
            {"mean_length", b.length / n},
            {"truncated", b.truncated / n},
            {"budget", o.budget},
            {"loss", st.loss},
            {"grad_norm", st.grad_norm},
            {"lr", st.lr},
            {"clip_fraction", st.policy.clip_fraction()},
            {"approx_kl", st.policy.approx_kl()},
            {"logprob_mismatch", LogprobMismatch(st.policy)},
            {"max_staleness", b.max_staleness},
            {"tokens", st.response_tokens},
            {"train_seconds", o.train_seconds},
            {"wait_seconds", o.wait_seconds},
            {"rollout_tokens_per_s", o.rollout_tokens_per_s},
            {"groups", b.groups.size()},
            {"generated_groups", o.generated_groups}};
  // Entropy is measured only when an objective or a metric asks for it (a sum of 0: not measured).
  if (st.policy.entropy_sum != 0) h["entropy_mean"] = st.policy.entropy_mean();
  if (o.gen_limit_reached) h["gen_limit_reached"] = true;
  if (st.skipped_steps > 0) h["update_skipped"] = true;  // a non-finite gradient norm
  if (o.preference) {
    h["pairs"] = o.preference->pairs;
    h["reward_accuracy"] = o.preference->reward_accuracy;
    h["reward_margin"] = o.preference->reward_margin;
  }
  if (!b.difficulty.is_null()) h["difficulty"] = b.difficulty;
  if (o.soft_weighting) h["soft_weight_mean"] = b.soft_weight;
  if (o.mastered_token_mask) h["mastered_masked_tokens"] = st.mastered_masked_tokens;
  if (st.mismatch.stale_tokens() > 0) {
    // Numerics apart from staleness (docs/ALGORITHMS.md §2.2): the mismatch at equal weights and
    // each trained token's lag.
    h["mismatch"] = st.mismatch.ToJson();
    h["token_staleness_mean"] = st.mismatch.staleness_mean();
    h["token_staleness_max"] = st.mismatch.staleness_max();
  }
  if (o.rollout_correction && st.policy.tokens > 0) {
    // Rollout correction (docs/ALGORITHMS.md §2.4): its mean weight and the tokens it dropped.
    h["rollout_weight_mean"] = st.policy.correction_weight_sum / st.policy.tokens;
    h["rollout_masked_fraction"] = st.policy.correction_zeroed / st.policy.tokens;
  }
  if (b.laser_targets[0] > 0) {
    h["laser_d_targets"] = b.laser_targets;
    if (b.laser_targets_updated) h["laser_d_updated"] = true;
  }
  return h;
}

StepMetrics StepMetricsOf(const StepBatch& b, const StepOutcome& o) {
  const double n = b.size();
  const RlStepStats& st = o.stats;
  StepMetrics sm;
  sm.groups = n;
  sm.response_tokens = st.response_tokens;
  sm.groups_duplicated = b.duplicated;
  sm.reward_components = b.components;
  sm.train_seconds = o.train_seconds;
  sm.wait_seconds = o.wait_seconds;
  sm.step_seconds = o.step_seconds;
  sm.reward_mean = b.reward / n;
  sm.truncated_fraction = b.truncated / n;
  sm.loss = st.loss;
  sm.approx_kl = st.policy.approx_kl();
  sm.clip_fraction = st.policy.clip_fraction();
  sm.grad_norm = st.grad_norm;
  sm.lr = st.lr;
  sm.mismatch = st.mismatch;
  sm.max_staleness = b.max_staleness;
  sm.token_budget = o.budget;
  sm.entropy_mean = st.policy.entropy_mean();
  return sm;
}

json PreferenceHistoryEntry(int64_t step, const PreferenceStepStats& st, double train_seconds) {
  return {{"phase", "preference"},
          {"step", step},
          {"loss", st.loss},
          {"reward_accuracy", st.reward_accuracy},
          {"reward_margin", st.reward_margin},
          {"pairs", st.pairs},
          {"grad_norm", st.grad_norm},
          {"lr", st.lr},
          {"tokens", st.response_tokens},
          {"train_seconds", train_seconds}};
}

std::string BufferRecords(const std::deque<AcceptedGroup>& buffer) {
  std::string out;
  for (const auto& a : buffer) AppendRecord(&out, a.serialized);
  return out;
}

Result<std::vector<BufferedTrajectory>> ReadBufferRecords(std::string_view bytes,
                                                          const std::string& where,
                                                          uint32_t vocab_size) {
  wire::Limits limits;
  if (vocab_size > 0) limits.vocab_size = vocab_size;
  CHAINRL_ASSIGN_OR_RETURN(auto records, SplitRecords(bytes, where));
  std::vector<BufferedTrajectory> out;
  out.reserve(records.size());
  for (std::string_view rec : records) {
    wire::Envelope e;
    if (!e.ParseFromArray(rec.data(), static_cast<int>(rec.size())) || !e.has_trajectory())
      return Corrupt(where + ": record " + std::to_string(out.size() + 1) +
                     " does not parse as a trajectory envelope");
    // The checks a trajectory passed when it arrived (token ids, logprobs and versions per token,
    // finite rewards), so that a damaged or forged checkpoint cannot carry what a peer could not.
    if (Status st = wire::Validate(e, limits); !st.ok())
      return Corrupt(where + ": record " + std::to_string(out.size() + 1) + ": " + st.message());
    out.push_back({std::move(*e.mutable_trajectory()), std::string(rec)});
  }
  return out;
}

bool GenerationLimitReached(size_t buffered, bool filtering, int64_t max_rounds,
                            uint64_t completed_since_step, uint64_t per_step) {
  if (buffered == 0 || max_rounds <= 0 || !filtering) return false;
  return completed_since_step >= static_cast<uint64_t>(max_rounds) * per_step;
}

}  // namespace chainrl::learner
