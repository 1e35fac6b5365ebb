// The checks and errors of rank message decoding (see rank_message_codec.h).
#include "learner/rank_message_codec.h"

#include <algorithm>

namespace chainrl::learner {

const char* RankMessageKindName(RankMessageKind kind) {
  switch (kind) {
    case RankMessageKind::kStart:
      return "start";
    case RankMessageKind::kSftStep:
      return "sft step";
    case RankMessageKind::kSftDone:
      return "sft done";
    case RankMessageKind::kPolicyStep:
      return "policy step";
    case RankMessageKind::kPreferenceStep:
      return "preference step";
    case RankMessageKind::kStop:
      return "stop";
  }
  return "unknown";
}

namespace rank_codec {

Status Reader::Short(const std::string& what) const {
  return Corrupt("rank message: " + what + " at byte " + std::to_string(at_) +
                 " runs past its end (" + std::to_string(in_.size()) + " bytes)");
}

Status CheckSampleFlags(uint8_t flags, size_t at) {
  if ((flags >> 3) <= kRankMessageMaxSampleEnd && (flags & 1) == 0) return Status::Ok();
  return Corrupt("rank message: a sample's flags (" + std::to_string(flags) + ") at byte " +
                 std::to_string(at) + " are not valid");
}

Status CheckVersionRuns(const std::vector<int64_t>& runs, size_t tokens, size_t at) {
  // Each length is checked against the tokens not yet covered before it is added, so the sum
  // never overflows whatever the bytes say.
  bool valid = runs.size() % 2 == 0;
  size_t covered = 0;
  for (size_t i = 1; valid && i < runs.size(); i += 2) {
    valid = runs[i] > 0 && static_cast<uint64_t>(runs[i]) <= tokens - covered;
    if (valid) covered += static_cast<size_t>(runs[i]);
  }
  if (valid && (runs.empty() || covered == tokens)) return Status::Ok();
  return Corrupt("rank message: a sample's policy versions at byte " + std::to_string(at) +
                 " do not cover its " + std::to_string(tokens) + " tokens");
}

Status CheckPromptEmbeddings(const PromptEmbeddingsBytes& e, size_t at) {
  bool valid = e.shape.size() == 2 &&
               std::find(std::begin(kEmbeddingDtypes), std::end(kEmbeddingDtypes), e.dtype) !=
                   std::end(kEmbeddingDtypes);
  // rows x hidden == the values, without overflow: no dimension is negative, and a product
  // beyond the values is refused before it is formed.
  bool empty = false;
  for (int64_t d : e.shape) {
    valid = valid && d >= 0;
    empty = empty || d == 0;
  }
  if (valid && empty) {
    valid = e.values.empty();
  } else if (valid) {
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      const auto dim = static_cast<uint64_t>(d);
      valid = valid && numel <= e.values.size() / dim;
      if (valid) numel *= dim;
    }
    valid = valid && numel == e.values.size();
  }
  if (valid) return Status::Ok();
  return Corrupt("rank message: prompt embeddings at byte " + std::to_string(at) +
                 " are not a [rows, hidden] floating-point matrix");
}

Status LeftOver(size_t bytes) {
  return Corrupt("rank message: " + std::to_string(bytes) + " bytes left over after the message");
}

Status BadMagic() { return Corrupt("rank message: not a chainrl rank message (bad magic)"); }

Status UnknownKind(uint8_t kind) {
  return Corrupt("rank message: unknown kind " + std::to_string(kind));
}

}  // namespace rank_codec
}  // namespace chainrl::learner
