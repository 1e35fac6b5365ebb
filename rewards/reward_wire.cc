// Encoding of the RewardPool <-> worker protocol (see reward_wire.h).
#include "rewards/reward_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace chainrl::rewards::wire {
namespace {

void PutU32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out->append(b, 4);
}
void PutF64(std::string* out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  PutU32(out, static_cast<uint32_t>(bits));
  PutU32(out, static_cast<uint32_t>(bits >> 32));
}
void PutStr(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

// Reads fields in order; any overrun sets ok = false and yields zeros.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == s_.size(); }
  uint8_t U8() {
    if (!Need(1)) return 0;
    return static_cast<uint8_t>(s_[pos_++]);
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(s_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }
  double F64() {
    uint64_t lo = U32(), hi = U32();
    uint64_t bits = lo | (hi << 32);
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  std::string Str() {
    uint32_t n = U32();
    if (!Need(n)) return {};
    std::string v(s_.substr(pos_, n));
    pos_ += n;
    return v;
  }

 private:
  bool Need(size_t n) {
    if (!ok_ || s_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Status Finish(const Reader& r, const char* what) {
  if (!r.ok() || !r.done())
    return Corrupt(std::string("reward worker protocol: malformed ") + what);
  return Status::Ok();
}

bool CheckTag(Reader* r, char tag) { return r->U8() == static_cast<uint8_t>(tag); }

}  // namespace

std::string EncodeInit(const InitRequest& m) {
  std::string out(1, kInit);
  PutStr(&out, m.path);
  PutStr(&out, m.options_toml);
  return out;
}

std::string EncodeInitReply(const InitReply& m) {
  std::string out(1, kInitReply);
  out.push_back(m.ok ? 1 : 0);
  PutStr(&out, m.plugin_name);
  PutStr(&out, m.plugin_version);
  PutStr(&out, m.error);
  return out;
}

std::string EncodeScore(const std::vector<const RewardInput*>& samples) {
  std::string out(1, kScore);
  PutU32(&out, static_cast<uint32_t>(samples.size()));
  for (const RewardInput* s : samples) {
    PutStr(&out, s->example_id);
    PutStr(&out, s->prompt);
    PutStr(&out, s->response);
    PutU32(&out, static_cast<uint32_t>(s->token_ids.size()));
    for (int32_t t : s->token_ids) PutU32(&out, static_cast<uint32_t>(t));
    PutStr(&out, s->finish_reason);
    PutStr(&out, s->answer_json);
    PutStr(&out, s->metadata_json);
  }
  return out;
}

std::string EncodeScoreReply(const ScoreReply& m) {
  std::string out(1, kScoreReply);
  PutU32(&out, m.calls);
  PutU32(&out, static_cast<uint32_t>(m.outputs.size()));
  for (const SampleOutput& o : m.outputs) {
    PutF64(&out, o.score);
    out.push_back(o.plugin_error ? 1 : 0);
    PutStr(&out, o.message);
    PutU32(&out, static_cast<uint32_t>(o.components.size()));
    for (const auto& c : o.components) {
      PutStr(&out, c.first);
      PutF64(&out, c.second);
    }
  }
  return out;
}

Status DecodeInit(std::string_view payload, InitRequest* m) {
  Reader r(payload);
  if (!CheckTag(&r, kInit)) return Corrupt("reward worker protocol: expected init");
  m->path = r.Str();
  m->options_toml = r.Str();
  return Finish(r, "init");
}

Status DecodeInitReply(std::string_view payload, InitReply* m) {
  Reader r(payload);
  if (!CheckTag(&r, kInitReply)) return Corrupt("reward worker protocol: expected init reply");
  m->ok = r.U8() != 0;
  m->plugin_name = r.Str();
  m->plugin_version = r.Str();
  m->error = r.Str();
  return Finish(r, "init reply");
}

Status DecodeScore(std::string_view payload, std::vector<RewardInput>* samples) {
  Reader r(payload);
  if (!CheckTag(&r, kScore)) return Corrupt("reward worker protocol: expected score request");
  uint32_t n = r.U32();
  samples->clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    RewardInput s;
    s.example_id = r.Str();
    s.prompt = r.Str();
    s.response = r.Str();
    uint32_t nt = r.U32();
    if (nt > payload.size() / 4) return Corrupt("reward worker protocol: bad token count");
    s.token_ids.resize(nt);
    for (uint32_t t = 0; t < nt; ++t) s.token_ids[t] = static_cast<int32_t>(r.U32());
    s.finish_reason = r.Str();
    s.answer_json = r.Str();
    s.metadata_json = r.Str();
    samples->push_back(std::move(s));
  }
  return Finish(r, "score request");
}

Status DecodeScoreReply(std::string_view payload, ScoreReply* m) {
  Reader r(payload);
  if (!CheckTag(&r, kScoreReply)) return Corrupt("reward worker protocol: expected score reply");
  m->calls = r.U32();
  uint32_t n = r.U32();
  m->outputs.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    SampleOutput o;
    o.score = r.F64();
    o.plugin_error = r.U8() != 0;
    o.message = r.Str();
    uint32_t nc = r.U32();
    for (uint32_t c = 0; c < nc && r.ok(); ++c) {
      std::string name = r.Str();
      double v = r.F64();
      o.components.emplace_back(std::move(name), v);
    }
    m->outputs.push_back(std::move(o));
  }
  return Finish(r, "score reply");
}

Status WriteFrame(int fd, std::string_view payload) {
  std::string frame;
  frame.reserve(payload.size() + 4);
  PutU32(&frame, static_cast<uint32_t>(payload.size()));
  frame.append(payload.data(), payload.size());
  size_t done = 0;
  while (done < frame.size()) {
    ssize_t n = ::send(fd, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(std::string("reward worker socket: write failed: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<std::string> ReadFrame(int fd) {
  auto read_all = [fd](char* p, size_t n) -> Status {
    size_t done = 0;
    while (done < n) {
      ssize_t k = ::read(fd, p + done, n - done);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) return IoError(std::string("reward socket: read failed: ") + std::strerror(errno));
      if (k == 0) return IoError("reward socket: end of stream");
      done += static_cast<size_t>(k);
    }
    return Status::Ok();
  };
  unsigned char len_bytes[4];
  CHAINRL_RETURN_IF_ERROR(read_all(reinterpret_cast<char*>(len_bytes), 4));
  uint32_t len = uint32_t(len_bytes[0]) | uint32_t(len_bytes[1]) << 8 |
                 uint32_t(len_bytes[2]) << 16 | uint32_t(len_bytes[3]) << 24;
  if (len > kMaxFrameBytes) return Corrupt("reward socket: frame too large");
  std::string payload(len, '\0');
  CHAINRL_RETURN_IF_ERROR(read_all(payload.data(), len));
  return payload;
}

bool FrameBuffer::Next(std::string* payload, bool* corrupt) {
  *corrupt = false;
  if (buf_.size() < 4) return false;
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) len |= uint32_t(uint8_t(buf_[i])) << (8 * i);
  if (len > kMaxFrameBytes) {
    *corrupt = true;
    return false;
  }
  if (buf_.size() < 4 + size_t(len)) return false;
  payload->assign(buf_, 4, len);
  buf_.erase(0, 4 + size_t(len));
  return true;
}

}  // namespace chainrl::rewards::wire
