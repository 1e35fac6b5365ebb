// The bytes of the data-parallel learner's rank messages (rank_messages.h), without LibTorch: the
// encoder and decoder are written once here, as templates over the message's types, so the learner
// instantiates them with RankMessage (whose groups hold prompt embeddings as a torch::Tensor) and
// the fuzzing build with stand-ins of the same shape (fuzz/rank_messages_fuzz.cc). The prompt
// embeddings travel as plain values (PromptEmbeddingsBytes); turning a tensor into them and back is
// the caller's thin step. Lengths first, native little-endian; decoding checks every length, count
// and flag, so any bytes give a message or a Corrupt error naming the byte offset, and nothing is
// allocated for a count the bytes left cannot hold.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/status.h"
#include "learner/policy_mismatch.h"

namespace chainrl::learner {

enum class RankMessageKind : uint8_t {
  kStart = 1,           // where rank 0 starts: resume_dir, sft_done, step, sft_step
  kSftStep = 2,         // one SFT warm-up update on `sft`; step = the SFT step
  kSftDone = 3,         // the warm-up is over: its optimiser is dropped
  kPolicyStep = 4,      // one RL update on `groups`; step = the RL step it makes (before the count)
  kPreferenceStep = 5,  // one DPO-family update on `pairs`; step as kPolicyStep
  kStop = 6,            // rank 0 is finishing: leave
};
const char* RankMessageKindName(RankMessageKind kind);

// A group's prompt embeddings as they travel: the dtype to restore (a c10::ScalarType code, one of
// kEmbeddingDtypes; -1: the group has none), the shape [rows, hidden] and the values as float32
// (exact for the 16-bit types they may be stored in).
struct PromptEmbeddingsBytes {
  int8_t dtype = -1;
  std::vector<int64_t> shape;
  std::vector<float> values;
};
// c10::ScalarType codes of Half, Float, Double and BFloat16 (rank_messages.cc checks them against
// LibTorch's).
inline constexpr int8_t kEmbeddingDtypes[] = {5, 6, 7, 15};
// The largest SampleEnd (learner/rl_step.h, which rank_messages.cc checks against).
inline constexpr uint8_t kRankMessageMaxSampleEnd = 4;

namespace rank_codec {

inline constexpr uint32_t kMagic = 0x4b4e5243;  // "CRNK"

class Writer {
 public:
  template <typename T>
  void Put(T x) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&x), sizeof(T));
  }
  template <typename T>
  void PutVector(const std::vector<T>& v) {
    Put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    out_.append(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  Status Get(T* x) {
    if (sizeof(T) > left()) return Short("a field");
    std::memcpy(x, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return Status::Ok();
  }
  template <typename T>
  Status GetVector(std::vector<T>* v) {
    uint64_t n = 0;
    CHAINRL_RETURN_IF_ERROR(Get(&n));
    if (n > left() / sizeof(T)) return Short("an array of " + std::to_string(n));
    v->resize(n);
    if (n > 0) std::memcpy(v->data(), in_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return Status::Ok();
  }
  Status GetString(std::string* s) {
    uint64_t n = 0;
    CHAINRL_RETURN_IF_ERROR(Get(&n));
    if (n > left()) return Short("a string of " + std::to_string(n) + " bytes");
    s->assign(in_.data() + at_, n);
    at_ += n;
    return Status::Ok();
  }
  // A count of items that each take at least `min_bytes`, checked against what is left.
  Status GetCount(uint64_t* n, size_t min_bytes) {
    CHAINRL_RETURN_IF_ERROR(Get(n));
    if (*n > left() / min_bytes) return Short(std::to_string(*n) + " items");
    return Status::Ok();
  }
  size_t left() const { return in_.size() - at_; }
  size_t at() const { return at_; }

 private:
  Status Short(const std::string& what) const;
  std::string_view in_;
  size_t at_ = 0;
};

// The checks of decoding that need no types: each is Corrupt naming the byte `at` where the part
// starts. A sample's flags byte: bit 1 correct, bit 2 advantage present, bits 3-5 how it ended.
Status CheckSampleFlags(uint8_t flags, size_t at);
// (version, length) pairs whose lengths are positive and add up to `tokens` (or none at all).
Status CheckVersionRuns(const std::vector<int64_t>& runs, size_t tokens, size_t at);
// A [rows, hidden] matrix of `values` in one of kEmbeddingDtypes.
Status CheckPromptEmbeddings(const PromptEmbeddingsBytes& e, size_t at);
Status LeftOver(size_t bytes);
Status BadMagic();
Status UnknownKind(uint8_t kind);

// The least bytes of one group, sample, preference pair and SFT example (their lengths and
// counts), against which their counts are checked.
inline constexpr size_t kMinGroupBytes = 3 * sizeof(uint64_t);
inline constexpr size_t kMinSampleBytes = 3 * sizeof(uint64_t) + 2 * sizeof(double) + 1;
inline constexpr size_t kMinPairBytes = 3 * sizeof(uint64_t);
inline constexpr size_t kMinSftBytes = 2 * sizeof(uint64_t);

// `Message` has the members of RankMessage (rank_messages.h): kind, step, sft_step, sft_done,
// resume_dir, policy_version, groups, pairs, sft, with groups' and samples' members as GroupData's
// and SampleData's (learner/rl_step.h). `Embeddings` converts a group's prompt embeddings:
// `static PromptEmbeddingsBytes ToBytes(const Group&)` and
// `static void FromBytes(PromptEmbeddingsBytes, Group*)` (given only checked values).
template <class Embeddings, class Message>
std::string Encode(const Message& m) {
  Writer w;
  w.Put<uint32_t>(kMagic);
  w.Put<uint8_t>(static_cast<uint8_t>(m.kind));
  w.Put<int64_t>(m.step);
  w.Put<int64_t>(m.sft_step);
  w.Put<uint8_t>(m.sft_done ? 1 : 0);
  w.PutString(m.resume_dir);
  w.Put<int64_t>(m.policy_version);
  w.Put<uint64_t>(m.groups.size());
  for (const auto& g : m.groups) {
    w.Put<uint64_t>(g.group_id);
    w.PutVector(g.prompt);
    w.Put<int32_t>(g.placeholder_token_id);
    w.Put<uint64_t>(g.samples.size());
    for (const auto& s : g.samples) {
      w.PutVector(s.tokens);
      w.PutVector(s.behaviour_logprobs);
      w.Put<double>(s.reward);
      w.Put<uint8_t>(static_cast<uint8_t>((s.correct ? 2 : 0) | (s.advantage ? 4 : 0) |
                                          (static_cast<uint8_t>(s.end) << 3)));
      w.Put<double>(s.advantage.value_or(0.0));
      std::vector<int64_t> runs;  // version, length, version, length, ...
      for (const VersionRun& v : s.versions) {
        runs.push_back(v.version);
        runs.push_back(v.length);
      }
      w.PutVector(runs);
    }
    // Prompt embeddings: dtype (-1: none), shape, then the values as float32.
    const PromptEmbeddingsBytes e = Embeddings::ToBytes(g);
    w.Put<int8_t>(e.dtype);
    if (e.dtype < 0) continue;
    w.PutVector(e.shape);
    w.PutVector(e.values);
  }
  w.Put<uint64_t>(m.pairs.size());
  for (const auto& p : m.pairs) {
    w.PutVector(p.prompt);
    w.PutVector(p.chosen);
    w.Put<uint64_t>(p.rejected.size());
    for (const auto& r : p.rejected) w.PutVector(r);
  }
  w.Put<uint64_t>(m.sft.size());
  for (const auto& e : m.sft) {
    w.PutVector(e.prompt);
    w.PutVector(e.response);
  }
  return w.Take();
}

// Decodes `bytes` into *m (a default-constructed message); see Encode for the types.
template <class Embeddings, class Message>
Status Decode(std::string_view bytes, Message* m) {
  Reader r(bytes);
  uint32_t magic = 0;
  uint8_t kind = 0, sft_done = 0;
  CHAINRL_RETURN_IF_ERROR(r.Get(&magic));
  if (magic != kMagic) return BadMagic();
  CHAINRL_RETURN_IF_ERROR(r.Get(&kind));
  if (kind < static_cast<uint8_t>(RankMessageKind::kStart) ||
      kind > static_cast<uint8_t>(RankMessageKind::kStop))
    return UnknownKind(kind);
  m->kind = static_cast<RankMessageKind>(kind);
  CHAINRL_RETURN_IF_ERROR(r.Get(&m->step));
  CHAINRL_RETURN_IF_ERROR(r.Get(&m->sft_step));
  CHAINRL_RETURN_IF_ERROR(r.Get(&sft_done));
  m->sft_done = sft_done != 0;
  CHAINRL_RETURN_IF_ERROR(r.GetString(&m->resume_dir));
  CHAINRL_RETURN_IF_ERROR(r.Get(&m->policy_version));
  uint64_t n = 0;
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, kMinGroupBytes));
  m->groups.resize(n);
  for (auto& g : m->groups) {
    CHAINRL_RETURN_IF_ERROR(r.Get(&g.group_id));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&g.prompt));
    CHAINRL_RETURN_IF_ERROR(r.Get(&g.placeholder_token_id));
    uint64_t samples = 0;
    CHAINRL_RETURN_IF_ERROR(r.GetCount(&samples, kMinSampleBytes));
    g.samples.resize(samples);
    for (auto& s : g.samples) {
      CHAINRL_RETURN_IF_ERROR(r.GetVector(&s.tokens));
      CHAINRL_RETURN_IF_ERROR(r.GetVector(&s.behaviour_logprobs));
      CHAINRL_RETURN_IF_ERROR(r.Get(&s.reward));
      const size_t flags_at = r.at();
      uint8_t flags = 0;
      double advantage = 0;
      CHAINRL_RETURN_IF_ERROR(r.Get(&flags));
      CHAINRL_RETURN_IF_ERROR(r.Get(&advantage));
      CHAINRL_RETURN_IF_ERROR(CheckSampleFlags(flags, flags_at));
      s.end = static_cast<decltype(s.end)>(flags >> 3);
      s.correct = (flags & 2) != 0;
      if ((flags & 4) != 0) s.advantage = advantage;
      std::vector<int64_t> runs;
      const size_t runs_at = r.at();
      CHAINRL_RETURN_IF_ERROR(r.GetVector(&runs));
      CHAINRL_RETURN_IF_ERROR(CheckVersionRuns(runs, s.tokens.size(), runs_at));
      for (size_t i = 0; i + 1 < runs.size(); i += 2) s.versions.push_back({runs[i], runs[i + 1]});
    }
    PromptEmbeddingsBytes e;
    CHAINRL_RETURN_IF_ERROR(r.Get(&e.dtype));
    if (e.dtype < 0) continue;
    const size_t where = r.at();
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&e.shape));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&e.values));
    CHAINRL_RETURN_IF_ERROR(CheckPromptEmbeddings(e, where));
    Embeddings::FromBytes(std::move(e), &g);
  }
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, kMinPairBytes));
  m->pairs.resize(n);
  for (auto& p : m->pairs) {
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&p.prompt));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&p.chosen));
    uint64_t k = 0;
    CHAINRL_RETURN_IF_ERROR(r.GetCount(&k, sizeof(uint64_t)));
    p.rejected.resize(k);
    for (auto& rej : p.rejected) CHAINRL_RETURN_IF_ERROR(r.GetVector(&rej));
  }
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, kMinSftBytes));
  m->sft.resize(n);
  for (auto& e : m->sft) {
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&e.prompt));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&e.response));
  }
  if (r.left() != 0) return LeftOver(r.left());
  return Status::Ok();
}

}  // namespace rank_codec
}  // namespace chainrl::learner
