// Dispatch of prompt groups to actors: which actors are there and how many groups each asked for
// (credits), who an actor is across restarts, and the work item a lease becomes. The ledger
// (work_ledger.h) decides which groups are leased; this decides what goes out. No LibTorch.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/proto/wire.pb.h"
#include "core/status.h"
#include "data/example.h"
#include "learner/group_source.h"
#include "learner/learner_metrics.h"
#include "learner/segment_intake.h"
#include "learner/work_ledger.h"

namespace chainrl::learner {

// The most groups one actor may ask to hold at once.
inline constexpr int64_t kMaxActorCredits = 1024;
// The most actors (names) the learner keeps track of at once: names beyond it are ignored, so a
// peer inventing names cannot grow the learner's tables without bound.
inline constexpr size_t kMaxActors = 4096;

struct ActorCredits {
  std::string routing;  // ZeroMQ routing id of its work socket
  int64_t pending = 0;  // groups asked for and not yet sent
  int64_t max = 1;      // what it may hold at once, from its join (clamped to [1, the table's max])
  std::string process;  // host:pid of the process that last joined under this name
};

// The actors the learner knows, by name. Not thread-safe.
class ActorTable {
 public:
  // `max_credits`: what any one actor may hold at once, whatever it asks (actors.credits: a peer
  // asking more would take every lease and stall the others); `max_actors`: names tracked at once.
  explicit ActorTable(int64_t max_credits = kMaxActorCredits, size_t max_actors = kMaxActors)
      : max_credits_(std::clamp<int64_t>(max_credits, 1, kMaxActorCredits)),
        max_actors_(max_actors) {}
  // Whether a message from `name` is heard: a name already known, or a new one (then entered,
  // without credits) while fewer than max_actors are. Counts the names turned away (ignored()).
  bool Admit(const std::string& name);
  int64_t ignored() const { return ignored_; }

  // A join from `process` (host:pid) on `routing`. Returns true when the name was last joined by
  // another process: a restarted actor, whose predecessor's leases the caller must revoke.
  bool Join(const std::string& name, const std::string& routing, const std::string& process,
            int64_t max_credits);
  // A request for `credits` more groups: pending credits grow up to the actor's max.
  void Request(const std::string& name, const std::string& routing, int64_t credits);
  void Leave(const std::string& name);
  // Drops the actors for which `alive` says false (the ledger declared them dead).
  void Prune(const std::function<bool(const std::string&)>& alive);
  // The process that last joined under `name`, empty if none.
  std::string ProcessOf(const std::string& name) const;

  std::map<std::string, ActorCredits>& actors() { return actors_; }
  size_t size() const { return actors_.size(); }

 private:
  std::map<std::string, ActorCredits> actors_;
  int64_t max_credits_;
  size_t max_actors_;
  int64_t ignored_ = 0;
};

// A message from an actor on the work channel, from `peer` (its routing id; `peer_name` for the
// log): a join (a restarted actor's predecessor's leases are revoked), a request for credits, a
// heartbeat or a leave; the ledger hears from the actor. A message without a sender is ignored,
// one of another kind logged and ignored. Not thread-safe.
void TakeWorkMessage(const wire::Envelope& env, const std::string& peer,
                     const std::string& peer_name, ActorTable* actors, WorkLedger* ledger);

// Adds groups `*next_group`, `*next_group + 1`, ... to `ledger` until pending, leased and
// `buffered` groups make two steps of `per_step` (one step of lookahead: actors generate the next
// batch while this one trains). A group the ledger refuses is logged and skipped.
void TopUpLedger(WorkLedger* ledger, size_t buffered, size_t per_step, uint64_t* next_group);

// What every work item of a dispatch round shares: the rollout.* keys in force and the learner's
// state (budget, version).
struct WorkRound {
  wire::SamplingParams sampling;  // without its seed (set per lease)
  uint64_t run_seed = 0;
  uint32_t token_budget = 0;
  uint32_t max_new_tokens = 0;
  uint32_t group_size = 0;
  uint32_t segment_tokens = 0;
  int64_t policy_version = 0;
  int32_t placeholder_token_id = -1;  // for examples with prompt embeddings
};
// rollout.temperature/top_p/top_k/stop_token_ids/stop_strings (after the chat template's own stop
// tokens), max_new_tokens, group_size, segment_tokens and run.seed; budget, version and
// placeholder from the learner.
WorkRound WorkRoundFromConfig(const Config& c, const std::vector<int32_t>& template_stop_ids,
                              int64_t budget, int64_t policy_version, int32_t placeholder_token_id);

// The sampling seed of a lease: SplitMix64(run_seed ^ SplitMix64(group_id * 1315423911 +
// attempt)). A group handed out again samples anew; the same run samples alike.
uint64_t LeaseSeed(uint64_t run_seed, uint64_t group_id, int attempt);

// Fills `item` for lease `l` of example `ex` whose rendered prompt is `prompt` (carried segments
// are the segment assembler's to add).
void FillWorkItem(const WorkRound& round, const Lease& l, const data::Example& ex,
                  const std::vector<int32_t>& prompt, wire::WorkItem* item);

// The process's side of a dispatch pass: an example's rendered prompt (by its index in the
// training examples), and the sending of a work batch to an actor's routing id.
using PromptOf = std::function<Result<const std::vector<int32_t>*>(size_t example_index)>;
using SendWork = std::function<Status(const std::string& routing, const wire::Envelope& env)>;

// One dispatch pass: every actor of `actors` with credits and a routing id gets up to its credits
// in leases from `ledger` (continuations first to the actor whose segment of them arrived last,
// SegmentAssembler::LastActor), as one work batch of items filled for `round` from `data`'s
// examples, with their carried segments. A lease whose prompt fails to render is logged and left
// out of the batch. A batch `send` does not deliver goes back to the front of the ledger's queue
// (WorkLedger::Undelivered) and its actor gets no more until it asks again; a delivered one uses
// up credits and is counted in `metrics`. Not thread-safe.
void DispatchWork(const WorkRound& round, ActorTable* actors, WorkLedger* ledger,
                  const SegmentAssembler& segments, GroupSource* data, const PromptOf& prompt_of,
                  const SendWork& send, LearnerMetrics* metrics);

}  // namespace chainrl::learner
