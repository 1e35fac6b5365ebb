// What a learner checkpoint carries of the run itself (state.json): where the run is (phase,
// steps, policy version, next group), what it has counted, its step history and evaluations, and
// the states its parts keep (shaping targets, difficulty buckets, RNG). One record, serialised in
// one place, so a field added here is checkpointed and restored. No LibTorch.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <string>

#include "core/status.h"

namespace chainrl::learner {

struct RunState {
  bool sft_done = false;    // the SFT warm-up is over (or there is none)
  int64_t sft_step = 0;     // SFT updates taken
  int64_t step = 0;         // RL (or preference) updates taken
  int64_t version = 0;      // policy version published
  uint64_t next_group = 0;  // the next prompt group to add to the ledger
  int64_t tokens_trained = 0;
  int64_t groups_duplicated = 0, groups_filtered = 0, stale_dropped = 0;
  // Accepted groups past learner.max_off_policy_steps by the time they were to be trained:
  // dropped and generated again (stale_policy drop), or trained (flag, correct).
  int64_t stale_requeued = 0, stale_trained = 0;
  // Accepted samples whose tokens came from more than one policy version (weights swapped in
  // while the actor was generating them).
  int64_t samples_multi_version = 0;
  int64_t segments_received = 0;
  int64_t gen_limit_steps = 0;  // steps trained short at algorithm.max_num_gen_batches
  nlohmann::json history = nlohmann::json::array();  // per step: reward, accuracy, loss...
  nlohmann::json evals = nlohmann::json::array();    // {step, label, accuracy, mean_length...}
  nlohmann::json sft_eval;     // the evaluation after the SFT warm-up, or null
  double wall_seconds = 0;     // of every incarnation until the checkpoint
  std::set<uint64_t> trained;  // groups trained (a second one is counted as duplicated)
  // The parts' own states, opaque here: null when absent.
  nlohmann::json shaping, difficulty_buckets, torch_rng;

  nlohmann::json ToJson() const;
  // InvalidArgument naming `where` and the key when a required key is missing or mistyped.
  // samples_multi_version, segments_received, gen_limit_steps and the parts' states are optional
  // (checkpoints of earlier versions lack them).
  static Result<RunState> FromJson(const nlohmann::json& j, const std::string& where);
};

}  // namespace chainrl::learner
