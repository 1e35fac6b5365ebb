// RankMessage (learner/rank_messages.h) without LibTorch, for the fuzzing build: the same members
// as RankMessage, GroupData, SampleData, PreferencePairData and SftExample (learner/rl_step.h),
// with the prompt embeddings kept as their bytes. learner/rank_message_codec.h's Encode and Decode
// instantiated with these are the learner's, byte for byte; a member the codec reads that is
// missing here fails to compile, so the two cannot drift apart.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "learner/rank_message_codec.h"

namespace chainrl::fuzz {

struct PlainSample {
  std::vector<int32_t> tokens;
  std::vector<float> behaviour_logprobs;
  double reward = 0;
  uint8_t end = 0;
  bool correct = false;
  std::optional<double> advantage;
  std::vector<learner::VersionRun> versions;
};

struct PlainGroup {
  uint64_t group_id = 0;
  std::vector<int32_t> prompt;
  std::vector<PlainSample> samples;
  learner::PromptEmbeddingsBytes prompt_embeddings;
  int32_t placeholder_token_id = -1;
};

struct PlainPair {
  std::vector<int32_t> prompt;
  std::vector<int32_t> chosen;
  std::vector<std::vector<int32_t>> rejected;
};

struct PlainSft {
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;
};

struct PlainRankMessage {
  learner::RankMessageKind kind = learner::RankMessageKind::kStop;
  int64_t step = 0;
  int64_t sft_step = 0;
  bool sft_done = false;
  std::string resume_dir;
  std::vector<PlainGroup> groups;
  int64_t policy_version = -1;
  std::vector<PlainPair> pairs;
  std::vector<PlainSft> sft;
};

struct PlainEmbeddings {
  static learner::PromptEmbeddingsBytes ToBytes(const PlainGroup& g) { return g.prompt_embeddings; }
  static void FromBytes(learner::PromptEmbeddingsBytes e, PlainGroup* g) {
    g->prompt_embeddings = std::move(e);
  }
};

inline std::string Encode(const PlainRankMessage& m) {
  return learner::rank_codec::Encode<PlainEmbeddings>(m);
}
inline Status Decode(std::string_view bytes, PlainRankMessage* m) {
  return learner::rank_codec::Decode<PlainEmbeddings>(bytes, m);
}

}  // namespace chainrl::fuzz
