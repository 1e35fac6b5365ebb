// Token-budget schedules, stages, difficulty filtering/weighting and the bucket sampler
// (docs/ALGORITHMS.md §5.1–§5.5).
#include "learner/curriculum.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <sstream>

#include "core/check.h"

namespace chainrl::learner {

Result<BudgetSchedule> ParseBudgetSchedule(std::string_view name) {
  if (name == "constant") return BudgetSchedule::kConstant;
  if (name == "linear") return BudgetSchedule::kLinear;
  if (name == "exponential") return BudgetSchedule::kExponential;
  if (name == "step") return BudgetSchedule::kStep;
  return InvalidArgument("budget_schedule: unknown value \"" + std::string(name) +
                         "\"; valid values: constant, linear, exponential, step");
}

const char* BudgetScheduleName(BudgetSchedule s) {
  switch (s) {
    case BudgetSchedule::kConstant:
      return "constant";
    case BudgetSchedule::kLinear:
      return "linear";
    case BudgetSchedule::kExponential:
      return "exponential";
    case BudgetSchedule::kStep:
      return "step";
  }
  return "?";
}

Status ValidateTokenBudgetOptions(const TokenBudgetOptions& o) {
  if (o.initial_budget < 1) return InvalidArgument("initial_budget must be >= 1");
  if (o.min_budget < 1) return InvalidArgument("min_budget must be >= 1");
  if (o.schedule == BudgetSchedule::kLinear && o.final_budget < 1)
    return InvalidArgument("final_budget must be >= 1");
  if ((o.schedule == BudgetSchedule::kLinear || o.schedule == BudgetSchedule::kExponential) &&
      o.decay_steps < 1)
    return InvalidArgument("decay_steps must be >= 1");
  if (o.schedule == BudgetSchedule::kExponential && !(o.gamma > 0 && o.gamma <= 1))
    return InvalidArgument("gamma must be in (0, 1]");
  for (size_t i = 0; i < o.milestones.size(); ++i) {
    if (o.milestones[i].second < 1)
      return InvalidArgument("milestones[" + std::to_string(i) + "]: budget must be >= 1");
    if (i > 0 && o.milestones[i].first <= o.milestones[i - 1].first)
      return InvalidArgument("milestones[" + std::to_string(i) + "]: steps must strictly increase");
  }
  return Status::Ok();
}

int64_t TokenBudgetAt(const TokenBudgetOptions& o, int64_t step) {
  double b = static_cast<double>(o.initial_budget);
  switch (o.schedule) {
    case BudgetSchedule::kConstant:
      break;
    case BudgetSchedule::kLinear: {
      const double frac =
          std::min(1.0, static_cast<double>(step) / static_cast<double>(o.decay_steps));
      b = std::round(static_cast<double>(o.initial_budget) +
                     static_cast<double>(o.final_budget - o.initial_budget) * frac);
      break;
    }
    case BudgetSchedule::kExponential:
      b = std::floor(static_cast<double>(o.initial_budget) *
                     std::pow(o.gamma, static_cast<double>(step / o.decay_steps)));
      break;
    case BudgetSchedule::kStep:
      for (const auto& [s, budget] : o.milestones)
        if (s <= step) b = static_cast<double>(budget);
      break;
  }
  return std::max(o.min_budget, static_cast<int64_t>(b));
}

Result<StageSchedule> StageSchedule::Create(std::vector<Stage> stages) {
  if (stages.empty()) return InvalidArgument("stages: at least one stage is required");
  for (size_t i = 0; i < stages.size(); ++i) {
    const std::string where = "stages[" + std::to_string(i) + "] (" + stages[i].name + ")";
    if (i == 0 && stages[i].start_step != 0)
      return InvalidArgument(where + ": the first stage must start at step 0");
    if (i > 0 && stages[i].start_step <= stages[i - 1].start_step)
      return InvalidArgument(where + ": start_step must be greater than the previous stage's");
    for (const auto& [key, value] : stages[i].overrides) {
      if (key.empty() || key.front() == '.' || key.back() == '.' ||
          key.find("..") != std::string::npos)
        return InvalidArgument(where + ": malformed override key \"" + key + "\"");
    }
  }
  StageSchedule s;
  s.stages_ = std::move(stages);
  return s;
}

size_t StageSchedule::IndexAt(int64_t step) const {
  size_t idx = 0;
  for (size_t i = 0; i < stages_.size(); ++i)
    if (stages_[i].start_step <= step) idx = i;
  return idx;
}

bool StageSchedule::SwitchesAt(int64_t step) const {
  return step == 0 || IndexAt(step) != IndexAt(step - 1);
}

Result<DifficultyStage> ParseDifficultyStage(std::string_view name) {
  if (name == "easy") return DifficultyStage::kEasy;
  if (name == "medium") return DifficultyStage::kMedium;
  if (name == "hard") return DifficultyStage::kHard;
  return InvalidArgument("difficulty_stage: unknown value \"" + std::string(name) +
                         "\"; valid values: easy, medium, hard");
}

double DifficultySoftWeight(double acc, DifficultyStage stage) {
  const double bell = std::cos(std::numbers::pi * (acc - 0.5));
  switch (stage) {
    case DifficultyStage::kEasy:
      return acc == 0 ? 0.0 : (acc > 0.5 ? 1.0 : bell);
    case DifficultyStage::kMedium:
      return acc == 0 ? 0.0 : bell;
    case DifficultyStage::kHard:
      return acc == 0 ? 0.25 : (acc > 0.5 ? bell : 1.0);
  }
  return 1.0;
}

void ApplyDifficultySoftWeights(std::span<double> advantages, std::span<const uint8_t> correct,
                                std::span<const int64_t> group_ids, DifficultyStage stage) {
  CHAINRL_CHECK(advantages.size() == correct.size() && advantages.size() == group_ids.size(),
                "advantages, correct and group_ids must have one entry per sample");
  std::map<int64_t, std::pair<double, double>> acc;  // group → (correct, count)
  for (size_t i = 0; i < group_ids.size(); ++i) {
    auto& a = acc[group_ids[i]];
    a.first += correct[i] ? 1.0 : 0.0;
    a.second += 1.0;
  }
  for (size_t i = 0; i < advantages.size(); ++i) {
    const auto& a = acc[group_ids[i]];
    advantages[i] *= DifficultySoftWeight(a.first / a.second, stage);
  }
}

size_t DifficultyBucketIndex(double pass_rate, std::span<const double> edges) {
  size_t b = 0;
  for (double e : edges)
    if (e <= pass_rate) ++b;
  return b;
}

namespace {
Status CheckWeights(const std::vector<std::vector<int64_t>>& buckets,
                    const std::vector<double>& weights) {
  if (weights.size() != buckets.size())
    return InvalidArgument("bucket_weights has " + std::to_string(weights.size()) +
                           " entries for " + std::to_string(buckets.size()) + " buckets");
  bool any = false;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!(weights[i] >= 0) || !std::isfinite(weights[i]))
      return InvalidArgument("bucket_weights[" + std::to_string(i) + "] must be finite and >= 0");
    any = any || (weights[i] > 0 && !buckets[i].empty());
  }
  if (!any) return InvalidArgument("bucket_weights: no non-empty bucket has a positive weight");
  return Status::Ok();
}
}  // namespace

Result<DifficultyBucketSampler> DifficultyBucketSampler::Create(
    std::vector<std::vector<int64_t>> buckets, std::vector<double> weights, uint64_t seed) {
  CHAINRL_RETURN_IF_ERROR(CheckWeights(buckets, weights));
  DifficultyBucketSampler s;
  s.buckets_ = std::move(buckets);
  s.weights_ = std::move(weights);
  s.rng_.seed(seed);
  s.order_.resize(s.buckets_.size());
  s.cursor_.assign(s.buckets_.size(), 0);
  s.epoch_.assign(s.buckets_.size(), 0);
  for (size_t b = 0; b < s.buckets_.size(); ++b) s.Reshuffle(b);
  return s;
}

Status DifficultyBucketSampler::SetWeights(std::vector<double> weights) {
  CHAINRL_RETURN_IF_ERROR(CheckWeights(buckets_, weights));
  weights_ = std::move(weights);
  return Status::Ok();
}

uint64_t DifficultyBucketSampler::Uniform(uint64_t n) {
  // Rejection sampling: the same result on every standard library (unlike the distributions).
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng_();
  while (x >= limit);
  return x % n;
}

double DifficultyBucketSampler::UniformReal() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

void DifficultyBucketSampler::Reshuffle(size_t b) {
  order_[b] = buckets_[b];
  for (size_t i = order_[b].size(); i > 1; --i) std::swap(order_[b][i - 1], order_[b][Uniform(i)]);
  cursor_[b] = 0;
}

int64_t DifficultyBucketSampler::Next() {
  double total = 0;
  for (size_t b = 0; b < buckets_.size(); ++b)
    if (!buckets_[b].empty()) total += weights_[b];
  const double u = UniformReal() * total;
  size_t pick = buckets_.size();
  double acc = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (buckets_[b].empty() || weights_[b] <= 0) continue;
    acc += weights_[b];
    pick = b;
    if (u < acc) break;
  }
  CHAINRL_CHECK(pick < buckets_.size(), "no bucket to sample from");
  if (cursor_[pick] == order_[pick].size()) {
    ++epoch_[pick];
    Reshuffle(pick);
  }
  return order_[pick][cursor_[pick]++];
}

nlohmann::json DifficultyBucketSampler::ToJson() const {
  std::ostringstream rng;
  rng << rng_;
  nlohmann::json j;
  j["rng"] = rng.str();
  j["weights"] = weights_;
  j["order"] = order_;
  j["cursor"] = cursor_;
  j["epoch"] = epoch_;
  j["bucket_sizes"] = nlohmann::json::array();
  for (const auto& b : buckets_) j["bucket_sizes"].push_back(b.size());
  return j;
}

Status DifficultyBucketSampler::LoadJson(const nlohmann::json& j) {
  try {
    for (const char* key : {"rng", "weights", "order", "cursor", "epoch", "bucket_sizes"})
      if (!j.contains(key))
        return Corrupt(std::string("bucket sampler: missing key \"") + key + "\"");
    const auto sizes = j.at("bucket_sizes").get<std::vector<size_t>>();
    if (sizes.size() != buckets_.size())
      return Corrupt("bucket sampler: \"bucket_sizes\" has " + std::to_string(sizes.size()) +
                     " buckets, this sampler " + std::to_string(buckets_.size()));
    for (size_t b = 0; b < sizes.size(); ++b)
      if (sizes[b] != buckets_[b].size())
        return Corrupt("bucket sampler: bucket_sizes[" + std::to_string(b) +
                       "] differs from this sampler's bucket");
    auto weights = j.at("weights").get<std::vector<double>>();
    auto order = j.at("order").get<std::vector<std::vector<int64_t>>>();
    auto cursor = j.at("cursor").get<std::vector<size_t>>();
    auto epoch = j.at("epoch").get<std::vector<int64_t>>();
    if (order.size() != buckets_.size() || cursor.size() != buckets_.size() ||
        epoch.size() != buckets_.size())
      return Corrupt(
          "bucket sampler: \"order\", \"cursor\" and \"epoch\" need one entry per bucket");
    for (size_t b = 0; b < order.size(); ++b)
      if (order[b].size() != buckets_[b].size() || cursor[b] > order[b].size())
        return Corrupt("bucket sampler: order/cursor of bucket " + std::to_string(b) +
                       " do not fit it");
    CHAINRL_RETURN_IF_ERROR(CheckWeights(buckets_, weights).WithPrefix("bucket sampler"));
    std::istringstream rng(j.at("rng").get<std::string>());
    std::mt19937_64 r;
    rng >> r;
    if (rng.fail()) return Corrupt("bucket sampler: \"rng\" is not a generator state");
    rng_ = r;
    weights_ = std::move(weights);
    order_ = std::move(order);
    cursor_ = std::move(cursor);
    epoch_ = std::move(epoch);
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(std::string("bucket sampler: ") + e.what());
  }
  return Status::Ok();
}

Result<std::optional<StageSchedule>> StageScheduleFromConfig(const Config& c) {
  std::vector<Stage> stages;
  for (const auto& t : c.GetArray("curriculum.stages")) {
    Stage st;
    st.name = std::get<std::string>(t.at("name"));
    st.start_step = std::get<int64_t>(t.at("start_step"));
    if (auto it = t.find("overrides"); it != t.end())
      for (const auto& kv : std::get<std::vector<std::string>>(it->second)) {
        const size_t eq = kv.find('=');
        st.overrides.emplace_back(kv.substr(0, eq),
                                  eq == std::string::npos ? "" : kv.substr(eq + 1));
      }
    stages.push_back(std::move(st));
  }
  if (stages.empty()) return std::optional<StageSchedule>();
  if (stages.front().start_step > 0) stages.insert(stages.begin(), Stage{"base", 0, {}});
  CHAINRL_ASSIGN_OR_RETURN(StageSchedule schedule, StageSchedule::Create(std::move(stages)));
  return std::optional<StageSchedule>(std::move(schedule));
}

std::vector<std::string> OverrideSets(const Stage& stage) {
  std::vector<std::string> sets;
  for (const auto& [k, v] : stage.overrides) sets.push_back(k + "=" + v);
  return sets;
}

}  // namespace chainrl::learner
