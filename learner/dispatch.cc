// Actors' credits and work items (see dispatch.h).
#include "learner/dispatch.h"

#include <algorithm>

#include "core/log.h"
#include "core/wire.h"

namespace chainrl::learner {

bool ActorTable::Join(const std::string& name, const std::string& routing,
                      const std::string& process, int64_t max_credits) {
  ActorCredits& a = actors_[name];
  const bool restarted = !a.process.empty() && a.process != process;
  a.process = process;
  a.routing = routing;
  if (max_credits > max_credits_) {
    CHAINRL_LOG(kWarn) << name << " (" << process << ") asks to hold " << max_credits
                       << " groups at once; it gets " << max_credits_ << " (actors.credits)";
  }
  a.max = std::clamp<int64_t>(max_credits, 1, max_credits_);
  a.pending = 0;
  return restarted;
}

bool ActorTable::Admit(const std::string& name) {
  if (actors_.count(name) > 0) return true;
  if (actors_.size() < max_actors_) {
    actors_.emplace(name, ActorCredits{});  // no routing and no credits until it asks
    return true;
  }
  // Logged at the first and then every 1000th, so that a flood does not flood the log too.
  if (ignored_++ % 1000 == 0) {
    CHAINRL_LOG(kWarn) << "ignoring messages from a new actor name '" << name.substr(0, 64)
                       << "': " << max_actors_ << " actors are known already (" << ignored_
                       << " ignored so far)";
  }
  return false;
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

void TakeWorkMessage(const wire::Envelope& env, const std::string& peer,
                     const std::string& peer_name, ActorTable* actors, WorkLedger* ledger) {
  const std::string& actor = env.sender();
  if (actor.empty()) return;
  const auto kind = env.body_case();
  const bool from_actor = kind == wire::Envelope::kJoin || kind == wire::Envelope::kWorkRequest ||
                          kind == wire::Envelope::kHeartbeat || kind == wire::Envelope::kLeave ||
                          kind == wire::Envelope::kWorkDeclined;
  if (from_actor && !actors->Admit(actor) && !ledger->Knows(actor)) return;
  switch (env.body_case()) {
    case wire::Envelope::kJoin: {
      const std::string before = actors->ProcessOf(actor);
      const std::string process = env.join().host() + ":" + std::to_string(env.join().pid());
      if (actors->Join(actor, peer, process, env.join().max_credits())) {
        // A restarted actor under the same name: whatever its predecessor held is lost with it.
        const size_t held = ledger->in_flight();
        ledger->Leave(actor);
        CHAINRL_LOG(kInfo) << actor << " restarted (" << before << " -> " << process
                           << "): " << held - ledger->in_flight()
                           << " of its leases handed out again";
      }
      ledger->Heartbeat(actor);
      if (before == process) {  // the same process announcing itself again (actor.cc SendJoin)
        CHAINRL_LOG(kDebug) << actor << " joined again from " << process;
      } else {
        CHAINRL_LOG(kInfo) << actor << " joined from " << env.join().host() << " (pid "
                           << env.join().pid() << ")";
      }
      break;
    }
    case wire::Envelope::kWorkRequest:
      actors->Request(actor, peer, env.work_request().credits());
      ledger->Heartbeat(actor);
      break;
    case wire::Envelope::kHeartbeat: {
      ledger->Heartbeat(actor);
      const auto& ids = env.heartbeat().lease_ids();
      for (const Lease& l :
           ledger->ReconcileRestored(actor, std::vector<uint64_t>(ids.begin(), ids.end())))
        CHAINRL_LOG(kInfo) << "lease " << l.lease_id << " of group " << l.group_id
                           << ", restored from the checkpoint, is not held by " << actor
                           << " (its result went to the learner before this one): handed out "
                              "again";
      break;
    }
    case wire::Envelope::kLeave:
      CHAINRL_LOG(kInfo) << actor << " left: " << env.leave().reason();
      ledger->Leave(actor);
      actors->Leave(actor);
      break;
    case wire::Envelope::kWorkDeclined: {
      const auto& d = env.work_declined();
      const uint64_t lost_before = ledger->counters().lost;
      if (!ledger->Decline(d.lease_id(), d.prompt_group_id(), actor)) {
        CHAINRL_LOG(kWarn) << peer_name << " declined lease " << d.lease_id() << " of group "
                           << d.prompt_group_id() << ", which it does not hold: ignored";
        break;
      }
      const bool lost = ledger->counters().lost > lost_before;
      CHAINRL_LOG(kWarn) << actor << " cannot make the work of lease " << d.lease_id() << " (group "
                         << d.prompt_group_id() << "): " << d.reason().substr(0, 512)
                         << (lost ? "; the group is given up after learner.lease_max_attempts "
                                    "leases"
                                  : "; the group is handed out again");
      break;
    }
    default:
      CHAINRL_LOG(kWarn) << peer_name << ": unexpected message on the work channel, ignored";
  }
}

void TopUpLedger(WorkLedger* ledger, size_t buffered, size_t per_step, uint64_t* next_group) {
  while (ledger->pending() + ledger->in_flight() + buffered < 2 * per_step) {
    Status st = ledger->AddGroup(*next_group);
    ++*next_group;
    if (!st.ok()) {
      CHAINRL_LOG(kWarn) << st.message();
    }
  }
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

void DispatchWork(const WorkRound& round, ActorTable* actors, WorkLedger* ledger,
                  const SegmentAssembler& segments, GroupSource* data, const PromptOf& prompt_of,
                  const SendWork& send, LearnerMetrics* metrics) {
  for (auto& [name, a] : actors->actors()) {
    if (a.pending <= 0 || a.routing.empty() || ledger->pending() == 0) continue;
    // Continuations go back to the actor that generated their last segment when it asks for
    // work: it may still hold their KV (under the same weights) and resume without a prefill.
    auto own_continuation = [&segments, &name = name](uint64_t gid) {
      const std::string* last = segments.LastActor(gid);
      return last != nullptr && *last == name;
    };
    std::vector<Lease> leases = ledger->Dispatch(
        name, static_cast<size_t>(a.pending),
        !segments.has_last_actors() ? std::function<bool(uint64_t)>() : own_continuation);
    if (leases.empty()) continue;
    wire::Envelope env = wire::MakeEnvelope("learner");
    auto* batch = env.mutable_work_batch();
    for (const Lease& l : leases) {
      const size_t idx = data->IndexForGroup(l.group_id);
      auto prompt = prompt_of(idx);
      if (!prompt.ok()) {  // never sent, and never handed out again: no lease left hanging
        CHAINRL_LOG(kError) << "group " << l.group_id
                            << " is refused: " << prompt.status().message();
        ledger->Refuse(l.lease_id);
        continue;
      }
      wire::WorkItem* w = batch->add_items();
      FillWorkItem(round, l, data->train()[idx], **prompt, w);
      segments.AddCarried(l.group_id, w);
    }
    if (batch->items_size() == 0) continue;  // every lease refused: the credits stay asked for
    Status st = send(a.routing, env);
    if (!st.ok()) {
      // The work never left: its groups go back to the front of the queue at once, and this
      // actor gets no more until it asks again (a restarted one joins under a new routing id).
      CHAINRL_LOG(kWarn) << name << ": work not delivered: " << st.message();
      std::vector<uint64_t> ids;
      for (const auto& item : batch->items()) ids.push_back(item.lease_id());
      ledger->Undelivered(ids);
      a.pending = 0;
      continue;
    }
    a.pending -= batch->items_size();
    metrics->WorkSent(static_cast<size_t>(batch->items_size()), env.ByteSizeLong());
  }
}

}  // namespace chainrl::learner
