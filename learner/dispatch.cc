// Actors' credits and work items (see dispatch.h).
#include "learner/dispatch.h"

#include <algorithm>

#include "learner/group_source.h"

namespace chainrl::learner {

bool ActorTable::Join(const std::string& name, const std::string& routing,
                      const std::string& process, int64_t max_credits) {
  ActorCredits& a = actors_[name];
  const bool restarted = !a.process.empty() && a.process != process;
  a.process = process;
  a.routing = routing;
  a.max = std::clamp<int64_t>(max_credits, 1, kMaxActorCredits);
  a.pending = 0;
  return restarted;
}

void ActorTable::Request(const std::string& name, const std::string& routing, int64_t credits) {
  ActorCredits& a = actors_[name];
  a.routing = routing;
  a.pending = std::min<int64_t>(a.pending + credits, std::max<int64_t>(a.max, 1));
}

void ActorTable::Leave(const std::string& name) { actors_.erase(name); }

void ActorTable::Prune(const std::function<bool(const std::string&)>& alive) {
  for (auto it = actors_.begin(); it != actors_.end();)
    it = alive(it->first) ? std::next(it) : actors_.erase(it);
}

std::string ActorTable::ProcessOf(const std::string& name) const {
  auto it = actors_.find(name);
  return it == actors_.end() ? std::string() : it->second.process;
}

WorkRound WorkRoundFromConfig(const Config& c, const std::vector<int32_t>& template_stop_ids,
                              int64_t budget, int64_t policy_version,
                              int32_t placeholder_token_id) {
  WorkRound r;
  r.sampling.set_temperature(static_cast<float>(c.GetFloat("rollout.temperature")));
  r.sampling.set_top_p(static_cast<float>(c.GetFloat("rollout.top_p")));
  r.sampling.set_top_k(static_cast<int32_t>(c.GetInt("rollout.top_k")));
  r.sampling.set_repetition_penalty(1.0f);
  for (int32_t id : template_stop_ids) r.sampling.add_stop_token_ids(static_cast<uint32_t>(id));
  for (int64_t id : c.GetIntList("rollout.stop_token_ids"))
    r.sampling.add_stop_token_ids(static_cast<uint32_t>(id));
  for (const auto& s : c.GetStringList("rollout.stop_strings")) r.sampling.add_stop_strings(s);
  r.run_seed = static_cast<uint64_t>(c.GetInt("run.seed"));
  r.token_budget = static_cast<uint32_t>(budget);
  r.max_new_tokens = static_cast<uint32_t>(c.GetInt("rollout.max_new_tokens"));
  r.group_size = static_cast<uint32_t>(c.GetInt("rollout.group_size"));
  r.segment_tokens = static_cast<uint32_t>(c.GetInt("rollout.segment_tokens"));
  r.policy_version = policy_version;
  r.placeholder_token_id = placeholder_token_id;
  return r;
}

uint64_t LeaseSeed(uint64_t run_seed, uint64_t group_id, int attempt) {
  return SplitMix64(run_seed ^
                    SplitMix64(group_id * 1315423911ull + static_cast<uint64_t>(attempt)));
}

void FillWorkItem(const WorkRound& round, const Lease& l, const data::Example& ex,
                  const std::vector<int32_t>& prompt, wire::WorkItem* w) {
  w->set_prompt_group_id(l.group_id);
  w->mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  *w->mutable_sampling() = round.sampling;
  w->mutable_sampling()->set_seed(LeaseSeed(round.run_seed, l.group_id, l.attempt));
  w->set_token_budget(round.token_budget);
  w->set_max_new_tokens(round.max_new_tokens);
  w->set_group_size(round.group_size);
  w->set_policy_version(round.policy_version);
  w->set_lease_id(l.lease_id);
  w->set_example_id(ex.id.substr(0, 200));
  w->set_answer_json(ex.answer.dump());
  w->set_metadata_json(ex.metadata.is_null() ? "{}" : ex.metadata.dump());
  w->set_segment_tokens(round.segment_tokens);
  if (!ex.embeddings.empty()) {
    w->set_prompt_embeddings(ex.embeddings);
    w->set_placeholder_token_id(round.placeholder_token_id);
  }
}

}  // namespace chainrl::learner
