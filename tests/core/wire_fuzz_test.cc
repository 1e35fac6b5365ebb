// Deterministic randomized fuzzing of the wire decoder: random and mutated frames (bit flips,
// truncation, appended garbage, huge length prefixes, wrong versions) must each either decode to
// a valid message or be rejected with a counted reason; nothing may crash or hang.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <random>

#include "core/wire.h"
#include "tests/core/wire_samples.h"

namespace chainrl::wire {
namespace {

std::string Varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  s += static_cast<char>(v);
  return s;
}

std::vector<std::string> Corpus() {
  std::vector<std::string> out;
  for (const Envelope& e : testing::AllMessageTypes()) out.push_back(*EncodeFrame(e));
  std::mt19937_64 rng(99);
  for (int i = 0; i < 20; ++i) {
    Envelope e = MakeEnvelope("actor-" + std::to_string(i));
    *e.mutable_trajectory() =
        testing::MakeTrajectory(rng, 1 + static_cast<int>(rng() % 4), static_cast<int>(rng() % 64));
    out.push_back(*EncodeFrame(e));
  }
  return out;
}

std::string Mutate(const std::string& base, std::mt19937_64& rng, int kind) {
  std::string f = base;
  auto pick = [&](size_t n) { return n == 0 ? 0 : rng() % n; };
  switch (kind) {
    case 0: {  // flip 1..8 bits anywhere
      int flips = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < flips && !f.empty(); ++i)
        f[pick(f.size())] ^= static_cast<char>(1 << (rng() % 8));
      break;
    }
    case 1:  // flip bits only in the body (past the header) so parsing is exercised
      for (int i = 0; i < 3 && f.size() > kHeaderBytes; ++i)
        f[kHeaderBytes + pick(f.size() - kHeaderBytes)] ^= static_cast<char>(1 << (rng() % 8));
      break;
    case 2:  // truncate
      f.resize(pick(f.size()));
      break;
    case 3: {  // append garbage
      size_t n = 1 + rng() % 64;
      for (size_t i = 0; i < n; ++i) f += static_cast<char>(rng());
      break;
    }
    case 4: {  // huge length prefix for a length-delimited field somewhere in the body
      uint64_t len = (rng() % 2) ? (uint64_t{1} << 31) - 1 : (uint64_t{1} << 62);
      int field = 10 + static_cast<int>(rng() % 11);
      std::string inject = Varint((uint64_t(field) << 3) | 2) + Varint(len) + "abc";
      size_t at = kHeaderBytes + pick(f.size() - kHeaderBytes + 1);
      f.insert(at, inject);
      break;
    }
    case 5:  // wrong version / reserved bytes in the header
      f[4 + pick(4)] = static_cast<char>(rng());
      break;
    case 6: {  // entirely random bytes behind a valid header
      size_t n = rng() % 200;
      f = f.substr(0, kHeaderBytes);
      for (size_t i = 0; i < n; ++i) f += static_cast<char>(rng());
      break;
    }
    case 7: {  // entirely random bytes
      size_t n = rng() % 64;
      f.clear();
      for (size_t i = 0; i < n; ++i) f += static_cast<char>(rng());
      break;
    }
    case 8: {  // duplicate a slice of the body (repeated fields grow, oneof switches)
      if (f.size() > kHeaderBytes + 1) {
        size_t a = kHeaderBytes + pick(f.size() - kHeaderBytes);
        size_t n = 1 + pick(f.size() - a);
        f.insert(pick(f.size() - kHeaderBytes) + kHeaderBytes, f.substr(a, n));
      }
      break;
    }
  }
  return f;
}

TEST(WireFuzzTest, MutatedFramesDecodeValidOrAreRejectedAndCounted) {
  const auto corpus = Corpus();
  std::mt19937_64 rng(20261122);
  Limits lim;
  lim.max_frame_bytes = 1 << 16;  // small, so appended garbage also trips the size limit
  Decoder d(lim);
  Envelope out, again;
  uint64_t accepted = 0, rejected = 0;
  constexpr int kCases = 40000;
  for (int i = 0; i < kCases; ++i) {
    const std::string& base = corpus[rng() % corpus.size()];
    std::string f = Mutate(base, rng, static_cast<int>(rng() % 9));
    if (rng() % 50 == 0) f.append(lim.max_frame_bytes, 'z');  // oversized
    const uint64_t before = d.counters().Total();
    RejectReason reason = RejectReason::kCount;
    Status st = d.Decode("fuzz-peer", f.data(), f.size(), &out, &reason);
    if (st.ok()) {
      ++accepted;
      ASSERT_EQ(d.counters().Total(), before);
      ASSERT_TRUE(Validate(out, lim).ok());
      // What decoded re-encodes to a frame that decodes to the same message.
      auto re = EncodeFrame(out);
      ASSERT_TRUE(re.ok());
      ASSERT_TRUE(d.Decode("fuzz-peer", re->data(), re->size(), &again).ok());
      ASSERT_TRUE(google::protobuf::util::MessageDifferencer::Equals(out, again));
    } else {
      ++rejected;
      ASSERT_EQ(d.counters().Total(), before + 1) << st.ToString();
      ASSERT_NE(reason, RejectReason::kCount);
      ASSERT_NE(st.message().find("fuzz-peer"), std::string::npos);
    }
  }
  EXPECT_EQ(accepted + rejected, static_cast<uint64_t>(kCases));
  // Every reason is exercised by this mix.
  for (int r = 0; r < static_cast<int>(RejectReason::kCount); ++r)
    EXPECT_GT(d.counters().Get(static_cast<RejectReason>(r)), 0u)
        << RejectReasonName(static_cast<RejectReason>(r));
  EXPECT_GT(accepted, 100u);  // some mutations (e.g. in float bits) stay valid
  EXPECT_GT(rejected, static_cast<uint64_t>(kCases) / 2);
}

}  // namespace
}  // namespace chainrl::wire
