// Rank messages of the data-parallel learner (see rank_messages.h).
#include "learner/rank_messages.h"

#include <cstring>
#include <type_traits>

#include <torch/torch.h>

namespace chainrl::learner {
namespace {

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
    CHAINRL_RETURN_IF_ERROR(Need(sizeof(T), "a field"));
    std::memcpy(x, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return Status::Ok();
  }
  template <typename T>
  Status GetVector(std::vector<T>* v) {
    uint64_t n = 0;
    CHAINRL_RETURN_IF_ERROR(Get(&n));
    if (n > (in_.size() - at_) / sizeof(T)) return Short("an array of " + std::to_string(n));
    v->resize(n);
    std::memcpy(v->data(), in_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return Status::Ok();
  }
  Status GetString(std::string* s) {
    uint64_t n = 0;
    CHAINRL_RETURN_IF_ERROR(Get(&n));
    if (n > in_.size() - at_) return Short("a string of " + std::to_string(n) + " bytes");
    s->assign(in_.data() + at_, n);
    at_ += n;
    return Status::Ok();
  }
  // A count of items that each take at least `min_bytes`, checked against what is left.
  Status GetCount(uint64_t* n, size_t min_bytes) {
    CHAINRL_RETURN_IF_ERROR(Get(n));
    if (*n > (in_.size() - at_) / min_bytes) return Short(std::to_string(*n) + " items");
    return Status::Ok();
  }
  bool done() const { return at_ == in_.size(); }
  size_t at() const { return at_; }

 private:
  Status Need(size_t n, const std::string& what) {
    return n <= in_.size() - at_ ? Status::Ok() : Short(what);
  }
  Status Short(const std::string& what) const {
    return Corrupt("rank message: " + what + " at byte " + std::to_string(at_) +
                   " runs past its end (" + std::to_string(in_.size()) + " bytes)");
  }
  std::string_view in_;
  size_t at_ = 0;
};

constexpr uint32_t kMagic = 0x4b4e5243;  // "CRNK"

void PutGroup(Writer& w, const GroupData& g) {
  w.Put<uint64_t>(g.group_id);
  w.PutVector(g.prompt);
  w.Put<int32_t>(g.placeholder_token_id);
  w.Put<uint64_t>(g.samples.size());
  for (const SampleData& s : g.samples) {
    w.PutVector(s.tokens);
    w.PutVector(s.behaviour_logprobs);
    w.Put<double>(s.reward);
    // flags: bit 1 correct, bit 2 advantage present, bits 3-5 how the sample ended.
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
  // Prompt embeddings: dtype (-1: none), shape, then the values as float32 (exact for the 16-bit
  // types they may be stored in).
  if (!g.prompt_embeddings.defined()) {
    w.Put<int8_t>(-1);
    return;
  }
  w.Put<int8_t>(static_cast<int8_t>(g.prompt_embeddings.scalar_type()));
  std::vector<int64_t> shape(g.prompt_embeddings.sizes().begin(),
                             g.prompt_embeddings.sizes().end());
  w.PutVector(shape);
  torch::Tensor f = g.prompt_embeddings.detach().to(torch::kCPU, torch::kFloat).contiguous();
  w.PutVector(std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel()));
}

Status GetGroup(Reader& r, GroupData* g) {
  CHAINRL_RETURN_IF_ERROR(r.Get(&g->group_id));
  CHAINRL_RETURN_IF_ERROR(r.GetVector(&g->prompt));
  CHAINRL_RETURN_IF_ERROR(r.Get(&g->placeholder_token_id));
  uint64_t n = 0;
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, 3 * sizeof(uint64_t) + 2 * sizeof(double) + 1));
  g->samples.resize(n);
  for (SampleData& s : g->samples) {
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&s.tokens));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&s.behaviour_logprobs));
    CHAINRL_RETURN_IF_ERROR(r.Get(&s.reward));
    uint8_t flags = 0;
    double advantage = 0;
    CHAINRL_RETURN_IF_ERROR(r.Get(&flags));
    CHAINRL_RETURN_IF_ERROR(r.Get(&advantage));
    if ((flags >> 3) > kMaxSampleEnd || (flags & 1) != 0)
      return Corrupt("rank message: a sample's flags (" + std::to_string(flags) + ") at byte " +
                     std::to_string(r.at() - sizeof(double) - 1) + " are not valid");
    s.end = static_cast<SampleEnd>(flags >> 3);
    s.correct = (flags & 2) != 0;
    if ((flags & 4) != 0) s.advantage = advantage;
    std::vector<int64_t> runs;
    const size_t at = r.at();
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&runs));
    int64_t covered = 0;
    for (size_t i = 1; i < runs.size(); i += 2) covered += runs[i] > 0 ? runs[i] : -(1LL << 62);
    if (runs.size() % 2 != 0 || (!runs.empty() && covered != static_cast<int64_t>(s.tokens.size())))
      return Corrupt("rank message: a sample's policy versions at byte " + std::to_string(at) +
                     " do not cover its " + std::to_string(s.tokens.size()) + " tokens");
    for (size_t i = 0; i + 1 < runs.size(); i += 2) s.versions.push_back({runs[i], runs[i + 1]});
  }
  int8_t dtype = -1;
  CHAINRL_RETURN_IF_ERROR(r.Get(&dtype));
  if (dtype < 0) return Status::Ok();
  std::vector<int64_t> shape;
  std::vector<float> values;
  const size_t where = r.at();
  CHAINRL_RETURN_IF_ERROR(r.GetVector(&shape));
  CHAINRL_RETURN_IF_ERROR(r.GetVector(&values));
  int64_t numel = 1;
  for (int64_t d : shape) numel = d >= 0 ? numel * d : -1;
  const auto type = static_cast<torch::ScalarType>(dtype);
  if (shape.size() != 2 || numel != static_cast<int64_t>(values.size()) ||
      !(type == torch::kFloat || type == torch::kBFloat16 || type == torch::kHalf ||
        type == torch::kDouble))
    return Corrupt("rank message: prompt embeddings at byte " + std::to_string(where) +
                   " are not a [rows, hidden] floating-point matrix");
  g->prompt_embeddings = torch::from_blob(values.data(), shape, torch::kFloat).to(type).clone();
  return Status::Ok();
}

}  // namespace

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

std::string EncodeRankMessage(const RankMessage& m) {
  Writer w;
  w.Put<uint32_t>(kMagic);
  w.Put<uint8_t>(static_cast<uint8_t>(m.kind));
  w.Put<int64_t>(m.step);
  w.Put<int64_t>(m.sft_step);
  w.Put<uint8_t>(m.sft_done ? 1 : 0);
  w.PutString(m.resume_dir);
  w.Put<int64_t>(m.policy_version);
  w.Put<uint64_t>(m.groups.size());
  for (const GroupData& g : m.groups) PutGroup(w, g);
  w.Put<uint64_t>(m.pairs.size());
  for (const PreferencePairData& p : m.pairs) {
    w.PutVector(p.prompt);
    w.PutVector(p.chosen);
    w.Put<uint64_t>(p.rejected.size());
    for (const auto& r : p.rejected) w.PutVector(r);
  }
  w.Put<uint64_t>(m.sft.size());
  for (const SftExample& e : m.sft) {
    w.PutVector(e.prompt);
    w.PutVector(e.response);
  }
  return w.Take();
}

Result<RankMessage> DecodeRankMessage(std::string_view bytes) {
  Reader r(bytes);
  RankMessage m;
  uint32_t magic = 0;
  uint8_t kind = 0, sft_done = 0;
  CHAINRL_RETURN_IF_ERROR(r.Get(&magic));
  if (magic != kMagic) return Corrupt("rank message: not a chainrl rank message (bad magic)");
  CHAINRL_RETURN_IF_ERROR(r.Get(&kind));
  if (kind < static_cast<uint8_t>(RankMessageKind::kStart) ||
      kind > static_cast<uint8_t>(RankMessageKind::kStop))
    return Corrupt("rank message: unknown kind " + std::to_string(kind));
  m.kind = static_cast<RankMessageKind>(kind);
  CHAINRL_RETURN_IF_ERROR(r.Get(&m.step));
  CHAINRL_RETURN_IF_ERROR(r.Get(&m.sft_step));
  CHAINRL_RETURN_IF_ERROR(r.Get(&sft_done));
  m.sft_done = sft_done != 0;
  CHAINRL_RETURN_IF_ERROR(r.GetString(&m.resume_dir));
  CHAINRL_RETURN_IF_ERROR(r.Get(&m.policy_version));
  uint64_t n = 0;
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, 3 * sizeof(uint64_t)));
  m.groups.resize(n);
  for (GroupData& g : m.groups) CHAINRL_RETURN_IF_ERROR(GetGroup(r, &g));
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, 3 * sizeof(uint64_t)));
  m.pairs.resize(n);
  for (PreferencePairData& p : m.pairs) {
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&p.prompt));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&p.chosen));
    uint64_t k = 0;
    CHAINRL_RETURN_IF_ERROR(r.GetCount(&k, sizeof(uint64_t)));
    p.rejected.resize(k);
    for (auto& rej : p.rejected) CHAINRL_RETURN_IF_ERROR(r.GetVector(&rej));
  }
  CHAINRL_RETURN_IF_ERROR(r.GetCount(&n, 2 * sizeof(uint64_t)));
  m.sft.resize(n);
  for (SftExample& e : m.sft) {
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&e.prompt));
    CHAINRL_RETURN_IF_ERROR(r.GetVector(&e.response));
  }
  if (!r.done())
    return Corrupt("rank message: " + std::to_string(bytes.size() - r.at()) +
                   " bytes left over after the message");
  return m;
}

Status TellOtherRanks(DataParallel* dp, const RankMessage& m) {
  if (dp == nullptr) return Status::Ok();
  const std::string bytes = EncodeRankMessage(m);
  for (int r = 1; r < dp->world_size(); ++r) CHAINRL_RETURN_IF_ERROR(dp->Send(r, bytes));
  return Status::Ok();
}

}  // namespace chainrl::learner
