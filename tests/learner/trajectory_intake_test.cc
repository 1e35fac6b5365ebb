// Tests for learner/trajectory_intake.h: a result with other samples than its lease owed is
// ignored and its lease left alone; the ledger's verdicts (accepted, duplicate, stale, unknown)
// come back with the result's oldest policy version; segments are carried until their group is
// whole; uniform rewards and multi-version samples are counted exactly.
#include "learner/trajectory_intake.h"

#include <gtest/gtest.h>

#include <vector>

namespace chainrl::learner {
namespace {

using namespace std::chrono_literals;

// Sample `index` with `n` tokens; `versions` runs of policy versions (one token each but the last,
// which takes the rest).
wire::Sample MakeSample(uint32_t index, int n, std::vector<int64_t> versions,
                        wire::FinishReason finish = wire::FINISH_STOP, double reward = 0) {
  wire::Sample s;
  s.set_sample_index(index);
  for (int t = 0; t < n; ++t) {
    s.mutable_completion()->add_token_ids(static_cast<uint32_t>(10 + t));
    s.mutable_completion()->add_behaviour_logprobs(-0.5f);
  }
  int left = n;
  for (size_t i = 0; i < versions.size(); ++i) {
    const int len = i + 1 < versions.size() ? 1 : left;
    s.mutable_completion()->mutable_policy_versions()->add_versions(versions[i]);
    s.mutable_completion()->mutable_policy_versions()->add_lengths(static_cast<uint32_t>(len));
    left -= len;
  }
  s.set_finish_reason(finish);
  s.set_reward(reward);
  return s;
}

wire::Trajectory Result(uint64_t gid, uint64_t lease, std::vector<wire::Sample> samples) {
  wire::Trajectory t;
  t.set_prompt_group_id(gid);
  t.set_lease_id(lease);
  for (auto& s : samples) *t.add_samples() = std::move(s);
  return t;
}

struct Fixture {
  ManualClock clock;
  WorkLedger ledger{LedgerOptions().set_max_off_policy_steps(2), &clock};
  SegmentAssembler segments{2};
  wire::Trajectory assembled;

  Lease LeaseOf(uint64_t gid) {
    EXPECT_TRUE(ledger.AddGroup(gid).ok());
    auto leases = ledger.Dispatch("actor", 1);
    EXPECT_EQ(leases.size(), 1u);
    return leases.at(0);
  }
  IntakeResult Take(const wire::Trajectory& t, int64_t version) {
    return TakeTrajectory(t, "actor", version, &ledger, &segments, &assembled);
  }
};

TEST(TrajectoryIntakeTest, OldestVersionIsTheOldestTokensOrTheLearners) {
  EXPECT_EQ(
      OldestPolicyVersion(Result(1, 1, {MakeSample(0, 3, {5, 3, 4}), MakeSample(1, 2, {6})}), 9),
      3);
  // A sample without tokens does not count.
  EXPECT_EQ(OldestPolicyVersion(Result(1, 1, {MakeSample(0, 0, {1}), MakeSample(1, 2, {6})}), 9),
            6);
  EXPECT_EQ(OldestPolicyVersion(Result(1, 1, {}), 9), 9);
}

TEST(TrajectoryIntakeTest, AWholeGroupIsAcceptedWithItsTokensAndVersion) {
  Fixture f;
  const Lease l = f.LeaseOf(7);
  const IntakeResult r =
      f.Take(Result(7, l.lease_id, {MakeSample(0, 3, {4}), MakeSample(1, 2, {5})}), 5);
  EXPECT_EQ(r.outcome, IntakeOutcome::kGroup);
  EXPECT_EQ(r.verdict, Verdict::kAccepted);
  EXPECT_FALSE(r.assembled);
  EXPECT_EQ(r.oldest_version, 4);
  EXPECT_EQ(r.tokens, 5);
  EXPECT_EQ(r.samples_received, 2u);
  EXPECT_EQ(r.samples_owed, 2u);
  EXPECT_EQ(f.ledger.counters().completed, 1u);
  EXPECT_EQ(f.segments.segments_received(), 0);  // a whole group is no segment

  // The same result again: the ledger discards it, nothing is counted.
  const IntakeResult again =
      f.Take(Result(7, l.lease_id, {MakeSample(0, 3, {4}), MakeSample(1, 2, {5})}), 5);
  EXPECT_EQ(again.outcome, IntakeOutcome::kRefused);
  EXPECT_EQ(again.verdict, Verdict::kDuplicate);
  EXPECT_EQ(again.tokens, 0);
  EXPECT_EQ(f.ledger.counters().completed, 1u);
  EXPECT_EQ(f.segments.segments_received(), 0);
}

// A result is bound to the lease's holder: another actor (behind CURVE, another key) guessing
// the lease id completes nothing and the holder's own result is still accepted.
TEST(TrajectoryIntakeTest, OnlyTheLeasesHolderCompletesIt) {
  Fixture f;
  const Lease l = f.LeaseOf(8);
  const auto result = Result(8, l.lease_id, {MakeSample(0, 3, {4}), MakeSample(1, 2, {5})});
  const IntakeResult foreign =
      TakeTrajectory(result, "intruder", 5, &f.ledger, &f.segments, &f.assembled);
  EXPECT_EQ(foreign.outcome, IntakeOutcome::kRefused);
  EXPECT_EQ(foreign.verdict, Verdict::kUnknown);
  EXPECT_EQ(f.ledger.counters().unknown_discarded, 1u);
  EXPECT_EQ(f.ledger.counters().completed, 0u);
  EXPECT_TRUE(f.ledger.HoldsLease(l.lease_id, 8));
  const IntakeResult own = f.Take(result, 5);
  EXPECT_EQ(own.verdict, Verdict::kAccepted);
  EXPECT_EQ(f.ledger.counters().completed, 1u);
}

TEST(TrajectoryIntakeTest, OtherSamplesThanOwedLeaveTheLeaseAlone) {
  Fixture f;
  const Lease l = f.LeaseOf(3);
  const IntakeResult r = f.Take(Result(3, l.lease_id, {MakeSample(0, 3, {1})}), 1);
  EXPECT_EQ(r.outcome, IntakeOutcome::kWrongSamples);
  EXPECT_EQ(r.samples_received, 1u);
  EXPECT_EQ(r.samples_owed, 2u);
  EXPECT_TRUE(f.ledger.HoldsLease(l.lease_id, 3));
  EXPECT_EQ(f.ledger.counters().completed, 0u);
  EXPECT_EQ(f.ledger.counters().unknown_discarded, 0u);

  // Under a lease the ledger never issued, the ledger judges it (unknown).
  const IntakeResult unknown = f.Take(Result(3, 999, {MakeSample(0, 3, {1})}), 1);
  EXPECT_EQ(unknown.outcome, IntakeOutcome::kRefused);
  EXPECT_EQ(unknown.verdict, Verdict::kUnknown);
  EXPECT_EQ(f.ledger.counters().unknown_discarded, 1u);
}

TEST(TrajectoryIntakeTest, ATooStaleResultIsDropped) {
  Fixture f;
  const Lease l = f.LeaseOf(4);
  const IntakeResult r =
      f.Take(Result(4, l.lease_id, {MakeSample(0, 2, {6, 9}), MakeSample(1, 2, {9})}), 9);
  EXPECT_EQ(r.outcome, IntakeOutcome::kRefused);
  EXPECT_EQ(r.verdict, Verdict::kDroppedStale);
  EXPECT_EQ(r.oldest_version, 6);
  EXPECT_EQ(f.ledger.pending(), 1u);  // queued to be generated again
}

// The bound holds for the whole group, not for the last segment only: a fresh last segment does
// not hide the stale ones carried before it, and a group dropped for them starts again from its
// prompt (all its samples owed again, none of its old tokens kept).
TEST(TrajectoryIntakeTest, StalenessCountsEveryCarriedSegment) {
  Fixture f;  // bound 2
  const Lease first = f.LeaseOf(6);
  const IntakeResult carried = f.Take(Result(6, first.lease_id,
                                             {MakeSample(0, 2, {3}, wire::FINISH_UNFINISHED),
                                              MakeSample(1, 2, {3}, wire::FINISH_UNFINISHED)}),
                                      3);
  ASSERT_EQ(carried.outcome, IntakeOutcome::kCarried);
  auto leases = f.ledger.Dispatch("actor", 1);
  ASSERT_EQ(leases.size(), 1u);
  // The last segment's tokens are all version 6 (fresh at 6), but the group began at 3.
  const IntakeResult last =
      f.Take(Result(6, leases[0].lease_id, {MakeSample(0, 2, {6}), MakeSample(1, 1, {6})}), 6);
  EXPECT_EQ(last.outcome, IntakeOutcome::kRefused);
  EXPECT_EQ(last.verdict, Verdict::kDroppedStale);
  EXPECT_EQ(last.oldest_version, 3);
  EXPECT_EQ(f.segments.Partial(6), nullptr);
  EXPECT_EQ(f.segments.Expected(6), (std::set<uint32_t>{0, 1}));
  EXPECT_EQ(f.ledger.pending(), 1u);
  // Within the bound, the carried segments' version is the group's oldest too.
  Fixture g;
  const Lease a = g.LeaseOf(8);
  ASSERT_EQ(g.Take(Result(8, a.lease_id,
                          {MakeSample(0, 2, {4}), MakeSample(1, 2, {4}, wire::FINISH_UNFINISHED)}),
                   4)
                .outcome,
            IntakeOutcome::kCarried);
  auto b = g.ledger.Dispatch("actor", 1);
  ASSERT_EQ(b.size(), 1u);
  const IntakeResult ok = g.Take(Result(8, b[0].lease_id, {MakeSample(1, 1, {6})}), 6);
  EXPECT_EQ(ok.verdict, Verdict::kAccepted);
  EXPECT_EQ(ok.oldest_version, 4);
}

TEST(TrajectoryIntakeTest, SegmentsAreCarriedUntilTheGroupIsWhole) {
  Fixture f;
  const Lease first = f.LeaseOf(5);
  const IntakeResult carried = f.Take(Result(5, first.lease_id,
                                             {MakeSample(0, 2, {1}, wire::FINISH_STOP, 1.0),
                                              MakeSample(1, 4, {1}, wire::FINISH_UNFINISHED)}),
                                      1);
  EXPECT_EQ(carried.outcome, IntakeOutcome::kCarried);
  EXPECT_EQ(carried.tokens, 6);
  EXPECT_EQ(f.segments.Expected(5), (std::set<uint32_t>{1}));
  EXPECT_EQ(f.ledger.counters().segments_continued, 1u);

  auto leases = f.ledger.Dispatch("actor", 1);
  ASSERT_EQ(leases.size(), 1u);
  const IntakeResult whole =
      f.Take(Result(5, leases[0].lease_id, {MakeSample(1, 3, {2}, wire::FINISH_LENGTH, 0.0)}), 2);
  EXPECT_EQ(whole.outcome, IntakeOutcome::kGroup);
  EXPECT_TRUE(whole.assembled);
  EXPECT_EQ(whole.tokens, 3);
  ASSERT_EQ(f.assembled.samples_size(), 2);
  EXPECT_EQ(f.assembled.samples(1).completion().token_ids_size(), 7);
  EXPECT_EQ(f.assembled.samples(1).finish_reason(), wire::FINISH_LENGTH);
  EXPECT_EQ(MultiVersionSamples(f.assembled), 1);
  EXPECT_FALSE(NoRewardSpread(f.assembled));
  EXPECT_EQ(f.ledger.counters().completed, 1u);
}

TEST(TrajectoryIntakeTest, UniformRewardsAndMultiVersionSamples) {
  EXPECT_TRUE(NoRewardSpread(Result(1, 1, {})));
  // A group of one has no spread to measure: kept, as DAPO's rule keeps it.
  EXPECT_FALSE(NoRewardSpread(Result(1, 1, {MakeSample(0, 1, {1}, wire::FINISH_STOP, 0.5)})));
  EXPECT_TRUE(NoRewardSpread(Result(1, 1,
                                    {MakeSample(0, 1, {1}, wire::FINISH_STOP, 0.5),
                                     MakeSample(1, 1, {1}, wire::FINISH_STOP, 0.5)})));
  EXPECT_FALSE(NoRewardSpread(Result(1, 1,
                                     {MakeSample(0, 1, {1}, wire::FINISH_STOP, 0.5),
                                      MakeSample(1, 1, {1}, wire::FINISH_STOP, 0.25)})));
  EXPECT_EQ(
      MultiVersionSamples(Result(
          1, 1, {MakeSample(0, 3, {1, 2}), MakeSample(1, 3, {2}), MakeSample(2, 3, {1, 2, 3})})),
      2);
}

}  // namespace
}  // namespace chainrl::learner
