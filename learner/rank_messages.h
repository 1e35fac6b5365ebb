// What rank 0 of a data-parallel learner tells the other ranks (learner_process.cc): the phase
// changes of the run and each update's shard of the batch. Encoded compactly (lengths first,
// native little-endian), and decoding checks every length, so a truncated or foreign message is a
// Corrupt error naming the offset, never a crash. The byte format lives in rank_message_codec.h
// (no LibTorch, fuzzed); this file adds the message type and its prompt embeddings' tensors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "learner/data_parallel.h"
#include "learner/rank_message_codec.h"
#include "learner/rl_step.h"

namespace chainrl::learner {

struct RankMessage {
  RankMessageKind kind = RankMessageKind::kStop;
  int64_t step = 0;
  int64_t sft_step = 0;                   // kStart
  bool sft_done = false;                  // kStart
  std::string resume_dir;                 // kStart: the checkpoint rank 0 resumed from, "" for none
  std::vector<GroupData> groups;          // kPolicyStep: this rank's shard (may be empty)
  int64_t policy_version = -1;            // kPolicyStep: the learner's version before it
  std::vector<PreferencePairData> pairs;  // kPreferenceStep: this rank's shard (may be empty)
  std::vector<SftExample> sft;            // kSftStep: this rank's shard (may be empty)
};

std::string EncodeRankMessage(const RankMessage& m);
Result<RankMessage> DecodeRankMessage(std::string_view bytes);

// Rank r's shard of a batch: items r, r + world, r + 2·world, ... (the ranks' shards differ in
// size by at most one item, and rank 0's is never smaller).
template <typename T>
std::vector<T> ShardOf(const std::vector<T>& batch, int rank, int world) {
  std::vector<T> out;
  for (size_t i = static_cast<size_t>(rank); i < batch.size(); i += static_cast<size_t>(world))
    out.push_back(batch[i]);
  return out;
}

// Rank 0: sends every other rank of `dp` its shard of `batch` in a copy of `m` (its `field` set)
// and returns rank 0's own shard; without data parallelism (null `dp`) the whole batch.
template <typename T>
Result<std::vector<T>> ScatterShards(DataParallel* dp, RankMessage m,
                                     std::vector<T> RankMessage::*field,
                                     const std::vector<T>& batch) {
  if (dp == nullptr) return batch;
  for (int r = 1; r < dp->world_size(); ++r) {
    m.*field = ShardOf(batch, r, dp->world_size());
    CHAINRL_RETURN_IF_ERROR(dp->Send(r, EncodeRankMessage(m)));
  }
  return ShardOf(batch, 0, dp->world_size());
}

// Rank 0: sends `m` to every other rank of `dp` (nothing without data parallelism).
Status TellOtherRanks(DataParallel* dp, const RankMessage& m);

}  // namespace chainrl::learner
