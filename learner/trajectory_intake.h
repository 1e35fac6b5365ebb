// A lease's result on its way in: are its samples the ones the lease owed, what the ledger says
// of it, and whether it completes its group (segment rollout keeps an unfinished group's segment).
// The checks every trajectory passes before it becomes training data, without sockets. No
// LibTorch.
#pragma once

#include <cstdint>
#include <string>

#include "core/proto/wire.pb.h"
#include "learner/segment_intake.h"
#include "learner/work_ledger.h"

namespace chainrl::learner {

// The oldest policy version among the tokens of `t`'s samples; `current` when no sample has any.
int64_t OldestPolicyVersion(const wire::Trajectory& t, int64_t current);

// What became of a result.
enum class IntakeOutcome {
  kWrongSamples,  // the lease is held but owed other samples: ignored (it expires, and is redone)
  kRefused,       // the ledger did not accept it (stale, duplicate, unknown): see `verdict`
  kCarried,       // accepted, an unfinished group's segment: kept, nothing to train yet
  kGroup,         // accepted, a whole group to train
};

struct IntakeResult {
  IntakeOutcome outcome = IntakeOutcome::kRefused;
  Verdict verdict = Verdict::kUnknown;  // the ledger's (not for kWrongSamples)
  int64_t oldest_version = 0;           // of t's tokens and those of the group's carried segments
  size_t samples_received = 0, samples_owed = 0;
  int64_t tokens = 0;      // tokens generated, counted for accepted results
  bool assembled = false;  // kGroup: *assembled is the group (from segments); else `t` itself
};

// Takes actor `sender`'s result `t` while the learner is at policy `version`: checks its samples
// against what the lease owed (SegmentAssembler::Expected), lets `ledger` judge it by the oldest
// token of the whole group so far (WorkLedger::Complete, unless kWrongSamples; a group dropped as
// stale loses its carried segments too) and gives an accepted one to `segments`
// (SegmentAssembler::Add, which may fill `*assembled`). Not thread-safe; `ledger` and `segments`
// are the caller's.
IntakeResult TakeTrajectory(const wire::Trajectory& t, const std::string& sender, int64_t version,
                            WorkLedger* ledger, SegmentAssembler* segments,
                            wire::Trajectory* assembled);

// Whether the group is dropped for having no reward spread (curriculum.filter_uniform_groups,
// DAPO dynamic sampling): DAPO's keep rule, KeepGroupForDynamicSampling (learner/advantages.h),
// on the samples' rewards. Two or more samples with one reward are dropped; a group of one is
// kept (its advantage is 0 but its tokens count); a group without samples is dropped.
bool NoRewardSpread(const wire::Trajectory& t);

// The samples of `t` whose tokens came from more than one policy version.
int64_t MultiVersionSamples(const wire::Trajectory& t);

}  // namespace chainrl::learner
