// libFuzzer harness: the messages rank 0 of a data-parallel learner sends the other ranks
// (learner/rank_messages.h), decoded by the learner's own code without LibTorch. RankMessage holds
// a torch::Tensor (GroupData's prompt embeddings, learner/rl_step.h), so rather than fuzzing a
// separate scan of the bytes, the codec itself was moved into learner/rank_message_codec.h as
// templates over the message's types: the learner instantiates them with RankMessage and a thin
// step that makes the tensor, this harness with the LibTorch-free stand-ins of
// fuzz/rank_message_plain.h. A message that decodes encodes again to bytes of the same size that
// decode again to a message encoding to the same bytes (the encoding is a fixed point), its
// policy versions cover its samples' tokens and its embeddings hold rows x hidden values; cut by
// one byte or grown by one it is refused. A refused one is Corrupt, naming the rank message.
#include "fuzz/fuzz_input.h"
#include "fuzz/rank_message_plain.h"

using namespace chainrl;

namespace {

void CheckDecoded(const fuzz::PlainRankMessage& m) {
  for (const fuzz::PlainGroup& g : m.groups) {
    for (const fuzz::PlainSample& s : g.samples) {
      CHAINRL_FUZZ_CHECK(s.end <= learner::kRankMessageMaxSampleEnd, std::to_string(s.end));
      int64_t covered = 0;
      for (const learner::VersionRun& v : s.versions) {
        CHAINRL_FUZZ_CHECK(v.length > 0, "a policy version run of " + std::to_string(v.length));
        covered += v.length;
      }
      CHAINRL_FUZZ_CHECK(s.versions.empty() || covered == static_cast<int64_t>(s.tokens.size()),
                         "policy versions cover " + std::to_string(covered) + " of " +
                             std::to_string(s.tokens.size()) + " tokens");
    }
    const learner::PromptEmbeddingsBytes& e = g.prompt_embeddings;
    if (e.dtype < 0) continue;
    CHAINRL_FUZZ_CHECK(e.shape.size() == 2 && e.shape[0] >= 0 && e.shape[1] >= 0, "shape");
    const unsigned __int128 numel =
        static_cast<unsigned __int128>(e.shape[0]) * static_cast<unsigned __int128>(e.shape[1]);
    CHAINRL_FUZZ_CHECK(numel == e.values.size(), "embeddings' values");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = fuzz::AsText(data, size);
  fuzz::PlainRankMessage m;
  const Status st = fuzz::Decode(bytes, &m);
  if (!st.ok()) {
    CHAINRL_FUZZ_CHECK(st.code() == StatusCode::kCorrupt, st.ToString());
    CHAINRL_FUZZ_CHECK(st.message().starts_with("rank message: "), st.message());
    return 0;
  }
  CheckDecoded(m);
  const std::string again = fuzz::Encode(m);
  CHAINRL_FUZZ_CHECK(again.size() == bytes.size(), "re-encoded to " + std::to_string(again.size()) +
                                                       " bytes from " + std::to_string(size));
  fuzz::PlainRankMessage back;
  const Status st2 = fuzz::Decode(again, &back);
  CHAINRL_FUZZ_CHECK(st2.ok(), st2.message());
  CHAINRL_FUZZ_CHECK(fuzz::Encode(back) == again, "the encoding is not a fixed point");
  fuzz::PlainRankMessage cut;
  CHAINRL_FUZZ_CHECK(!fuzz::Decode(bytes.substr(0, size - 1), &cut).ok(), "cut by one byte");
  fuzz::PlainRankMessage grown;
  CHAINRL_FUZZ_CHECK(!fuzz::Decode(std::string(bytes) + '\0', &grown).ok(), "grown by one byte");
  return 0;
}
