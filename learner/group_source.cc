// The learner's prompt groups: seeded epoch order or difficulty buckets (see group_source.h).
#include "learner/group_source.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>

#include "core/log.h"
#include "data/jsonl.h"
#include "data/tasks.h"

namespace chainrl::learner {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

EpochOrder::EpochOrder(uint64_t n, uint64_t seed, bool shuffle, uint64_t epoch_salt)
    : n_(n), seed_(seed), salt_(epoch_salt), shuffle_(shuffle) {}

size_t EpochOrder::At(uint64_t k) {
  const uint64_t epoch = k / n_;
  if (epoch != epoch_ || order_.empty()) {
    order_.resize(n_);
    std::iota(order_.begin(), order_.end(), 0);
    if (shuffle_) {
      std::mt19937_64 rng(SplitMix64(seed_ ^ SplitMix64(epoch + salt_)));
      std::shuffle(order_.begin(), order_.end(), rng);
    }
    epoch_ = epoch;
  }
  return order_[k % n_];
}

GroupOrderOptions GroupOrderOptionsFromConfig(const Config& c) {
  GroupOrderOptions o;
  o.seed = static_cast<uint64_t>(c.GetInt("run.seed"));
  o.shuffle = c.GetBool("data.shuffle");
  o.difficulty_buckets = c.GetStringList("data.difficulty_buckets");
  o.bucket_weights = c.GetFloatList("data.bucket_weights");
  return o;
}

Result<GroupSource> GroupSource::Load(const Config& c) {
  std::vector<data::Example> train, eval;
  int64_t skipped = 0;
  if (c.GetString("data.source") == "task") {
    const data::TaskOptions o = data::TaskOptionsFromConfig(c);
    CHAINRL_ASSIGN_OR_RETURN(
        train, data::GenerateTask(o, data::Split::kTrain, c.GetInt("data.num_train_examples")));
    CHAINRL_ASSIGN_OR_RETURN(
        eval, data::GenerateTask(o, data::Split::kEval, c.GetInt("data.num_eval_examples")));
  } else {
    const data::JsonlFields f = data::JsonlFieldsFromConfig(c);
    const data::BadLinePolicy policy = data::BadLinePolicyFromConfig(c);
    for (const auto& [key, out] :
         {std::pair{"data.train_files", &train}, std::pair{"data.eval_files", &eval}}) {
      for (const auto& file : c.GetStringList(key)) {
        data::JsonlStats stats;
        CHAINRL_ASSIGN_OR_RETURN(auto ex, data::LoadExamplesJsonl(file, f, policy, &stats));
        LogSkippedLines(file, stats);
        skipped += stats.skipped;
        out->insert(out->end(), ex.begin(), ex.end());
      }
    }
    const int64_t max_eval = c.GetInt("data.num_eval_examples");
    if (static_cast<int64_t>(eval.size()) > max_eval) eval.resize(max_eval);
  }
  CHAINRL_ASSIGN_OR_RETURN(
      GroupSource s, Create(std::move(train), std::move(eval), GroupOrderOptionsFromConfig(c)));
  s.lines_skipped_ = skipped;
  return s;
}

void LogSkippedLines(const std::string& file, const data::JsonlStats& stats) {
  if (stats.skipped == 0) return;
  std::string first;
  for (size_t i = 0; i < stats.first_problems.size() && i < 3; ++i)
    first += (i ? "; " : "") + stats.first_problems[i];
  CHAINRL_LOG(kWarn) << file << ": " << stats.skipped
                     << " malformed lines skipped (data.on_bad_line = \"skip\")"
                     << (first.empty() ? "" : "; first: " + first);
}

Result<GroupSource> GroupSource::Create(std::vector<data::Example> train,
                                        std::vector<data::Example> eval, GroupOrderOptions o) {
  if (train.empty()) return InvalidArgument("data: no training examples");
  GroupSource s;
  s.train_ = std::move(train);
  s.eval_ = std::move(eval);
  s.order_.emplace(s.train_.size(), o.seed, o.shuffle, /*epoch_salt=*/1);
  const auto& names = o.difficulty_buckets;
  if (names.empty()) return s;
  // An example's bucket is its `difficulty`; group g gets the sampler's g-th draw.
  std::vector<std::vector<int64_t>> buckets(names.size());
  for (size_t i = 0; i < s.train_.size(); ++i) {
    auto it = std::find(names.begin(), names.end(), s.train_[i].difficulty);
    if (it == names.end())
      return InvalidArgument("data.difficulty_buckets: training example '" + s.train_[i].id +
                             "' has difficulty '" + s.train_[i].difficulty +
                             "', which is not one of the buckets");
    buckets[it - names.begin()].push_back(static_cast<int64_t>(i));
  }
  CHAINRL_ASSIGN_OR_RETURN(std::vector<double> weights,
                           BucketWeights(names.size(), std::move(o.bucket_weights)));
  auto sampler = DifficultyBucketSampler::Create(std::move(buckets), std::move(weights),
                                                 SplitMix64(o.seed ^ 0xb0c7));
  if (!sampler.ok()) return sampler.status().WithPrefix("data.bucket_weights");
  s.sampler_.emplace(std::move(*sampler));
  s.bucket_names_ = names;
  return s;
}

Result<std::vector<double>> GroupSource::BucketWeights(size_t buckets, std::vector<double> w) {
  if (w.empty()) w.assign(buckets, 1.0);
  if (w.size() != buckets)
    return InvalidArgument("data.bucket_weights has " + std::to_string(w.size()) + " weights for " +
                           std::to_string(buckets) + " data.difficulty_buckets");
  return w;
}

Status GroupSource::SetBucketWeights(std::vector<double> weights) {
  if (!sampler_) return Status::Ok();
  CHAINRL_ASSIGN_OR_RETURN(std::vector<double> w,
                           BucketWeights(bucket_names_.size(), std::move(weights)));
  return sampler_->SetWeights(std::move(w)).WithPrefix("data.bucket_weights");
}

Status GroupSource::SetBucketWeights(const Config& c) {
  return SetBucketWeights(c.GetFloatList("data.bucket_weights"));
}

nlohmann::json GroupSource::BucketState() const {
  if (!sampler_) return nullptr;
  return {{"sampler", sampler_->ToJson()}, {"drawn", drawn_}};
}

Status GroupSource::LoadBucketState(const nlohmann::json& j) {
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

const data::Example& GroupSource::ForGroup(uint64_t g) { return train_[IndexForGroup(g)]; }

size_t GroupSource::IndexForGroup(uint64_t g) {
  if (sampler_) {
    while (drawn_.size() <= g) drawn_.push_back(sampler_->Next());
    return static_cast<size_t>(drawn_[g]);
  }
  return order_->At(g);
}

SftOrder::SftOrder(size_t examples, uint64_t seed) : order_(examples) {
  std::mt19937_64 order_rng(SplitMix64(seed ^ 0x5f7));
  std::iota(order_.begin(), order_.end(), 0);
  std::shuffle(order_.begin(), order_.end(), order_rng);
}

std::vector<size_t> SftOrder::Batch(int64_t step, int64_t batch_size) const {
  std::vector<size_t> batch;
  for (int64_t i = 0; i < batch_size; ++i)
    batch.push_back(order_[static_cast<size_t>(step * batch_size + i) % order_.size()]);
  return batch;
}

std::string SftResponse(const data::Example& e) {
  std::string target = e.solution;
  if (target.empty() && e.answer.is_string()) target = e.answer.get<std::string>();
  return target;
}

Result<const data::Example*> GroupSource::CheckEmbeddingFiles() const {
  const data::Example* first = nullptr;
  std::set<std::string> files;  // each checked once: many examples share one file
  for (const auto* set : {&train_, &eval_})
    for (const auto& ex : *set) {
      if (ex.embeddings.empty()) continue;
      if (!first) first = &ex;
      const std::string file = ex.embeddings.substr(0, ex.embeddings.rfind('#'));
      if (files.insert(file).second && !std::filesystem::exists(file))
        return InvalidArgument(ex.source + ": prompt embeddings file '" + file +
                               "' does not exist");
    }
  return first;
}

}  // namespace chainrl::learner
