// Offline preference pairs (see offline_preference.h).
#include "learner/offline_preference.h"

#include <algorithm>

#include "data/jsonl.h"

namespace chainrl::learner {

// The epoch order's salt, so the pairs' order differs from the RL groups' of the same seed.
constexpr uint64_t kPairOrderSalt = 0x9d;

Result<OfflinePreferences> OfflinePreferences::Load(const Config& c) {
  if (c.GetString("data.source") != "jsonl" || c.GetStringList("data.train_files").empty())
    return InvalidArgument(
        "algorithm.preference_source = 'offline' needs data.source = 'jsonl' "
        "and data.train_files of prompt/chosen/rejected lines");
  const data::JsonlFields f = data::JsonlFieldsFromConfig(c);
  std::vector<data::PreferenceExample> pairs;
  int64_t skipped = 0;
  for (const auto& file : c.GetStringList("data.train_files")) {
    data::JsonlStats stats;
    CHAINRL_ASSIGN_OR_RETURN(
        auto ex, data::LoadPreferencesJsonl(file, f, data::BadLinePolicyFromConfig(c), &stats));
    LogSkippedLines(file, stats);
    skipped += stats.skipped;
    pairs.insert(pairs.end(), ex.begin(), ex.end());
  }
  if (pairs.empty()) return InvalidArgument("data.train_files: no preference pairs");
  OfflinePreferences out(std::move(pairs), static_cast<uint64_t>(c.GetInt("run.seed")),
                         c.GetBool("data.shuffle"));
  out.lines_skipped_ = skipped;
  return out;
}

OfflinePreferences::OfflinePreferences(std::vector<data::PreferenceExample> pairs, uint64_t seed,
                                       bool shuffle)
    : data_(std::move(pairs)), order_(data_.size(), seed, shuffle, kPairOrderSalt) {}

Result<PreferencePairData> OfflinePreferences::Pair(size_t index,
                                                    const rollout::PromptRenderer& prompts,
                                                    bool all_rejected) {
  if (auto it = cache_.find(index); it != cache_.end()) return it->second;
  const data::PreferenceExample& e = data_[index];
  data::Example ex;
  ex.id = e.id;
  ex.prompt = e.prompt;
  ex.messages = e.messages;
  PreferencePairData p;
  CHAINRL_ASSIGN_OR_RETURN(p.prompt, prompts.Render(ex));
  CHAINRL_ASSIGN_OR_RETURN(p.chosen, prompts.EncodeResponse(e.chosen));
  const size_t m = all_rejected ? e.rejected.size() : 1;
  for (size_t i = 0; i < m && i < e.rejected.size(); ++i) {
    CHAINRL_ASSIGN_OR_RETURN(auto r, prompts.EncodeResponse(e.rejected[i]));
    p.rejected.push_back(std::move(r));
  }
  return cache_[index] = std::move(p);
}

Result<std::vector<PreferencePairData>> OfflinePreferences::Batch(
    int64_t step, uint64_t per_step, const rollout::PromptRenderer& prompts, bool all_rejected) {
  std::vector<PreferencePairData> batch;
  size_t want_m = 0;
  for (uint64_t i = 0; i < per_step; ++i) {
    const uint64_t k = static_cast<uint64_t>(step) * per_step + i;
    CHAINRL_ASSIGN_OR_RETURN(PreferencePairData p, Pair(order_.At(k), prompts, all_rejected));
    if (p.chosen.empty() || p.rejected.empty()) continue;
    if (want_m == 0) want_m = p.rejected.size();
    if (p.rejected.size() != want_m) p.rejected.resize(std::min(want_m, p.rejected.size()));
    if (p.rejected.size() == want_m) batch.push_back(std::move(p));
  }
  return batch;
}

}  // namespace chainrl::learner
