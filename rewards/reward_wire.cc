// Encoding of the RewardPool <-> worker protocol (see reward_wire.h).
#include "rewards/reward_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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

// Reads fields in order. The first overrun or impossible count stops it: ok() turns false, the
// failure is kept (which field, at which byte, what was left) and every later read yields zeros.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool ok() const { return failure_.empty(); }
  const std::string& failure() const { return failure_; }
  size_t pos() const { return pos_; }
  size_t left() const { return s_.size() - pos_; }
  uint8_t U8(const char* what) {
    if (!Need(1, what)) return 0;
    return static_cast<uint8_t>(s_[pos_++]);
  }
  uint32_t U32(const char* what) {
    if (!Need(4, what)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(s_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }
  double F64(const char* what) {
    if (!Need(8, what)) return 0;
    uint64_t lo = U32(what), hi = U32(what);
    uint64_t bits = lo | (hi << 32);
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  std::string Str(const char* what) {
    const size_t at = pos_;
    const uint32_t n = U32(what);
    if (!ok()) return {};
    if (n > left()) {
      Fail(std::string(what) + " at byte " + std::to_string(at) + " claims " + std::to_string(n) +
           " bytes, " + std::to_string(left()) + " are left");
      return {};
    }
    std::string v(s_.substr(pos_, n));
    pos_ += n;
    return v;
  }
  // A count of items that each take at least `min_bytes`: refused (0) when what is left cannot
  // hold that many, before anything is allocated for them.
  uint32_t Count(const char* what, size_t min_bytes) {
    const size_t at = pos_;
    const uint32_t n = U32(what);
    if (ok() && n > left() / min_bytes) {
      Fail(std::to_string(n) + " " + what + " at byte " + std::to_string(at) +
           " cannot fit in the " + std::to_string(left()) + " bytes left (at least " +
           std::to_string(min_bytes) + " bytes each)");
      return 0;
    }
    return n;
  }

 private:
  bool Need(size_t n, const char* what) {
    if (!ok()) return false;
    if (left() < n) {
      Fail(std::string(what) + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
           " bytes, " + std::to_string(left()) + " are left");
      return false;
    }
    return true;
  }
  void Fail(std::string why) {
    if (ok()) failure_ = std::move(why);
  }
  std::string_view s_;
  size_t pos_ = 0;
  std::string failure_;
};

// The least bytes one encoded item takes: a sample of a score request (six string lengths and a
// token count), a sample output of a reply (score, flag, message length, component count), a
// component (name length, value).
constexpr size_t kMinSampleBytes = 7 * 4;
constexpr size_t kMinOutputBytes = 8 + 1 + 4 + 4;
constexpr size_t kMinComponentBytes = 4 + 8;

Status Finish(const Reader& r, const char* what) {
  if (!r.ok())
    return Corrupt(std::string("reward worker protocol: malformed ") + what + ": " + r.failure());
  if (r.left() != 0)
    return Corrupt(std::string("reward worker protocol: malformed ") + what + ": " +
                   std::to_string(r.left()) + " bytes left over after byte " +
                   std::to_string(r.pos()));
  return Status::Ok();
}

// OK when the payload starts with `tag`; else Corrupt naming what was expected and what came.
Status CheckTag(Reader* r, char tag, const char* what) {
  if (r->left() == 0)
    return Corrupt(std::string("reward worker protocol: expected ") + what +
                   ", got an empty payload");
  const uint8_t got = r->U8("tag");
  if (got == static_cast<uint8_t>(tag)) return Status::Ok();
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", got);
  return Corrupt(std::string("reward worker protocol: expected ") + what + " (tag '" + tag +
                 "'), got tag " + hex);
}

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
  CHAINRL_RETURN_IF_ERROR(CheckTag(&r, kInit, "init"));
  m->path = r.Str("path");
  m->options_toml = r.Str("options");
  return Finish(r, "init");
}

Status DecodeInitReply(std::string_view payload, InitReply* m) {
  Reader r(payload);
  CHAINRL_RETURN_IF_ERROR(CheckTag(&r, kInitReply, "init reply"));
  m->ok = r.U8("ok flag") != 0;
  m->plugin_name = r.Str("plugin name");
  m->plugin_version = r.Str("plugin version");
  m->error = r.Str("error");
  return Finish(r, "init reply");
}

Status DecodeScore(std::string_view payload, std::vector<RewardInput>* samples) {
  Reader r(payload);
  CHAINRL_RETURN_IF_ERROR(CheckTag(&r, kScore, "score request"));
  const uint32_t n = r.Count("samples", kMinSampleBytes);
  samples->clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    RewardInput s;
    s.example_id = r.Str("example id");
    s.prompt = r.Str("prompt");
    s.response = r.Str("response");
    const uint32_t nt = r.Count("token ids", 4);
    s.token_ids.resize(nt);
    for (uint32_t t = 0; t < nt; ++t) s.token_ids[t] = static_cast<int32_t>(r.U32("token id"));
    s.finish_reason = r.Str("finish reason");
    s.answer_json = r.Str("answer");
    s.metadata_json = r.Str("metadata");
    samples->push_back(std::move(s));
  }
  return Finish(r, "score request");
}

Status DecodeScoreReply(std::string_view payload, ScoreReply* m) {
  Reader r(payload);
  CHAINRL_RETURN_IF_ERROR(CheckTag(&r, kScoreReply, "score reply"));
  m->calls = r.U32("call count");
  const uint32_t n = r.Count("sample outputs", kMinOutputBytes);
  m->outputs.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    SampleOutput o;
    o.score = r.F64("score");
    o.plugin_error = r.U8("error flag") != 0;
    o.message = r.Str("message");
    const uint32_t nc = r.Count("components", kMinComponentBytes);
    for (uint32_t c = 0; c < nc && r.ok(); ++c) {
      std::string name = r.Str("component name");
      double v = r.F64("component value");
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
