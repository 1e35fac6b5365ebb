// The learner's ledger of leased work; see work_ledger.h.
#include "learner/work_ledger.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/json_file.h"
#include "core/log.h"

namespace chainrl::learner {

std::chrono::nanoseconds SteadyClock::Now() const {
  return std::chrono::steady_clock::now().time_since_epoch();
}

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kAccepted:
      return "accepted";
    case Verdict::kAcceptedNeedsCorrection:
      return "accepted_needs_correction";
    case Verdict::kDroppedStale:
      return "dropped_stale";
    case Verdict::kDuplicate:
      return "duplicate";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

Result<StalePolicy> ParseStalePolicy(std::string_view name) {
  if (name == "drop") return StalePolicy::kDrop;
  if (name == "flag") return StalePolicy::kFlag;
  if (name == "correct") return StalePolicy::kCorrect;
  return InvalidArgument("learner.stale_policy: unknown value '" + std::string(name) +
                         "'; valid values: drop, flag, correct");
}

Result<LedgerOptions> LedgerOptionsFromConfig(const Config& c) {
  using std::chrono::milliseconds;
  auto ms = [](double seconds) { return milliseconds(std::llround(seconds * 1000.0)); };
  LedgerOptions o;
  o.set_heartbeat_timeout(ms(c.GetFloat("actors.heartbeat_timeout_seconds")))
      .set_lease_duration(ms(c.GetFloat("learner.lease_timeout_seconds")))
      .set_max_off_policy_steps(c.GetInt("learner.max_off_policy_steps"));
  CHAINRL_ASSIGN_OR_RETURN(o.stale_policy, ParseStalePolicy(c.GetString("learner.stale_policy")));
  o.set_max_attempts(static_cast<int>(c.GetInt("learner.lease_max_attempts")));  // <= 2^20
  return o;
}

WorkLedger::WorkLedger(LedgerOptions options, const Clock* clock)
    : options_(options), clock_(clock) {
  CHAINRL_CHECK(clock_ != nullptr);
}

Status WorkLedger::AddGroup(uint64_t group_id) {
  if (!groups_.emplace(group_id, Group{}).second)
    return InvalidArgument("work ledger: prompt group " + std::to_string(group_id) +
                           " was added before");
  queue_.push_back(group_id);
  return Status::Ok();
}

void WorkLedger::Touch(const std::string& actor) {
  const auto known = actors_.find(actor);
  if (known != actors_.end() && !known->second.alive) {
    CHAINRL_LOG(kInfo) << actor << " is heard from again after being declared dead";
  }
  Actor& a = actors_[actor];
  a.last_seen = clock_->Now();
  a.alive = true;
}

void WorkLedger::Heartbeat(const std::string& actor) { Touch(actor); }

bool WorkLedger::IsAlive(const std::string& actor) const {
  auto it = actors_.find(actor);
  return it != actors_.end() && it->second.alive;
}

bool WorkLedger::IsCompleted(uint64_t group_id) const {
  auto it = groups_.find(group_id);
  return it != groups_.end() && it->second.state == GroupState::kCompleted;
}

void WorkLedger::Leave(const std::string& actor) {
  auto it = actors_.find(actor);
  if (it == actors_.end()) return;
  const std::set<uint64_t> leases = it->second.leases;
  for (uint64_t id : leases) Revoke(id, /*expired=*/false);
  actors_.erase(it);
}

void WorkLedger::Undelivered(const std::vector<uint64_t>& lease_ids) {
  // Last first: each revoked group goes to the front, so they end up in their dispatch order.
  for (auto r = lease_ids.rbegin(); r != lease_ids.rend(); ++r) {
    const uint64_t id = *r;
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;
    Group& g = groups_.at(it->second.group_id);
    if (g.attempts > 0) --g.attempts;
    Revoke(id, /*expired=*/false);
  }
}

std::vector<Lease> WorkLedger::ReconcileRestored(const std::string& actor,
                                                 const std::vector<uint64_t>& held) {
  std::vector<Lease> revoked;
  if (restored_.empty()) return revoked;
  auto a = actors_.find(actor);
  if (a == actors_.end()) return revoked;
  const std::set<uint64_t> holds(held.begin(), held.end());
  std::vector<uint64_t> gone;
  for (uint64_t id : a->second.leases) {
    if (restored_.erase(id) == 0) continue;  // issued since the restore, or settled
    if (holds.count(id) == 0) gone.push_back(id);
  }
  for (uint64_t id : gone) revoked.push_back(leases_.at(id));
  Undelivered(gone);
  return revoked;
}

std::vector<Lease> WorkLedger::Dispatch(const std::string& actor, size_t max_items,
                                        const std::function<bool(uint64_t)>& prefer) {
  Touch(actor);
  std::vector<Lease> out;
  const auto now = clock_->Now();
  if (prefer) {  // the preferred groups move to the front, each part keeping its order
    std::stable_partition(queue_.begin(), queue_.end(), prefer);
  }
  while (out.size() < max_items && !queue_.empty()) {
    const uint64_t gid = queue_.front();
    queue_.pop_front();
    Group& g = groups_.at(gid);
    CHAINRL_CHECK(g.state == GroupState::kPending, "group " << gid);
    Lease l;
    l.lease_id = next_lease_id_++;
    l.group_id = gid;
    l.actor = actor;
    l.deadline = now + options_.lease_duration;
    l.attempt = ++g.attempts;
    g.state = GroupState::kLeased;
    g.lease_id = l.lease_id;
    leases_.emplace(l.lease_id, l);
    actors_[actor].leases.insert(l.lease_id);
    ++counters_.dispatched;
    out.push_back(std::move(l));
  }
  return out;
}

Lease WorkLedger::Close(uint64_t lease_id) {
  auto it = leases_.find(lease_id);
  CHAINRL_CHECK(it != leases_.end(), "lease " << lease_id);
  Lease l = std::move(it->second);
  leases_.erase(it);
  restored_.erase(lease_id);
  auto a = actors_.find(l.actor);
  if (a != actors_.end()) a->second.leases.erase(lease_id);
  return l;
}

void WorkLedger::Revoke(uint64_t lease_id, bool expired) {
  Lease l = Close(lease_id);
  Group& g = groups_.at(l.group_id);
  if (expired) ++counters_.leases_expired;
  if (options_.max_attempts > 0 && g.attempts >= options_.max_attempts) {
    g.state = GroupState::kLost;
    ++counters_.lost;
    return;
  }
  g.state = GroupState::kPending;
  queue_.push_front(l.group_id);  // first in line: it is the oldest work
  ++counters_.reassigned;
}

Status WorkLedger::Reopen(uint64_t group_id) {
  auto it = groups_.find(group_id);
  if (it == groups_.end() || it->second.state != GroupState::kCompleted)
    return InvalidArgument("group " + std::to_string(group_id) +
                           " cannot be reopened: it is not a completed group");
  it->second.state = GroupState::kPending;
  it->second.attempts = 0;
  queue_.push_front(group_id);
  ++counters_.stale_requeued;
  return Status::Ok();
}

bool WorkLedger::Decline(uint64_t lease_id, uint64_t group_id, std::string_view actor) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end() || it->second.group_id != group_id || it->second.actor != actor)
    return false;
  Touch(std::string(actor));
  ++counters_.leases_declined;
  Revoke(lease_id, /*expired=*/false);
  return true;
}

void WorkLedger::Refuse(uint64_t lease_id) {
  if (leases_.count(lease_id) == 0) return;
  Lease l = Close(lease_id);
  groups_.at(l.group_id).state = GroupState::kLost;
  ++counters_.refused;
}

Verdict WorkLedger::Complete(uint64_t lease_id, uint64_t group_id, int64_t behaviour_version,
                             int64_t learner_version, bool group_finished, std::string_view actor) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    if (lease_id != 0 && lease_id < next_lease_id_) {
      ++counters_.duplicates_discarded;
      return Verdict::kDuplicate;
    }
    ++counters_.unknown_discarded;
    return Verdict::kUnknown;
  }
  if (it->second.group_id != group_id || (!actor.empty() && it->second.actor != actor)) {
    ++counters_.unknown_discarded;
    return Verdict::kUnknown;
  }
  const std::string holder = it->second.actor;
  Close(lease_id);
  if (actors_.count(holder)) Touch(holder);
  Group& g = groups_.at(group_id);
  const bool stale = learner_version - behaviour_version > options_.max_off_policy_steps;
  if (stale && options_.stale_policy == StalePolicy::kDrop) {
    g.state = GroupState::kPending;
    queue_.push_front(group_id);
    ++counters_.stale_dropped;
    return Verdict::kDroppedStale;
  }
  if (!group_finished) {
    g.state = GroupState::kPending;
    g.attempts = 0;
    queue_.push_front(group_id);
    ++counters_.segments_continued;
    if (stale) ++counters_.stale_flagged;
    return stale ? Verdict::kAcceptedNeedsCorrection : Verdict::kAccepted;
  }
  g.state = GroupState::kCompleted;
  ++counters_.completed;
  if (stale) {
    ++counters_.stale_flagged;
    return Verdict::kAcceptedNeedsCorrection;
  }
  return Verdict::kAccepted;
}

std::vector<Lease> WorkLedger::Expire() {
  const auto now = clock_->Now();
  std::vector<Lease> revoked;
  for (auto& [name, a] : actors_) {
    if (!a.alive || now - a.last_seen <= options_.heartbeat_timeout) continue;
    a.alive = false;
    ++counters_.actors_declared_dead;
    const std::set<uint64_t> leases = a.leases;
    CHAINRL_LOG(kWarn) << name << " declared dead: silent for "
                       << std::chrono::duration<double>(now - a.last_seen).count() << " s (limit "
                       << std::chrono::duration<double>(options_.heartbeat_timeout).count()
                       << " s); its " << leases.size() << " leases are handed out again";
    for (uint64_t id : leases) {
      revoked.push_back(leases_.at(id));
      Revoke(id, /*expired=*/false);
    }
  }
  std::vector<uint64_t> overdue;
  for (const auto& [id, l] : leases_)
    if (now > l.deadline) overdue.push_back(id);
  for (uint64_t id : overdue) {
    revoked.push_back(leases_.at(id));
    Revoke(id, /*expired=*/true);
  }
  return revoked;
}

// ---- serialisation ------------------------------------------------------------------------------

namespace {
const char* StateName(int s) {
  static const char* kNames[] = {"pending", "leased", "completed", "lost"};
  return kNames[s];
}
}  // namespace

std::string WorkLedger::ToJson() const {
  using nlohmann::json;
  const auto now = clock_->Now();
  json j;
  j["format"] = "chainrl.work_ledger.v1";
  j["next_lease_id"] = next_lease_id_;
  json groups = json::array();
  // Sorted by id so the output is deterministic.
  std::map<uint64_t, const Group*> sorted;
  for (const auto& [id, g] : groups_) sorted[id] = &g;
  for (const auto& [id, g] : sorted)
    groups.push_back(
        {{"id", id}, {"state", StateName(static_cast<int>(g->state))}, {"attempts", g->attempts}});
  j["groups"] = std::move(groups);
  j["queue"] = json(std::vector<uint64_t>(queue_.begin(), queue_.end()));
  json leases = json::array();
  for (const auto& [id, l] : leases_)
    leases.push_back(
        {{"lease_id", id},
         {"group_id", l.group_id},
         {"actor", l.actor},
         {"attempt", l.attempt},
         {"remaining_ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(l.deadline - now).count()}});
  j["leases"] = std::move(leases);
  json actors = json::array();
  for (const auto& [name, a] : actors_) actors.push_back({{"name", name}, {"alive", a.alive}});
  j["actors"] = std::move(actors);
  const auto& c = counters_;
  j["counters"] = {{"dispatched", c.dispatched},
                   {"completed", c.completed},
                   {"reassigned", c.reassigned},
                   {"duplicates_discarded", c.duplicates_discarded},
                   {"unknown_discarded", c.unknown_discarded},
                   {"lost", c.lost},
                   {"refused", c.refused},
                   {"stale_dropped", c.stale_dropped},
                   {"stale_flagged", c.stale_flagged},
                   {"stale_requeued", c.stale_requeued},
                   {"actors_declared_dead", c.actors_declared_dead},
                   {"leases_expired", c.leases_expired},
                   {"leases_declined", c.leases_declined},
                   {"segments_continued", c.segments_continued}};
  return j.dump();
}

Result<WorkLedger> WorkLedger::FromJson(std::string_view text, LedgerOptions options,
                                        const Clock* clock) {
  using nlohmann::json;
  const std::string where = "work ledger state";
  CHAINRL_ASSIGN_OR_RETURN(json j, ParseJson(text, where, kMaxJsonDepth, StatusCode::kCorrupt));
  if (!j.is_object()) return Corrupt(where + ": not a JSON object");
  {
    // Ids, counts and milliseconds only: a fraction or exponent would convert undefinedly.
    Status ints = RequireIntegers(j, where);
    if (!ints.ok()) return Corrupt(ints.message());
  }
  WorkLedger l(options, clock);
  const auto now = clock->Now();
  try {
    if (j.value("format", "") != "chainrl.work_ledger.v1")
      return Corrupt(where + ": key 'format' is not \"chainrl.work_ledger.v1\"");
    l.next_lease_id_ = j.at("next_lease_id").get<uint64_t>();
    for (const auto& g : j.at("groups")) {
      Group grp;
      const std::string s = g.at("state").get<std::string>();
      int k = 0;
      while (k < 4 && s != StateName(k)) ++k;
      if (k == 4) return Corrupt(where + ": groups[].state '" + s + "' is not a state");
      grp.state = static_cast<GroupState>(k);
      grp.attempts = g.at("attempts").get<int>();
      const uint64_t id = g.at("id").get<uint64_t>();
      if (!l.groups_.emplace(id, grp).second)
        return Corrupt(where + ": groups[] lists " + std::to_string(id) + " twice");
    }
    for (const auto& q : j.at("queue")) {
      const uint64_t id = q.get<uint64_t>();
      auto it = l.groups_.find(id);
      if (it == l.groups_.end() || it->second.state != GroupState::kPending)
        return Corrupt(where + ": queue[] holds " + std::to_string(id) +
                       ", which is not a pending group");
      l.queue_.push_back(id);
    }
    for (const auto& a : j.at("actors")) {
      Actor actor;
      actor.last_seen = now;
      actor.alive = a.at("alive").get<bool>();
      l.actors_[a.at("name").get<std::string>()] = actor;
    }
    for (const auto& e : j.at("leases")) {
      Lease lease;
      lease.lease_id = e.at("lease_id").get<uint64_t>();
      lease.group_id = e.at("group_id").get<uint64_t>();
      lease.actor = e.at("actor").get<std::string>();
      lease.attempt = e.at("attempt").get<int>();
      lease.deadline = now + std::chrono::milliseconds(e.at("remaining_ms").get<int64_t>());
      auto it = l.groups_.find(lease.group_id);
      if (it == l.groups_.end() || it->second.state != GroupState::kLeased || lease.lease_id == 0 ||
          lease.lease_id >= l.next_lease_id_)
        return Corrupt(where + ": leases[] entry " + std::to_string(lease.lease_id) +
                       " does not match a leased group");
      it->second.lease_id = lease.lease_id;
      l.actors_[lease.actor].last_seen = now;
      l.actors_[lease.actor].leases.insert(lease.lease_id);
      l.restored_.insert(lease.lease_id);
      l.leases_.emplace(lease.lease_id, std::move(lease));
    }
    size_t pending = 0, leased = 0;
    for (const auto& [id, g] : l.groups_) {
      pending += g.state == GroupState::kPending;
      leased += g.state == GroupState::kLeased;
    }
    if (pending != l.queue_.size() || leased != l.leases_.size())
      return Corrupt(where + ": " + std::to_string(pending) + " pending groups but " +
                     std::to_string(l.queue_.size()) + " queued, " + std::to_string(leased) +
                     " leased groups but " + std::to_string(l.leases_.size()) + " leases");
    const json& c = j.at("counters");
    auto& k = l.counters_;
    k.dispatched = c.at("dispatched").get<uint64_t>();
    k.completed = c.at("completed").get<uint64_t>();
    k.reassigned = c.at("reassigned").get<uint64_t>();
    k.duplicates_discarded = c.at("duplicates_discarded").get<uint64_t>();
    k.unknown_discarded = c.at("unknown_discarded").get<uint64_t>();
    k.lost = c.at("lost").get<uint64_t>();
    k.refused = c.value("refused", uint64_t{0});
    k.stale_dropped = c.at("stale_dropped").get<uint64_t>();
    k.stale_flagged = c.at("stale_flagged").get<uint64_t>();
    k.stale_requeued = c.value("stale_requeued", uint64_t{0});
    k.actors_declared_dead = c.at("actors_declared_dead").get<uint64_t>();
    k.leases_expired = c.at("leases_expired").get<uint64_t>();
    k.leases_declined = c.value("leases_declined", uint64_t{0});
    k.segments_continued = c.value("segments_continued", uint64_t{0});
  } catch (const json::exception& e) {
    return Corrupt(where + ": " + e.what());
  }
  return l;
}

}  // namespace chainrl::learner
