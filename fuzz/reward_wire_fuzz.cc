// libFuzzer harness: the bytes a reward worker's socket carries (rewards/reward_wire.h), as the
// pool reads a worker running an untrusted plugin: the stream cut into frames by FrameBuffer, fed
// in pieces of 1 to 256 bytes (the first input byte), and every payload given to each of the four
// decoders. At most one decoder takes a payload (its tag); what decodes encodes again to the same
// values (doubles bitwise) and that encoding is a fixed point; a refused one is Corrupt with a
// message naming the protocol. FrameBuffer gives back exactly the frames of the stream and flags
// only a length over kMaxFrameBytes.
#include <cstring>

#include "fuzz/fuzz_input.h"
#include "rewards/reward_wire.h"

using namespace chainrl;
using namespace chainrl::rewards;

namespace {

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool Same(const wire::ScoreReply& a, const wire::ScoreReply& b) {
  if (a.calls != b.calls || a.outputs.size() != b.outputs.size()) return false;
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    const wire::SampleOutput &x = a.outputs[i], &y = b.outputs[i];
    if (!SameBits(x.score, y.score) || x.plugin_error != y.plugin_error || x.message != y.message ||
        x.components.size() != y.components.size())
      return false;
    for (size_t c = 0; c < x.components.size(); ++c)
      if (x.components[c].first != y.components[c].first ||
          !SameBits(x.components[c].second, y.components[c].second))
        return false;
  }
  return true;
}

bool Same(const std::vector<RewardInput>& a, const std::vector<RewardInput>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].example_id != b[i].example_id || a[i].prompt != b[i].prompt ||
        a[i].response != b[i].response || a[i].token_ids != b[i].token_ids ||
        a[i].finish_reason != b[i].finish_reason || a[i].answer_json != b[i].answer_json ||
        a[i].metadata_json != b[i].metadata_json)
      return false;
  return true;
}

std::string EncodeSamples(const std::vector<RewardInput>& samples) {
  std::vector<const RewardInput*> ptrs;
  for (const RewardInput& s : samples) ptrs.push_back(&s);
  return wire::EncodeScore(ptrs);
}

void CheckRefusal(const Status& st) {
  CHAINRL_FUZZ_CHECK(st.code() == StatusCode::kCorrupt, st.ToString());
  CHAINRL_FUZZ_CHECK(st.message().starts_with("reward worker protocol: "), st.message());
}

// Every decoder on one payload; returns how many took it.
int DecodeEveryWay(std::string_view payload) {
  int decoded = 0;
  wire::InitRequest init;
  if (Status st = wire::DecodeInit(payload, &init); st.ok()) {
    ++decoded;
    const std::string again = wire::EncodeInit(init);
    CHAINRL_FUZZ_CHECK(again == payload, "init re-encodes to other bytes");
  } else {
    CheckRefusal(st);
  }
  wire::InitReply reply;
  if (Status st = wire::DecodeInitReply(payload, &reply); st.ok()) {
    ++decoded;
    const std::string again = wire::EncodeInitReply(reply);
    CHAINRL_FUZZ_CHECK(again.size() == payload.size(), "init reply re-encodes to another size");
    wire::InitReply back;
    CHAINRL_FUZZ_CHECK(wire::DecodeInitReply(again, &back).ok(), "init reply round trip");
    CHAINRL_FUZZ_CHECK(back.ok == reply.ok && back.plugin_name == reply.plugin_name &&
                           back.plugin_version == reply.plugin_version && back.error == reply.error,
                       "init reply round trip changed a value");
    CHAINRL_FUZZ_CHECK(wire::EncodeInitReply(back) == again, "init reply encoding not canonical");
  } else {
    CheckRefusal(st);
  }
  std::vector<RewardInput> samples;
  if (Status st = wire::DecodeScore(payload, &samples); st.ok()) {
    ++decoded;
    const std::string again = EncodeSamples(samples);
    CHAINRL_FUZZ_CHECK(again == payload, "score request re-encodes to other bytes");
    std::vector<RewardInput> back;
    CHAINRL_FUZZ_CHECK(wire::DecodeScore(again, &back).ok(), "score request round trip");
    CHAINRL_FUZZ_CHECK(Same(samples, back), "score request round trip changed a value");
  } else {
    CheckRefusal(st);
  }
  wire::ScoreReply scores;
  if (Status st = wire::DecodeScoreReply(payload, &scores); st.ok()) {
    ++decoded;
    const std::string again = wire::EncodeScoreReply(scores);
    CHAINRL_FUZZ_CHECK(again.size() == payload.size(), "score reply re-encodes to another size");
    wire::ScoreReply back;
    CHAINRL_FUZZ_CHECK(wire::DecodeScoreReply(again, &back).ok(), "score reply round trip");
    CHAINRL_FUZZ_CHECK(Same(scores, back), "score reply round trip changed a value");
    CHAINRL_FUZZ_CHECK(wire::EncodeScoreReply(back) == again, "score reply encoding not canonical");
  } else {
    CheckRefusal(st);
  }
  return decoded;
}

uint32_t LengthAt(std::string_view s, size_t at) {
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t(uint8_t(s[at + i])) << (8 * i);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return -1;
  const size_t piece = 1 + size_t{data[0]};
  const std::string_view stream = fuzz::AsText(data + 1, size - 1);
  wire::FrameBuffer frames;
  size_t fed = 0, taken = 0;  // bytes appended; bytes of the frames returned so far
  bool corrupt = false;
  while (!corrupt) {
    std::string payload;
    if (frames.Next(&payload, &corrupt)) {
      CHAINRL_FUZZ_CHECK(LengthAt(stream, taken) == payload.size(), "frame length");
      CHAINRL_FUZZ_CHECK(stream.substr(taken + 4, payload.size()) == payload, "frame bytes");
      taken += 4 + payload.size();
      CHAINRL_FUZZ_CHECK(DecodeEveryWay(payload) <= 1, "a payload taken by two decoders");
      continue;
    }
    if (corrupt) break;
    if (fed == stream.size()) break;
    const size_t n = std::min(piece, stream.size() - fed);
    frames.Append(stream.data() + fed, n);
    fed += n;
  }
  if (corrupt) {
    CHAINRL_FUZZ_CHECK(stream.size() - taken >= 4 && LengthAt(stream, taken) > wire::kMaxFrameBytes,
                       "a frame flagged corrupt below the size bound");
  } else {
    // What is left is less than one whole frame.
    const size_t left = stream.size() - taken;
    CHAINRL_FUZZ_CHECK(left < 4 || left < 4 + size_t{LengthAt(stream, taken)}, "a frame left over");
  }
  return 0;
}
