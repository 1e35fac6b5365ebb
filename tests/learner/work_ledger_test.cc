// Tests for learner/work_ledger: leases, heartbeat expiry and reassignment, late and duplicate
// results, staleness policy, lost groups, JSON state, and exactly-once accounting under a
// randomized schedule of deaths, partitions and late results.
#include "learner/work_ledger.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "apps/run_config.h"

namespace chainrl::learner {
namespace {

using namespace std::chrono_literals;

LedgerOptions Opts() {
  return LedgerOptions()
      .set_heartbeat_timeout(100ms)
      .set_lease_duration(1000ms)
      .set_max_off_policy_steps(2)
      .set_stale_policy(StalePolicy::kDrop);
}

TEST(WorkLedgerTest, DispatchHandsOutQueuedGroupsWithLeases) {
  ManualClock clock;
  clock.Advance(5s);
  WorkLedger l(Opts(), &clock);
  for (uint64_t g = 100; g < 105; ++g) ASSERT_TRUE(l.AddGroup(g).ok());
  EXPECT_EQ(l.AddGroup(101).code(), StatusCode::kInvalidArgument);
  auto leases = l.Dispatch("a", 3);
  ASSERT_EQ(leases.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(leases[i].group_id, 100u + i);
    EXPECT_EQ(leases[i].lease_id, 1u + i);
    EXPECT_EQ(leases[i].actor, "a");
    EXPECT_EQ(leases[i].deadline, 5s + 1000ms);
    EXPECT_EQ(leases[i].attempt, 1);
  }
  EXPECT_EQ(l.pending(), 2u);
  EXPECT_EQ(l.in_flight(), 3u);
  EXPECT_EQ(l.Dispatch("b", 10).size(), 2u);
  EXPECT_TRUE(l.Dispatch("b", 10).empty());
  EXPECT_EQ(l.counters().dispatched, 5u);
}

// Preferred groups (an actor's own continuations) are handed out first, each part in queue
// order; the rest follow when there is room, and nothing is skipped or handed out twice.
TEST(WorkLedgerTest, PreferredGroupsGoFirstInQueueOrder) {
  ManualClock clock;
  WorkLedger l(Opts(), &clock);
  for (uint64_t g = 1; g <= 6; ++g) ASSERT_TRUE(l.AddGroup(g).ok());
  auto mine = [](uint64_t g) { return g == 5 || g == 3; };
  auto first = l.Dispatch("a", 3, mine);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0].group_id, 3u);
  EXPECT_EQ(first[1].group_id, 5u);
  EXPECT_EQ(first[2].group_id, 1u);
  auto rest = l.Dispatch("b", 10, mine);  // none preferred left: plain queue order
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[0].group_id, 2u);
  EXPECT_EQ(rest[1].group_id, 4u);
  EXPECT_EQ(rest[2].group_id, 6u);
  EXPECT_EQ(l.pending(), 0u);
}

// Work whose send failed goes back to the front of the queue at once, its attempt not counted
// (so failed sends never make a group lost), and a later result for such a lease is discarded.
TEST(WorkLedgerTest, UndeliveredLeasesAreQueuedFirstWithoutCountingTheAttempt) {
  ManualClock clock;
  WorkLedger l(Opts().set_max_attempts(2), &clock);
  for (uint64_t g = 1; g <= 3; ++g) ASSERT_TRUE(l.AddGroup(g).ok());
  for (int round = 0; round < 3; ++round) {  // more failed sends than max_attempts allows
    auto sent = l.Dispatch("a", 2);
    ASSERT_EQ(sent.size(), 2u);
    EXPECT_EQ(sent[0].group_id, 1u);
    EXPECT_EQ(sent[1].group_id, 2u);
    EXPECT_EQ(sent[0].attempt, 1);
    l.Undelivered({sent[0].lease_id, sent[1].lease_id});
    EXPECT_EQ(l.in_flight(), 0u);
    EXPECT_EQ(l.pending(), 3u);
    EXPECT_EQ(l.Complete(sent[0].lease_id, 1, 0, 0), Verdict::kDuplicate);
  }
  EXPECT_EQ(l.counters().lost, 0u);
  auto b = l.Dispatch("b", 3);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(l.Complete(b[0].lease_id, b[0].group_id, 0, 0), Verdict::kAccepted);
}

TEST(WorkLedgerTest, SilentActorIsDeclaredDeadAndItsLeasesReassigned) {
  ManualClock clock;
  WorkLedger l(Opts(), &clock);
  for (uint64_t g = 1; g <= 4; ++g) ASSERT_TRUE(l.AddGroup(g).ok());
  auto a = l.Dispatch("a", 2);  // groups 1, 2
  auto b = l.Dispatch("b", 1);  // group 3
  clock.Advance(60ms);
  l.Heartbeat("b");
  clock.Advance(60ms);  // a silent for 120 ms > 100 ms; b for 60 ms
  auto revoked = l.Expire();
  ASSERT_EQ(revoked.size(), 2u);
  EXPECT_EQ(revoked[0].actor, "a");
  EXPECT_FALSE(l.IsAlive("a"));
  EXPECT_TRUE(l.IsAlive("b"));
  EXPECT_EQ(l.counters().actors_declared_dead, 1u);
  EXPECT_EQ(l.counters().reassigned, 2u);
  EXPECT_EQ(l.pending(), 3u);
  // The revoked groups are first in line, before never-dispatched group 4.
  auto c = l.Dispatch("c", 3);
  ASSERT_EQ(c.size(), 3u);
  std::set<uint64_t> first = {c[0].group_id, c[1].group_id};
  EXPECT_EQ(first, (std::set<uint64_t>{1, 2}));
  EXPECT_EQ(c[0].attempt, 2);
  EXPECT_EQ(c[2].group_id, 4u);
  // a's late result is discarded and counted; c's is accepted; a second copy is a duplicate.
  EXPECT_EQ(l.Complete(a[0].lease_id, a[0].group_id, 5, 5), Verdict::kDuplicate);
  EXPECT_EQ(l.counters().duplicates_discarded, 1u);
  const Lease& c1 = c[0].group_id == a[0].group_id ? c[0] : c[1];
  EXPECT_EQ(l.Complete(c1.lease_id, c1.group_id, 5, 5), Verdict::kAccepted);
  EXPECT_EQ(l.Complete(c1.lease_id, c1.group_id, 5, 5), Verdict::kDuplicate);
  EXPECT_EQ(l.counters().duplicates_discarded, 2u);
  EXPECT_TRUE(l.IsCompleted(a[0].group_id));
  // Never-issued lease, and a lease with the wrong group id.
  EXPECT_EQ(l.Complete(999, 1, 5, 5), Verdict::kUnknown);
  EXPECT_EQ(l.Complete(b[0].lease_id, 4, 5, 5), Verdict::kUnknown);
  EXPECT_EQ(l.counters().unknown_discarded, 2u);
  EXPECT_EQ(l.Complete(b[0].lease_id, 3, 5, 5), Verdict::kAccepted);
  // A dead actor that heartbeats again is alive and gets work.
  l.Heartbeat("a");
  EXPECT_TRUE(l.IsAlive("a"));
}

TEST(WorkLedgerTest, LeaseDeadlineRevokesEvenWhileTheActorHeartbeats) {
  ManualClock clock;
  WorkLedger l(Opts(), &clock);
  ASSERT_TRUE(l.AddGroup(7).ok());
  auto a = l.Dispatch("a", 1);
  for (int i = 0; i < 10; ++i) {
    clock.Advance(99ms);
    l.Heartbeat("a");
    EXPECT_TRUE(l.Expire().empty()) << i;
  }
  clock.Advance(99ms);  // 1089 ms > 1000 ms
  l.Heartbeat("a");
  auto revoked = l.Expire();
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_EQ(l.counters().leases_expired, 1u);
  EXPECT_EQ(l.counters().reassigned, 1u);
  EXPECT_TRUE(l.IsAlive("a"));
  EXPECT_EQ(l.Complete(a[0].lease_id, 7, 0, 0), Verdict::kDuplicate);
}

TEST(WorkLedgerTest, StalenessDropOrFlag) {
  for (StalePolicy policy : {StalePolicy::kDrop, StalePolicy::kFlag}) {
    ManualClock clock;
    WorkLedger l(Opts().set_stale_policy(policy), &clock);
    ASSERT_TRUE(l.AddGroup(1).ok());
    ASSERT_TRUE(l.AddGroup(2).ok());
    auto leases = l.Dispatch("a", 2);
    // u - v = 10 - 8 = 2 <= 2: on-policy enough.
    EXPECT_EQ(l.Complete(leases[0].lease_id, 1, 8, 10), Verdict::kAccepted);
    // u - v = 3 > 2.
    Verdict v = l.Complete(leases[1].lease_id, 2, 7, 10);
    if (policy == StalePolicy::kDrop) {
      EXPECT_EQ(v, Verdict::kDroppedStale);
      EXPECT_EQ(l.counters().stale_dropped, 1u);
      EXPECT_FALSE(l.IsCompleted(2));
      auto again = l.Dispatch("a", 1);
      ASSERT_EQ(again.size(), 1u);
      EXPECT_EQ(again[0].group_id, 2u);
      EXPECT_EQ(l.Complete(again[0].lease_id, 2, 10, 10), Verdict::kAccepted);
    } else {
      EXPECT_EQ(v, Verdict::kAcceptedNeedsCorrection);
      EXPECT_EQ(l.counters().stale_flagged, 1u);
      EXPECT_TRUE(l.IsCompleted(2));
    }
    EXPECT_TRUE(l.Done());
    EXPECT_EQ(l.counters().completed, 2u);
  }
}

// A completed group found too stale when it was to be trained goes back to the front of the
// queue and is completed again by its next result; only completed groups can be reopened.
TEST(WorkLedgerTest, ReopenedGroupIsGeneratedAgainFirst) {
  ManualClock clock;
  WorkLedger l(Opts(), &clock);
  for (uint64_t g : {1, 2, 3}) ASSERT_TRUE(l.AddGroup(g).ok());
  auto leases = l.Dispatch("a", 1);
  ASSERT_EQ(leases.size(), 1u);
  ASSERT_EQ(l.Complete(leases[0].lease_id, 1, 5, 5), Verdict::kAccepted);
  EXPECT_FALSE(l.Reopen(2).ok());  // pending, not completed
  EXPECT_FALSE(l.Reopen(99).ok());
  ASSERT_TRUE(l.Reopen(1).ok());
  EXPECT_FALSE(l.IsCompleted(1));
  EXPECT_EQ(l.counters().stale_requeued, 1u);
  auto again = l.Dispatch("a", 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].group_id, 1u);  // first in line
  EXPECT_EQ(again[0].attempt, 1);
  EXPECT_EQ(l.Complete(again[0].lease_id, 1, 8, 8), Verdict::kAccepted);
  EXPECT_TRUE(l.IsCompleted(1));
  // The count survives a checkpoint.
  auto restored = WorkLedger::FromJson(l.ToJson(), l.options(), &clock);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ(restored->counters().stale_requeued, 1u);
}

// Segment rollout: an unfinished group's segment is accepted and the group queued again, first
// in line, under a new lease; only the result that finishes it completes it, once.
TEST(WorkLedgerTest, SegmentsOfAnUnfinishedGroupAreContinuedUnderNewLeases) {
  ManualClock clock;
  WorkLedger l(Opts().set_max_attempts(2), &clock);
  ASSERT_TRUE(l.AddGroup(7).ok());
  ASSERT_TRUE(l.AddGroup(8).ok());
  auto first = l.Dispatch("a", 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(l.Complete(first[0].lease_id, 7, 0, 0, /*group_finished=*/false), Verdict::kAccepted);
  EXPECT_FALSE(l.IsCompleted(7));
  EXPECT_EQ(l.pending(), 2u);
  EXPECT_EQ(l.counters().segments_continued, 1u);
  EXPECT_EQ(l.counters().completed, 0u);
  // The same result again is a duplicate, not a second segment.
  EXPECT_EQ(l.Complete(first[0].lease_id, 7, 0, 0, false), Verdict::kDuplicate);
  auto second = l.Dispatch("b", 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].group_id, 7u);  // continued before fresh work
  EXPECT_EQ(second[0].attempt, 1);    // progress restarts the revocation count
  // Its actor dies: the continuation is handed out again, not lost (max_attempts 2).
  clock.Advance(150ms);
  l.Heartbeat("c");
  EXPECT_EQ(l.Expire().size(), 1u);
  auto third = l.Dispatch("c", 1);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].group_id, 7u);
  EXPECT_EQ(third[0].attempt, 2);
  // Staleness is judged on the segment: a stale one is dropped and the group queued again.
  EXPECT_EQ(l.Complete(third[0].lease_id, 7, 1, 4, false), Verdict::kDroppedStale);
  auto fourth = l.Dispatch("c", 1);
  ASSERT_EQ(fourth.size(), 1u);
  EXPECT_EQ(l.Complete(fourth[0].lease_id, 7, 3, 4, true), Verdict::kAccepted);
  EXPECT_TRUE(l.IsCompleted(7));
  EXPECT_EQ(l.counters().completed, 1u);
  EXPECT_EQ(l.counters().segments_continued, 1u);
  auto restored = WorkLedger::FromJson(l.ToJson(), Opts(), &clock);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->counters().segments_continued, 1u);
  EXPECT_EQ(restored->pending(), 1u);
}

TEST(WorkLedgerTest, GroupIsLostAfterMaxAttemptsAndLeaveRevokesAtOnce) {
  ManualClock clock;
  WorkLedger l(Opts().set_max_attempts(2), &clock);
  ASSERT_TRUE(l.AddGroup(1).ok());
  ASSERT_EQ(l.Dispatch("a", 1).size(), 1u);
  l.Leave("a");  // attempt 1 revoked at once
  EXPECT_EQ(l.counters().reassigned, 1u);
  EXPECT_EQ(l.pending(), 1u);
  ASSERT_EQ(l.Dispatch("b", 1).size(), 1u);
  clock.Advance(200ms);
  l.Expire();  // attempt 2: b died too -> lost
  EXPECT_EQ(l.counters().lost, 1u);
  EXPECT_EQ(l.pending(), 0u);
  EXPECT_TRUE(l.Done());
  EXPECT_TRUE(l.Dispatch("c", 1).empty());
}

TEST(WorkLedgerTest, JsonStateRoundTripResumesInFlightAccounting) {
  ManualClock clock;
  clock.Advance(1h);
  WorkLedger l(Opts(), &clock);
  for (uint64_t g = 1; g <= 6; ++g) ASSERT_TRUE(l.AddGroup(g * 11).ok());
  auto a = l.Dispatch("a", 2);
  auto b = l.Dispatch("b", 2);
  ASSERT_EQ(l.Complete(a[0].lease_id, a[0].group_id, 0, 0), Verdict::kAccepted);
  clock.Advance(300ms);  // leases now have 700 ms left
  const std::string json = l.ToJson();

  ManualClock clock2;  // a restarted learner: a different clock origin
  clock2.Advance(7s);
  auto r = WorkLedger::FromJson(json, Opts(), &clock2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Restoring then saving at once gives back the same state, byte for byte.
  EXPECT_EQ(r->ToJson(), json);
  auto r2 = WorkLedger::FromJson(json, Opts(), &clock2);
  WorkLedger& n = *r2;
  EXPECT_EQ(n.groups(), 6u);
  EXPECT_EQ(n.pending(), 2u);
  EXPECT_EQ(n.in_flight(), 3u);
  EXPECT_TRUE(n.IsCompleted(a[0].group_id));
  EXPECT_EQ(n.counters().dispatched, 4u);
  EXPECT_EQ(n.counters().completed, 1u);
  // In-flight results still complete exactly once; a second copy is a duplicate.
  EXPECT_EQ(n.Complete(b[0].lease_id, b[0].group_id, 0, 0), Verdict::kAccepted);
  EXPECT_EQ(n.Complete(b[0].lease_id, b[0].group_id, 0, 0), Verdict::kDuplicate);
  EXPECT_EQ(n.Complete(a[0].lease_id, a[0].group_id, 0, 0), Verdict::kDuplicate);
  // New leases continue the id sequence.
  auto c = n.Dispatch("c", 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].lease_id, 5u);
  // Actors got a fresh heartbeat window at restore; leases kept their 700 ms.
  clock2.Advance(99ms);
  n.Heartbeat("a");
  n.Heartbeat("b");
  EXPECT_TRUE(n.Expire().empty());
  clock2.Advance(99ms);
  n.Heartbeat("a");
  n.Heartbeat("b");
  n.Heartbeat("c");
  for (int i = 0; i < 5; ++i) {
    clock2.Advance(99ms);
    n.Heartbeat("a");
    n.Heartbeat("b");
    n.Heartbeat("c");
  }
  auto revoked = n.Expire();  // 7 * 99 = 693 ms < 700 ms
  EXPECT_TRUE(revoked.empty());
  clock2.Advance(10ms);
  n.Heartbeat("a");
  n.Heartbeat("b");
  n.Heartbeat("c");
  revoked = n.Expire();  // 703 ms > 700 ms: a[1] and b[1] expire; c's lease is young
  EXPECT_EQ(revoked.size(), 2u);

  for (const char* bad :
       {"[]", "{\"format\":\"x\"}", "{\"format\":\"chainrl.work_ledger.v1\"}", "not json"}) {
    auto e = WorkLedger::FromJson(bad, Opts(), &clock2);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.status().code(), StatusCode::kCorrupt);
    EXPECT_NE(e.status().message().find("work ledger state"), std::string::npos);
  }
}

// Exactly-once under a randomized schedule of work requests, results, crashes (work forgotten),
// partitions (late results delivered after the actor was declared dead), duplicates and
// staleness drops: every group is trained exactly once and the counters add up.
// A restarted learner restores leases whose results went to the learner that died. The first
// heartbeat of each actor listing what it holds settles them: the ones it does not hold are handed
// out again at once (first in line, attempt not counted), the ones it holds stay, and leases issued
// after the restore are never touched.
TEST(WorkLedgerTest, RestoredLeasesTheActorNoLongerHoldsAreHandedOutAgainAtOnce) {
  ManualClock clock;
  WorkLedger l(Opts(), &clock);
  for (uint64_t g = 1; g <= 8; ++g) ASSERT_TRUE(l.AddGroup(g).ok());
  auto a = l.Dispatch("a", 3);  // groups 1, 2, 3
  auto b = l.Dispatch("b", 2);  // groups 4, 5
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 2u);
  const std::string json = l.ToJson();

  ManualClock clock2;
  auto r = WorkLedger::FromJson(json, Opts(), &clock2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  WorkLedger& n = *r;
  EXPECT_EQ(n.restored_unconfirmed(), 5u);
  EXPECT_EQ(n.in_flight(), 5u);
  // Actor a still generates group 2's lease; 1 and 3 were answered to the dead learner.
  n.Heartbeat("a");
  auto gone = n.ReconcileRestored("a", {a[1].lease_id, 999});
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone[0].group_id, 1u);
  EXPECT_EQ(gone[1].group_id, 3u);
  EXPECT_EQ(n.in_flight(), 3u);
  EXPECT_EQ(n.pending(), 5u);
  EXPECT_EQ(n.restored_unconfirmed(), 2u) << "b's two leases are not settled yet";
  // The revoked groups go out first, in their old order, and their attempt is not counted.
  auto again = n.Dispatch("c", 2);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].group_id, 1u);
  EXPECT_EQ(again[1].group_id, 3u);
  EXPECT_EQ(again[0].attempt, 1);
  // a's answer for group 2 still counts; a report again changes nothing.
  EXPECT_EQ(n.Complete(a[1].lease_id, 2, 0, 0), Verdict::kAccepted);
  EXPECT_TRUE(n.ReconcileRestored("a", {}).empty());
  // A lease issued after the restore is not touched by b's report that omits it.
  auto fresh = n.Dispatch("b", 1);
  ASSERT_EQ(fresh.size(), 1u);
  auto b_gone = n.ReconcileRestored("b", {b[0].lease_id});
  ASSERT_EQ(b_gone.size(), 1u);
  EXPECT_EQ(b_gone[0].lease_id, b[1].lease_id);
  EXPECT_TRUE(n.HoldsLease(fresh[0].lease_id, fresh[0].group_id));
  EXPECT_TRUE(n.HoldsLease(b[0].lease_id, b[0].group_id));
  EXPECT_EQ(n.restored_unconfirmed(), 0u);
  // Late results for the revoked leases are duplicates: each group is trained once.
  EXPECT_EQ(n.Complete(a[0].lease_id, 1, 0, 0), Verdict::kDuplicate);
  EXPECT_EQ(n.Complete(again[0].lease_id, 1, 0, 0), Verdict::kAccepted);
  // A ledger that was never restored reconciles nothing.
  WorkLedger plain(Opts(), &clock);
  ASSERT_TRUE(plain.AddGroup(1).ok());
  plain.Dispatch("a", 1);
  EXPECT_TRUE(plain.ReconcileRestored("a", {}).empty());
}

TEST(WorkLedgerTest, ExactlyOnceUnderRandomDeathsAndLateResults) {
  for (uint64_t seed = 0; seed < 25; ++seed) {
    std::mt19937_64 rng(seed);
    ManualClock clock;
    WorkLedger l(Opts(), &clock);
    constexpr int kGroups = 300;
    for (uint64_t g = 0; g < kGroups; ++g) ASSERT_TRUE(l.AddGroup(g + 1000).ok());
    struct Actor {
      std::vector<Lease> held;
      std::chrono::nanoseconds silent_until{0};
    };
    std::map<std::string, Actor> actors;
    for (int i = 0; i < 6; ++i) actors["actor-" + std::to_string(i)];
    std::set<uint64_t> trained;
    std::vector<Lease> sent;  // results already sent once (for duplicates)
    int64_t version = 0;
    uint64_t results = 0, accepted = 0, stale = 0;
    auto deliver = [&](const Lease& lease) {
      const int64_t behaviour = std::max<int64_t>(0, version - static_cast<int64_t>(rng() % 4));
      Verdict v = l.Complete(lease.lease_id, lease.group_id, behaviour, version);
      ++results;
      if (IsAccepted(v)) {
        ++accepted;
        ASSERT_TRUE(trained.insert(lease.group_id).second)
            << "group " << lease.group_id << " trained twice (seed " << seed << ")";
      } else if (v == Verdict::kDroppedStale) {
        ++stale;
        ASSERT_GT(version - behaviour, 2);
      }
      sent.push_back(lease);
    };
    int steps = 0;
    while (!l.Done() && steps < 200000) {
      ++steps;
      clock.Advance(std::chrono::milliseconds(rng() % 15));
      if (rng() % 50 == 0) ++version;
      auto it = std::next(actors.begin(), static_cast<long>(rng() % actors.size()));
      const std::string& name = it->first;
      Actor& a = it->second;
      const bool up = clock.Now() >= a.silent_until;
      const int action = static_cast<int>(rng() % 100);
      if (!up) {
        // A partitioned actor may still deliver a (late) result without being heard otherwise.
        if (action < 10 && !a.held.empty()) {
          deliver(a.held.back());
          a.held.pop_back();
        }
      } else if (action < 30) {
        for (auto& lease : l.Dispatch(name, 1 + rng() % 4)) a.held.push_back(lease);
      } else if (action < 65) {
        if (!a.held.empty()) {
          size_t k = rng() % a.held.size();
          deliver(a.held[k]);
          a.held.erase(a.held.begin() + static_cast<long>(k));
        } else {
          l.Heartbeat(name);
        }
      } else if (action < 80) {
        l.Heartbeat(name);
      } else if (action < 85 && !sent.empty()) {
        deliver(sent[rng() % sent.size()]);  // a duplicate of an earlier result
      } else if (action < 90) {
        a.silent_until = clock.Now() + std::chrono::milliseconds(50 + rng() % 400);  // partition
      } else if (action < 92) {
        a.held.clear();  // crash: in-flight work is forgotten; it rejoins later
        a.silent_until = clock.Now() + std::chrono::milliseconds(rng() % 400);
      }
      l.Expire();
    }
    ASSERT_TRUE(l.Done()) << "seed " << seed << " stuck after " << steps << " steps";
    const auto& c = l.counters();
    EXPECT_EQ(trained.size(), static_cast<size_t>(kGroups));
    for (uint64_t g = 0; g < kGroups; ++g) EXPECT_TRUE(trained.count(g + 1000));
    EXPECT_EQ(c.completed, static_cast<uint64_t>(kGroups));
    EXPECT_EQ(c.lost, 0u);
    EXPECT_EQ(l.in_flight(), 0u);
    EXPECT_EQ(l.pending(), 0u);
    // Every lease ended in exactly one way.
    EXPECT_EQ(c.dispatched, c.completed + c.reassigned + c.stale_dropped);
    // Every result was accepted, dropped as stale, or discarded and counted.
    EXPECT_EQ(results, accepted + stale + c.duplicates_discarded + c.unknown_discarded);
    EXPECT_EQ(c.unknown_discarded, 0u);
    EXPECT_EQ(stale, c.stale_dropped);
    EXPECT_GT(c.reassigned, 0u) << seed;
    EXPECT_GT(c.duplicates_discarded, 0u) << seed;
  }
}

// Every ledger option from the config: the schema's defaults are the values the learner used before
// the lease keys existed (10 s heartbeat timeout, 30 min leases, 5 attempts, 1 version, drop).
TEST(WorkLedgerTest, OptionsFromConfig) {
  auto parse = [](const std::vector<std::string>& sets) {
    return ParseConfig("[model]\npath = \"m\"\n", "test.toml", sets);
  };
  auto defaults = parse({});
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  auto d = LedgerOptionsFromConfig(*defaults);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->heartbeat_timeout, std::chrono::milliseconds(10'000));
  EXPECT_EQ(d->lease_duration, std::chrono::milliseconds(30 * 60'000));
  EXPECT_EQ(d->max_attempts, 5);
  EXPECT_EQ(d->max_off_policy_steps, 1);
  EXPECT_EQ(d->stale_policy, StalePolicy::kDrop);

  auto set = parse({"actors.heartbeat_timeout_seconds=2.5", "learner.lease_timeout_seconds=90.25",
                    "learner.lease_max_attempts=0", "learner.max_off_policy_steps=3",
                    "learner.stale_policy=flag"});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto o = LedgerOptionsFromConfig(*set);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->heartbeat_timeout, std::chrono::milliseconds(2'500));
  EXPECT_EQ(o->lease_duration, std::chrono::milliseconds(90'250));
  EXPECT_EQ(o->max_attempts, 0);  // retry forever
  EXPECT_EQ(o->max_off_policy_steps, 3);
  EXPECT_EQ(o->stale_policy, StalePolicy::kFlag);

  // The lease duration from the config is the one a lease gets.
  ManualClock clock;
  WorkLedger ledger(*o, &clock);
  ASSERT_TRUE(ledger.AddGroup(1).ok());
  auto leases = ledger.Dispatch("a", 1);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].deadline, std::chrono::milliseconds(90'250));

  // "correct" trains stale groups with the run's rollout correction (run options check it is on).
  auto correct = parse({"learner.stale_policy=correct"});
  ASSERT_TRUE(correct.ok()) << correct.status().message();
  auto co = LedgerOptionsFromConfig(*correct);
  ASSERT_TRUE(co.ok()) << co.status().ToString();
  EXPECT_EQ(co->stale_policy, StalePolicy::kCorrect);
  EXPECT_EQ(*ParseStalePolicy("correct"), StalePolicy::kCorrect);
  auto unknown = ParseStalePolicy("fix");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("valid values: drop, flag, correct"),
            std::string::npos);
  EXPECT_EQ(*ParseStalePolicy("flag"), StalePolicy::kFlag);
  EXPECT_EQ(*ParseStalePolicy("drop"), StalePolicy::kDrop);
}

// A checkpointed ledger holds ids, counts and milliseconds only: a number beyond the integers
// (1e300 attempts) is Corrupt instead of an undefined conversion, and so is JSON nested past the
// bound.
TEST(WorkLedgerTest, RestoredStateMustHoldIntegers) {
  ManualClock clock;
  WorkLedger l(Opts(), &clock);
  ASSERT_TRUE(l.AddGroup(1).ok());
  nlohmann::json j = nlohmann::json::parse(l.ToJson());
  j["groups"][0]["attempts"] = 1e300;
  auto r = WorkLedger::FromJson(j.dump(), Opts(), &clock);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(r.status().message(),
            "work ledger state: groups[0].attempts: 1e+300 is not an integer");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto d = WorkLedger::FromJson(deep, Opts(), &clock);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(d.status().message().find("nested deeper than"), std::string::npos)
      << d.status().message();
}

}  // namespace
}  // namespace chainrl::learner
