// Segment rollout on the learner's side (rollout.segment_tokens): the groups whose samples are not
// all finished, the tokens of their segments so far, and the actor that generated each group's
// last segment. The learner owns this state, so a dead actor loses at most the segment it was
// generating; checkpoints carry it (partials.bin). No LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/proto/wire.pb.h"
#include "core/status.h"

namespace chainrl::learner {

// What Add did with a lease's result.
enum class SegmentIntake {
  kWhole,      // a fresh group, every sample finished: the result itself is the group
  kCarried,    // kept: some sample is unfinished, nothing to train yet
  kAssembled,  // the group's last unfinished sample finished: *assembled holds the whole group
};

// Not thread-safe.
class SegmentAssembler {
 public:
  explicit SegmentAssembler(uint32_t group_size) : group_size_(group_size) {}
  // The samples per group of groups that start from now on (rollout.group_size in force).
  void set_group_size(uint32_t n) { group_size_ = n; }

  // The sample indices a lease of group `gid` was to generate: all of a fresh group, or the
  // unfinished samples of a group carried over from earlier segments.
  std::set<uint32_t> Expected(uint64_t gid) const;

  // Takes an accepted lease result (its samples are Expected(t.prompt_group_id()), checked by the
  // caller) from `actor`. A segment is appended to the group's tokens, behaviour logprobs, policy
  // versions and generation time; a finished sample takes its finish reason, reward and reward
  // details. kAssembled: `*assembled` is the whole group, with t's lease and actor ids.
  SegmentIntake Add(const wire::Trajectory& t, const std::string& actor,
                    wire::Trajectory* assembled);

  // The unfinished samples of `gid` as carried segments of a work item (none for a fresh group).
  void AddCarried(uint64_t gid, wire::WorkItem* item) const;
  // The actor whose segment of `gid` arrived last, if the group is carried (a hint, not
  // checkpointed: that actor may still hold the group's KV).
  const std::string* LastActor(uint64_t gid) const;
  bool has_last_actors() const { return last_actor_.empty() == false; }

  // The segments so far of a carried group (null for a fresh one).
  const wire::Trajectory* Partial(uint64_t gid) const;
  // Forgets a carried group's segments: it is generated again from its prompt.
  void Discard(uint64_t gid);

  size_t groups() const { return partials_.size(); }
  int64_t segments_received() const { return segments_received_; }
  void set_segments_received(int64_t n) { segments_received_ = n; }

  // partials.bin: the carried groups as records of serialized trajectories; LoadRecords replaces
  // this assembler's groups, Corrupt naming `what` when a record does not parse.
  std::string ToRecords() const;
  Status LoadRecords(std::string_view bytes, const std::string& what);

 private:
  uint32_t group_size_;
  // Sample i of each is the group's sample i: the tokens of its segments so far, with
  // FINISH_UNFINISHED until it ends.
  std::map<uint64_t, wire::Trajectory> partials_;
  std::unordered_map<uint64_t, std::string> last_actor_;
  int64_t segments_received_ = 0;
};

}  // namespace chainrl::learner
