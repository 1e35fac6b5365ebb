// Groups part-way through segment rollout (see segment_intake.h).
#include "learner/segment_intake.h"

#include "core/wire.h"
#include "learner/record_file.h"

namespace chainrl::learner {

std::set<uint32_t> SegmentAssembler::Expected(uint64_t gid) const {
  std::set<uint32_t> expected;
  auto it = partials_.find(gid);
  if (it == partials_.end()) {
    for (uint32_t i = 0; i < group_size_; ++i) expected.insert(i);
  } else {
    for (const auto& s : it->second.samples())
      if (s.finish_reason() == wire::FINISH_UNFINISHED) expected.insert(s.sample_index());
  }
  return expected;
}

const wire::Trajectory* SegmentAssembler::Partial(uint64_t gid) const {
  auto it = partials_.find(gid);
  return it == partials_.end() ? nullptr : &it->second;
}

void SegmentAssembler::Discard(uint64_t gid) {
  partials_.erase(gid);
  last_actor_.erase(gid);
}

SegmentIntake SegmentAssembler::Add(const wire::Trajectory& t, const std::string& actor,
                                    wire::Trajectory* assembled) {
  const uint64_t gid = t.prompt_group_id();
  bool finishes = true;
  for (const auto& s : t.samples())
    finishes = finishes && s.finish_reason() != wire::FINISH_UNFINISHED;
  auto pit = partials_.find(gid);
  if (pit == partials_.end() && finishes) return SegmentIntake::kWhole;
  wire::Trajectory& so_far = partials_[gid];
  if (so_far.samples_size() == 0) {
    so_far.set_prompt_group_id(gid);
    for (uint32_t i = 0; i < group_size_; ++i) {
      auto* s = so_far.add_samples();
      s->set_sample_index(i);
      s->set_finish_reason(wire::FINISH_UNFINISHED);
    }
  }
  for (const auto& s : t.samples()) {
    auto* d = so_far.mutable_samples(static_cast<int>(s.sample_index()));
    auto* c = d->mutable_completion();
    c->mutable_token_ids()->Add(s.completion().token_ids().begin(),
                                s.completion().token_ids().end());
    c->mutable_behaviour_logprobs()->Add(s.completion().behaviour_logprobs().begin(),
                                         s.completion().behaviour_logprobs().end());
    wire::AppendPolicyVersionRuns(c->mutable_policy_versions(), s.completion().policy_versions());
    d->mutable_timings()->set_generate_seconds(d->timings().generate_seconds() +
                                               s.timings().generate_seconds());
    if (s.finish_reason() == wire::FINISH_UNFINISHED) continue;
    d->set_finish_reason(s.finish_reason());
    d->set_reward(s.reward());
    d->set_correct(s.correct());
    *d->mutable_reward_components() = s.reward_components();
    *d->mutable_reward_diagnostics() = s.reward_diagnostics();
    d->mutable_timings()->set_reward_seconds(s.timings().reward_seconds());
  }
  ++segments_received_;
  if (!finishes) {
    last_actor_[gid] = actor;
    return SegmentIntake::kCarried;
  }
  last_actor_.erase(gid);
  *assembled = std::move(so_far);
  partials_.erase(gid);
  assembled->set_lease_id(t.lease_id());
  assembled->set_actor_id(t.actor_id());
  return SegmentIntake::kAssembled;
}

void SegmentAssembler::AddCarried(uint64_t gid, wire::WorkItem* item) const {
  auto it = partials_.find(gid);
  if (it == partials_.end()) return;
  for (const auto& smp : it->second.samples()) {
    if (smp.finish_reason() != wire::FINISH_UNFINISHED) continue;
    auto* carried = item->add_carried();
    carried->set_sample_index(smp.sample_index());
    *carried->mutable_segment() = smp.completion();
  }
}

const std::string* SegmentAssembler::LastActor(uint64_t gid) const {
  auto it = last_actor_.find(gid);
  return it == last_actor_.end() ? nullptr : &it->second;
}

std::string SegmentAssembler::ToRecords() const {
  std::string out;
  for (const auto& [gid, t] : partials_) AppendRecord(&out, t.SerializeAsString());
  return out;
}

Status SegmentAssembler::LoadRecords(std::string_view bytes, const std::string& what) {
  CHAINRL_ASSIGN_OR_RETURN(auto records, SplitRecords(bytes, what));
  std::map<uint64_t, wire::Trajectory> partials;
  for (std::string_view rec : records) {
    wire::Trajectory t;
    if (!t.ParseFromArray(rec.data(), static_cast<int>(rec.size())))
      return Corrupt(what + ": a record does not parse");
    // Sample i sits at position i: Add appends to samples by index. Its tokens so far are as
    // intake checked them (a logprob and a policy version per token), since Add extends them.
    for (int i = 0; i < t.samples_size(); ++i) {
      const std::string sample =
          what + ": group " + std::to_string(t.prompt_group_id()) + " sample " + std::to_string(i);
      if (t.samples(i).sample_index() != static_cast<uint32_t>(i))
        return Corrupt(what + ": group " + std::to_string(t.prompt_group_id()) + " holds sample " +
                       std::to_string(t.samples(i).sample_index()) + " at position " +
                       std::to_string(i));
      const wire::TokenSegment& c = t.samples(i).completion();
      if (c.behaviour_logprobs_size() != c.token_ids_size())
        return Corrupt(sample + ": " + std::to_string(c.behaviour_logprobs_size()) +
                       " logprobs for " + std::to_string(c.token_ids_size()) + " tokens");
      const wire::PolicyVersionRuns& runs = c.policy_versions();
      uint64_t covered = 0;
      bool valid = runs.versions_size() == runs.lengths_size();
      for (int k = 0; valid && k < runs.lengths_size(); ++k) {
        valid = runs.lengths(k) >= 1;
        covered += runs.lengths(k);
      }
      if (!valid || covered != static_cast<uint64_t>(c.token_ids_size()))
        return Corrupt(sample + ": policy version runs (" + std::to_string(runs.versions_size()) +
                       " versions, " + std::to_string(runs.lengths_size()) +
                       " lengths) do not cover its " + std::to_string(c.token_ids_size()) +
                       " tokens");
    }
    partials[t.prompt_group_id()] = std::move(t);
  }
  partials_ = std::move(partials);
  last_actor_.clear();
  return Status::Ok();
}

}  // namespace chainrl::learner
