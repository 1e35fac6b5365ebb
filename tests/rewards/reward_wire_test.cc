// Tests of the RewardPool <-> worker protocol (rewards/reward_wire.h): round trips of random
// messages, refusal of every truncation, and frame reassembly from arbitrary splits.
#include "rewards/reward_wire.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>

namespace chainrl::rewards::wire {
namespace {

std::string RandomText(std::mt19937* rng, size_t max_len) {
  std::uniform_int_distribution<size_t> len(0, max_len);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string s(len(*rng), '\0');
  for (char& c : s) c = static_cast<char>(byte(*rng));  // any bytes, NUL included
  return s;
}

TEST(RewardWire, ScoreRequestRoundTripsRandomSamples) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 50; ++round) {
    std::vector<RewardInput> in(rng() % 6);
    for (auto& s : in) {
      s.example_id = RandomText(&rng, 12);
      s.prompt = RandomText(&rng, 300);
      s.response = RandomText(&rng, 300);
      s.token_ids.resize(rng() % 40);
      for (auto& t : s.token_ids) t = static_cast<int32_t>(rng());
      s.finish_reason = RandomText(&rng, 6);
      s.answer_json = RandomText(&rng, 20);
      s.metadata_json = RandomText(&rng, 50);
    }
    std::vector<const RewardInput*> ptrs;
    for (auto& s : in) ptrs.push_back(&s);
    std::string payload = EncodeScore(ptrs);
    std::vector<RewardInput> out;
    ASSERT_TRUE(DecodeScore(payload, &out).ok());
    ASSERT_EQ(out.size(), in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      EXPECT_EQ(out[i].example_id, in[i].example_id);
      EXPECT_EQ(out[i].prompt, in[i].prompt);
      EXPECT_EQ(out[i].response, in[i].response);
      EXPECT_EQ(out[i].token_ids, in[i].token_ids);
      EXPECT_EQ(out[i].finish_reason, in[i].finish_reason);
      EXPECT_EQ(out[i].answer_json, in[i].answer_json);
      EXPECT_EQ(out[i].metadata_json, in[i].metadata_json);
    }
    // Every strict prefix is refused, never misread.
    for (size_t cut = 0; cut < payload.size(); cut += 1 + payload.size() / 97)
      EXPECT_FALSE(DecodeScore(std::string_view(payload).substr(0, cut), &out).ok()) << cut;
    EXPECT_FALSE(DecodeScore(payload + "x", &out).ok());
  }
}

TEST(RewardWire, ScoreReplyKeepsExactDoubles) {
  ScoreReply r;
  r.calls = 7;
  const double values[] = {0.0,
                           -0.0,
                           1.5,
                           -1e300,
                           std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity(),
                           5e-324};
  for (double v : values) {
    SampleOutput o;
    o.score = v;
    o.plugin_error = v < 0;
    o.message = "m" + std::to_string(v);
    o.components = {{"a", v}, {"", 2}};
    r.outputs.push_back(o);
  }
  ScoreReply back;
  std::string payload = EncodeScoreReply(r);
  ASSERT_TRUE(DecodeScoreReply(payload, &back).ok());
  EXPECT_EQ(back.calls, 7u);
  ASSERT_EQ(back.outputs.size(), r.outputs.size());
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    EXPECT_EQ(std::memcmp(&back.outputs[i].score, &r.outputs[i].score, 8), 0) << i;  // bitwise
    EXPECT_EQ(back.outputs[i].plugin_error, r.outputs[i].plugin_error);
    EXPECT_EQ(back.outputs[i].message, r.outputs[i].message);
    ASSERT_EQ(back.outputs[i].components.size(), 2u);
    EXPECT_EQ(back.outputs[i].components[1].second, 2.0);
  }
  // A reply is not a request, and vice versa.
  std::vector<RewardInput> samples;
  EXPECT_FALSE(DecodeScore(payload, &samples).ok());
  InitReply init;
  EXPECT_FALSE(DecodeInitReply(payload, &init).ok());
}

TEST(RewardWire, InitRoundTrip) {
  InitRequest req{"/x/y.so", "a = 1\n"}, req2;
  ASSERT_TRUE(DecodeInit(EncodeInit(req), &req2).ok());
  EXPECT_EQ(req2.path, "/x/y.so");
  EXPECT_EQ(req2.options_toml, "a = 1\n");
  InitReply rep{false, "n", "v", "boom"}, rep2;
  ASSERT_TRUE(DecodeInitReply(EncodeInitReply(rep), &rep2).ok());
  EXPECT_FALSE(rep2.ok);
  EXPECT_EQ(rep2.plugin_name, "n");
  EXPECT_EQ(rep2.plugin_version, "v");
  EXPECT_EQ(rep2.error, "boom");
}

// A worker runs an untrusted plugin: what it sends back is refused naming the field, its offset
// and what was left, and a count the payload cannot hold is refused before anything is allocated
// for it (fuzz/reward_wire_fuzz).
TEST(RewardWire, MalformedPayloadsNameTheFieldAndOffset) {
  auto reply_error = [](const std::string& payload) {
    ScoreReply r;
    Status st = DecodeScoreReply(payload, &r);
    EXPECT_TRUE(st.ok() || st.code() == StatusCode::kCorrupt) << st.ToString();
    return st.ok() ? "ok" : st.message();
  };
  auto u32 = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  // calls, then 2^32 - 1 outputs in 3 bytes.
  EXPECT_EQ(reply_error("s" + u32(1) + u32(0xffffffff) + "abc"),
            "reward worker protocol: malformed score reply: 4294967295 sample outputs at byte 5 "
            "cannot fit in the 3 bytes left (at least 17 bytes each)");
  // One output whose message claims 4 GiB.
  std::string one = "s" + u32(1) + u32(1) + std::string(8, '\0') + "\x01" + u32(0xfffffff0);
  EXPECT_EQ(reply_error(one + "abcd"),
            "reward worker protocol: malformed score reply: message at byte 18 claims "
            "4294967280 bytes, 4 are left");
  ScoreReply good;
  good.outputs.resize(1);
  EXPECT_EQ(reply_error(EncodeScoreReply(good) + "xy"),
            "reward worker protocol: malformed score reply: 2 bytes left over after byte 26");
  EXPECT_EQ(reply_error(""), "reward worker protocol: expected score reply, got an empty payload");
  EXPECT_EQ(reply_error("i"),
            "reward worker protocol: expected score reply (tag 's'), got tag 0x69");
  std::vector<RewardInput> samples;
  // One sample: three empty strings, 2^30 token ids, three empty strings.
  Status st = DecodeScore(
      "S" + u32(1) + u32(0) + u32(0) + u32(0) + u32(0x40000000) + u32(0) + u32(0) + u32(0),
      &samples);
  EXPECT_EQ(st.message(),
            "reward worker protocol: malformed score request: 1073741824 token ids at byte 17 "
            "cannot fit in the 12 bytes left (at least 4 bytes each)");
  InitReply init;
  EXPECT_EQ(DecodeInitReply("i", &init).message(),
            "reward worker protocol: malformed init reply: ok flag at byte 1 needs 1 bytes, 0 are "
            "left");
}

TEST(RewardWire, FrameBufferReassemblesAnySplit) {
  std::string a = "first", b(70000, 'z'), c;
  std::string stream;
  for (const std::string* p : {&a, &b, &c}) {
    uint32_t n = static_cast<uint32_t>(p->size());
    for (int i = 0; i < 4; ++i) stream.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    stream += *p;
  }
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    FrameBuffer fb;
    std::vector<std::string> got;
    size_t pos = 0;
    while (pos < stream.size()) {
      size_t n = std::min(stream.size() - pos, static_cast<size_t>(1 + rng() % 5000));
      fb.Append(stream.data() + pos, n);
      pos += n;
      std::string payload;
      bool corrupt = false;
      while (fb.Next(&payload, &corrupt)) got.push_back(payload);
      ASSERT_FALSE(corrupt);
    }
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0], a);
    EXPECT_EQ(got[1], b);
    EXPECT_EQ(got[2], c);
  }
  FrameBuffer bad;
  bad.Append("\xff\xff\xff\xff", 4);
  std::string payload;
  bool corrupt = false;
  EXPECT_FALSE(bad.Next(&payload, &corrupt));
  EXPECT_TRUE(corrupt);
}

TEST(RewardWire, FramesOverASocket) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::string big(200000, 'q');  // larger than the socket buffer: needs a concurrent reader
  std::thread writer([&] { EXPECT_TRUE(WriteFrame(sv[0], big).ok()); });
  auto got = ReadFrame(sv[1]);
  writer.join();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, big);
  close(sv[0]);
  auto eof = ReadFrame(sv[1]);
  EXPECT_EQ(eof.status().code(), StatusCode::kIoError);
  EXPECT_FALSE(WriteFrame(sv[1], "x").ok());  // peer gone: an error, not SIGPIPE
  close(sv[1]);
}

}  // namespace
}  // namespace chainrl::rewards::wire
