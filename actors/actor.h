// A rollout actor: connects to a learner, takes leased prompt groups with credits, generates their
// samples with the rollout engine, scores them with the run's rewards, and returns trajectories
// over a bounded queue, swapping in new policy weights as the learner publishes them.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/curve.h"
#include "core/endpoints.h"
#include "core/status.h"

namespace chainrl::wire {
class WorkItem;
}

namespace chainrl::actors {

struct ActorOptions {
  int64_t index = 0;          // actor number: id "actor-<index>", metrics label actor_id
  LearnerEndpoints endpoints;  // where the learner listens
  std::string run_dir;        // for the metrics address file; may be empty
  transport::CurveKeys curve;  // CURVE keys for every learner endpoint (security.*); empty: none
};

// The intra-op (LibTorch) thread count of an actor process: `env_threads` (the value of
// CHAINRL_THREADS; nullptr when unset) when it is a positive integer, else actors.threads. The
// environment overrides the config, as it does for learner.threads.
int ActorThreads(const Config& config, const char* env_threads);

// Whether this actor can make `item`'s work with a model of `max_positions` positions and
// `vocab_size` tokens: InvalidArgument saying why not (an empty prompt, a prompt and response cap
// longer than the context, a token outside the vocabulary, an unreadable embeddings reference or
// a placeholder the prompt lacks). The learner refuses such work before it leases it; an item
// that arrives anyway is declined alone (WorkDeclined), and the actor's other items go on.
Status CheckWorkItem(const wire::WorkItem& item, int64_t max_positions, int64_t vocab_size);

// Sets ActorThreads(config, CHAINRL_THREADS) threads, then runs until `stop` is set (then leaves
// cleanly: a Leave message, leases handed back) or a fatal error (a learner speaking another schema
// version, weights that do not fit the model). A learner that disappears is waited for: the actor
// reconnects and rejoins when it comes back.
Status RunActor(const Config& config, const ActorOptions& options, const std::atomic<bool>& stop);

}  // namespace chainrl::actors
