// The checks a lease's result passes on its way in (see trajectory_intake.h).
#include "learner/trajectory_intake.h"

#include <algorithm>
#include <set>
#include <vector>

#include "core/wire.h"
#include "learner/advantages.h"

namespace chainrl::learner {

int64_t OldestPolicyVersion(const wire::Trajectory& t, int64_t current) {
  int64_t oldest = current;
  for (const auto& s : t.samples())
    if (s.completion().token_ids_size() > 0)
      oldest = std::min(oldest, wire::OldestPolicyVersion(s.completion().policy_versions()));
  return oldest;
}

IntakeResult TakeTrajectory(const wire::Trajectory& t, const std::string& sender, int64_t version,
                            WorkLedger* ledger, SegmentAssembler* segments,
                            wire::Trajectory* assembled) {
  IntakeResult r;
  const uint64_t gid = t.prompt_group_id();
  // The samples this lease was to generate: all G of a fresh group, or the unfinished samples of
  // a group carried over from earlier segments.
  const std::set<uint32_t> expected = segments->Expected(gid);
  std::set<uint32_t> got;
  bool finishes = true;
  for (const auto& s : t.samples()) {
    got.insert(s.sample_index());
    finishes = finishes && s.finish_reason() != wire::FINISH_UNFINISHED;
  }
  r.samples_received = got.size();
  r.samples_owed = expected.size();
  if (got != expected && ledger->HoldsLease(t.lease_id(), gid)) {
    r.outcome = IntakeOutcome::kWrongSamples;
    return r;
  }
  // The group's oldest token: of this segment or of the ones carried before it.
  r.oldest_version = OldestPolicyVersion(t, version);
  if (const wire::Trajectory* carried = segments->Partial(gid))
    r.oldest_version = std::min(r.oldest_version, OldestPolicyVersion(*carried, version));
  r.verdict = ledger->Complete(t.lease_id(), gid, r.oldest_version, version, finishes, sender);
  // Dropped as stale: the group starts again from its prompt, its old segments with it.
  if (r.verdict == Verdict::kDroppedStale) segments->Discard(gid);
  if (!IsAccepted(r.verdict)) {
    r.outcome = IntakeOutcome::kRefused;
    return r;
  }
  for (const auto& s : t.samples())
    r.tokens += static_cast<int64_t>(s.completion().token_ids_size());
  // Segment rollout: keep the segment; the group is trained when its last sample finishes.
  switch (segments->Add(t, sender, assembled)) {
    case SegmentIntake::kCarried:
      r.outcome = IntakeOutcome::kCarried;
      break;
    case SegmentIntake::kAssembled:
      r.outcome = IntakeOutcome::kGroup;
      r.assembled = true;
      break;
    case SegmentIntake::kWhole:
      r.outcome = IntakeOutcome::kGroup;
      break;
  }
  return r;
}

bool NoRewardSpread(const wire::Trajectory& t) {
  std::vector<double> rewards;
  for (const auto& s : t.samples()) rewards.push_back(s.reward());
  return !KeepGroupForDynamicSampling(rewards);
}

int64_t MultiVersionSamples(const wire::Trajectory& t) {
  int64_t n = 0;
  for (const auto& s : t.samples())
    n += s.completion().policy_versions().versions_size() > 1 ? 1 : 0;
  return n;
}

}  // namespace chainrl::learner
