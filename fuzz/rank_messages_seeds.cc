// Writes seeds for rank_messages_fuzz into the folder given: a message of every kind as rank 0
// sends them, encoded by the learner's codec (learner/rank_message_codec.h) with the stand-ins of
// fuzz/rank_message_plain.h: groups with given advantages, every way a sample ends, policy
// version runs and bfloat16 prompt embeddings, preference pairs and SFT examples.
#include <cstdio>
#include <fstream>
#include <random>

#include "fuzz/rank_message_plain.h"

using namespace chainrl;
using learner::RankMessageKind;

namespace {

std::vector<int32_t> Tokens(std::mt19937& rng, size_t n) {
  std::vector<int32_t> out(n);
  for (int32_t& t : out) t = static_cast<int32_t>(rng() % 151000);
  return out;
}

fuzz::PlainGroup Group(std::mt19937& rng, uint64_t id, int samples) {
  fuzz::PlainGroup g;
  g.group_id = id;
  g.prompt = Tokens(rng, 6);
  for (int i = 0; i < samples; ++i) {
    fuzz::PlainSample s;
    s.tokens = Tokens(rng, 3 + static_cast<size_t>(i));
    for (size_t k = 0; k < s.tokens.size(); ++k)
      s.behaviour_logprobs.push_back(-static_cast<float>(rng() % 1000) / 97.0f);
    s.reward = i % 2 == 0 ? 1.0 : 0.0;
    s.end = static_cast<uint8_t>(i % (learner::kRankMessageMaxSampleEnd + 1));
    s.correct = i % 2 == 0;
    if (i == 1) s.advantage = -0.75;
    if (i != 2) s.versions = {{15, 1}, {17, static_cast<int64_t>(s.tokens.size()) - 1}};
    g.samples.push_back(std::move(s));
  }
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::mt19937 rng(5);
  std::vector<fuzz::PlainRankMessage> all;

  fuzz::PlainRankMessage start;
  start.kind = RankMessageKind::kStart;
  start.step = 12;
  start.sft_step = 30;
  start.sft_done = true;
  start.resume_dir = "/runs/a/checkpoints/step-000000042";
  all.push_back(start);

  fuzz::PlainRankMessage policy;
  policy.kind = RankMessageKind::kPolicyStep;
  policy.step = 13;
  policy.policy_version = 17;
  for (uint64_t id = 0; id < 3; ++id) policy.groups.push_back(Group(rng, 40 + id, 4));
  policy.groups[2].placeholder_token_id = 9;
  policy.groups[2].prompt_embeddings.dtype = learner::kEmbeddingDtypes[3];  // bfloat16
  policy.groups[2].prompt_embeddings.shape = {2, 4};
  policy.groups[2].prompt_embeddings.values = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, 3.0f, -0.25f, 8.0f};
  all.push_back(policy);

  fuzz::PlainRankMessage preference;
  preference.kind = RankMessageKind::kPreferenceStep;
  preference.step = 3;
  preference.pairs.push_back({{1, 2, 3}, {4, 5}, {{6}, {7, 8, 9}}});
  preference.pairs.push_back({{10}, {11, 12}, {{13, 14}}});
  all.push_back(preference);

  fuzz::PlainRankMessage sft;
  sft.kind = RankMessageKind::kSftStep;
  sft.step = 1;
  sft.sft.push_back({{10, 11}, {12, 13, 14}});
  all.push_back(sft);

  fuzz::PlainRankMessage done;
  done.kind = RankMessageKind::kSftDone;
  all.push_back(done);
  all.push_back(fuzz::PlainRankMessage{});  // kStop

  for (size_t i = 0; i < all.size(); ++i) {
    const std::string bytes = fuzz::Encode(all[i]);
    fuzz::PlainRankMessage back;  // a seed the decoder refuses would only start the fuzzer bare
    if (Status st = fuzz::Decode(bytes, &back); !st.ok()) {
      std::fprintf(stderr, "seed %zu: %s\n", i, st.ToString().c_str());
      return 1;
    }
    char name[32];
    std::snprintf(name, sizeof name, "/message-%02zu", i);
    std::ofstream(argv[1] + std::string(name), std::ios::binary) << bytes;
  }
  return 0;
}
