// Tests for core/wire (framing, validation, decoding) and core/crc32c.
#include "core/wire.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/crc32c.h"
#include "tests/core/wire_samples.h"

namespace chainrl::wire {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string Frame(const Envelope& e) {
  auto f = EncodeFrame(e);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? *f : std::string();
}

// Run files name plain files only: a peer cannot make an actor write outside its directory.
TEST(WireTest, RunFilesNamePlainFilesOnly) {
  for (const char* bad : {"../config.json", "/etc/passwd", ".hidden", "a/b", "", "tok\\x"}) {
    Envelope e = MakeEnvelope("learner");
    e.mutable_run_files()->add_model_files()->set_name(bad);
    Status st = Validate(e, Limits{});
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("run_files.model_files[0].name"), std::string::npos)
        << st.message();
  }
  Envelope ok = MakeEnvelope("learner");
  ok.mutable_run_files()->add_model_files()->set_name("tokenizer_config.json");
  EXPECT_TRUE(Validate(ok, Limits{}).ok());
}

// A declined lease names a lease: 0 is never issued.
TEST(WireTest, WorkDeclinedNamesALease) {
  Envelope e = MakeEnvelope("actor-1");
  e.mutable_work_declined()->set_prompt_group_id(3);
  Status st = Validate(e, Limits{});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("work_declined.lease_id"), std::string::npos) << st.message();
  e.mutable_work_declined()->set_lease_id(9);
  EXPECT_TRUE(Validate(e, Limits{}).ok());
}

TEST(WireTest, RoundTripsEveryMessageTypeExactly) {
  auto all = testing::AllMessageTypes();
  ASSERT_EQ(all.size(), 14u);
  Decoder d;
  for (const Envelope& e : all) {
    ASSERT_TRUE(Validate(e, Limits{}).ok()) << Validate(e, Limits{}).ToString();
    std::string f = Frame(e);
    Envelope out;
    Status st = d.Decode("test", f.data(), f.size(), &out);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(MessageDifferencer::Equals(e, out)) << e.DebugString() << "\nvs\n"
                                                    << out.DebugString();
  }
  EXPECT_EQ(d.counters().Total(), 0u);
}

TEST(WireTest, ExactFrameBytes) {
  Envelope e = MakeEnvelope("a");
  e.mutable_heartbeat()->set_policy_version(3);
  // Header "CRLW" v1, then field 1 varint 1, field 2 "a", field 16 (tag 0x82 0x01) length 2
  // holding field 1 varint 3.
  const uint8_t expect[] = {'C',  'R',  'L',  'W', 1,    0,    0,    0,    0x08,
                            0x01, 0x12, 0x01, 'a', 0x82, 0x01, 0x02, 0x08, 0x03};
  std::string f = Frame(e);
  ASSERT_EQ(f.size(), sizeof expect);
  EXPECT_EQ(f, std::string(reinterpret_cast<const char*>(expect), sizeof expect));
  EXPECT_EQ(FrameSize(e), sizeof expect);
}

TEST(WireTest, EncodeRefusesForeignVersion) {
  Envelope e = MakeEnvelope("a");
  e.mutable_leave();
  e.set_schema_version(2);
  EXPECT_FALSE(EncodeFrame(e).ok());
}

struct Rejection {
  RejectReason reason;
  std::string frame;
};

TEST(WireTest, RejectsBadFramesWithReasonAndPeerAndCounts) {
  Envelope ok = MakeEnvelope("actor-1");
  ok.mutable_work_request()->set_credits(2);
  const std::string good = Frame(ok);
  std::string v2 = good;
  v2[4] = 2;
  Envelope wrong_inner = ok;
  wrong_inner.set_schema_version(7);
  std::string inner = good.substr(0, kHeaderBytes) + wrong_inner.SerializeAsString();
  std::string big(2000, 'x');
  big.replace(0, kHeaderBytes, good.substr(0, kHeaderBytes));
  std::string garbage = good.substr(0, kHeaderBytes) + "\xff\xff\xff\xff\xff\xff";
  Envelope invalid = ok;
  invalid.mutable_work_request()->set_credits(0);
  std::vector<Rejection> cases = {
      {RejectReason::kTruncated, good.substr(0, 5)},
      {RejectReason::kBadMagic, "XXXX" + good.substr(4)},
      {RejectReason::kVersionMismatch, v2},
      {RejectReason::kVersionMismatch, inner},
      {RejectReason::kOversized, big},
      {RejectReason::kMalformed, garbage},
      {RejectReason::kInvalid, good.substr(0, kHeaderBytes) + invalid.SerializeAsString()},
  };
  Limits lim;
  lim.max_frame_bytes = 1000;
  Decoder d(lim);
  for (size_t i = 0; i < cases.size(); ++i) {
    Envelope out;
    RejectReason r = RejectReason::kCount;
    Status st = d.Decode("actor-1@tcp://127.0.0.1:5", cases[i].frame.data(), cases[i].frame.size(),
                         &out, &r);
    ASSERT_FALSE(st.ok()) << i;
    EXPECT_EQ(r, cases[i].reason) << i << ": " << st.ToString();
    EXPECT_NE(st.message().find("actor-1@tcp://127.0.0.1:5"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(RejectReasonName(cases[i].reason)), std::string::npos);
  }
  EXPECT_EQ(d.counters().Get(RejectReason::kTruncated), 1u);
  EXPECT_EQ(d.counters().Get(RejectReason::kBadMagic), 1u);
  EXPECT_EQ(d.counters().Get(RejectReason::kVersionMismatch), 2u);
  EXPECT_EQ(d.counters().Get(RejectReason::kOversized), 1u);
  EXPECT_EQ(d.counters().Get(RejectReason::kMalformed), 1u);
  EXPECT_EQ(d.counters().Get(RejectReason::kInvalid), 1u);
  EXPECT_EQ(d.counters().Total(), 7u);
  // Still works afterwards.
  Envelope out;
  EXPECT_TRUE(d.Decode("x", good.data(), good.size(), &out).ok());
}

// Each mutation must make Validate fail with a message naming the field.
struct BadField {
  const char* expect_in_message;
  std::function<void(Envelope&)> mutate;
};

TEST(WireTest, ValidationNamesTheOffendingField) {
  std::mt19937_64 rng(3);
  auto traj = [&] {
    Envelope e = MakeEnvelope("actor-2");
    *e.mutable_trajectory() = testing::MakeTrajectory(rng, 3, 10);
    return e;
  };
  auto item = [&] {
    Envelope e = MakeEnvelope("learner");
    *e.mutable_work_item() = testing::MakeWorkItem(rng, 1, 4, 1);
    return e;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto beat = [] {
    Envelope e = MakeEnvelope("actor-2");
    e.mutable_heartbeat()->set_policy_version(4);
    return e;
  };
  std::vector<std::pair<std::function<Envelope()>, BadField>> cases = {
      {beat,
       {"heartbeat.lease_ids: 1025 leases exceed limit 1024",
        [](Envelope& e) {
          for (int i = 0; i < 1025; ++i) e.mutable_heartbeat()->add_lease_ids(i + 1);
        }}},
      {traj,
       {"trajectory.samples[1].completion.behaviour_logprobs[3]: 0.5",
        [](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(1)->mutable_completion()->set_behaviour_logprobs(
              3, 0.5f);
        }}},
      {traj,
       {"behaviour_logprobs[2]: nan is not finite",
        [&](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(0)->mutable_completion()->set_behaviour_logprobs(
              2, nan);
        }}},
      {traj,
       {"behaviour_logprobs[4]: -inf is not finite",
        [&](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(0)->mutable_completion()->set_behaviour_logprobs(
              4, -inf);
        }}},
      {traj,
       {"trajectory.samples[2].completion.token_ids[5]: 262144 is outside [0, 262144)",
        [](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(2)->mutable_completion()->set_token_ids(5,
                                                                                          262144);
        }}},
      {traj,
       {"behaviour_logprobs: 9 logprobs for 10 tokens",
        [](Envelope& e) {
          e.mutable_trajectory()
              ->mutable_samples(0)
              ->mutable_completion()
              ->mutable_behaviour_logprobs()
              ->RemoveLast();
        }}},
      {traj,
       {"policy_versions: runs cover 11 tokens but the segment has 10",
        [](Envelope& e) {
          auto* r = e.mutable_trajectory()
                        ->mutable_samples(0)
                        ->mutable_completion()
                        ->mutable_policy_versions();
          r->set_lengths(0, r->lengths(0) + 1);
        }}},
      {traj,
       {"finish_reason: 0 is not a reason",
        [](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(0)->set_finish_reason(FINISH_UNSPECIFIED);
        }}},
      {traj,
       {"finish_reason: 99 is not a reason",
        [](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(0)->set_finish_reason(
              static_cast<FinishReason>(99));
        }}},
      {traj,
       {"samples[1].reward: nan",
        [](Envelope& e) { e.mutable_trajectory()->mutable_samples(1)->set_reward(std::nan("")); }}},
      {traj,
       {"samples[1].sample_index: 0 appears twice",
        [](Envelope& e) { e.mutable_trajectory()->mutable_samples(1)->set_sample_index(0); }}},
      {traj,
       {"timings.generate_seconds",
        [](Envelope& e) {
          e.mutable_trajectory()->mutable_samples(0)->mutable_timings()->set_generate_seconds(-1);
        }}},
      {traj, {"trajectory.lease_id", [](Envelope& e) { e.mutable_trajectory()->set_lease_id(0); }}},
      {item,
       {"work_item.group_size: 0", [](Envelope& e) { e.mutable_work_item()->set_group_size(0); }}},
      {item,
       {"work_item.carried[0].sample_index: 9 >= group_size",
        [](Envelope& e) { e.mutable_work_item()->mutable_carried(0)->set_sample_index(9); }}},
      {item,
       {"work_item.carried[0].segment: 5 tokens already reach the response cap 3",
        [](Envelope& e) { e.mutable_work_item()->set_token_budget(3); }}},
      {item,
       {"work_item.sampling.top_p",
        [](Envelope& e) { e.mutable_work_item()->mutable_sampling()->set_top_p(0); }}},
      {item,
       {"work_item.sampling: missing",
        [](Envelope& e) { e.mutable_work_item()->clear_sampling(); }}},
      {item,
       {"work_item.prompt_token_ids[2]",
        [](Envelope& e) { e.mutable_work_item()->set_prompt_token_ids(2, 1u << 30); }}},
      {item,
       {"work_item.token_budget", [](Envelope& e) { e.mutable_work_item()->set_token_budget(0); }}},
      {item, {"sender: must not be empty", [](Envelope& e) { e.clear_sender(); }}},
      {item, {"body: no message", [](Envelope& e) { e.clear_body(); }}},
      {[] {
         Envelope e = MakeEnvelope("learner");
         auto* a = e.mutable_weight_announce();
         a->set_total_bytes(100);
         a->set_chunk_bytes(30);
         a->set_num_chunks(3);
         return e;
       },
       {"weight_announce.num_chunks: 3 but 100 bytes in chunks of 30 make 4", [](Envelope&) {}}},
  };
  for (auto& [make, bad] : cases) {
    Envelope e = make();
    ASSERT_TRUE(Validate(e, Limits{}).ok() ||
                std::string(bad.expect_in_message).find("num_chunks") != std::string::npos);
    bad.mutate(e);
    Status st = Validate(e, Limits{});
    ASSERT_FALSE(st.ok()) << bad.expect_in_message;
    EXPECT_NE(st.message().find(bad.expect_in_message), std::string::npos)
        << "got: " << st.message() << "\nwant: " << bad.expect_in_message;
  }
}

TEST(WireTest, PolicyVersionRunsRoundTrip) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> v;
    int n = static_cast<int>(rng() % 300);
    int64_t cur = static_cast<int64_t>(rng() % 50);
    for (int i = 0; i < n; ++i) {
      if (rng() % 20 == 0) cur += 1 + static_cast<int64_t>(rng() % 3);
      v.push_back(cur);
    }
    PolicyVersionRuns r = CompressPolicyVersions(v);
    EXPECT_EQ(ExpandPolicyVersions(r), v);
    int runs = n == 0 ? 0 : 1;
    for (int i = 1; i < n; ++i) runs += v[i] != v[i - 1];
    EXPECT_EQ(r.versions_size(), runs);
    if (n > 0) {
      EXPECT_EQ(OldestPolicyVersion(r), v.front());
    }
    // Appending a later segment's runs equals compressing the concatenation (runs joined).
    const size_t cut = n == 0 ? 0 : static_cast<size_t>(rng() % static_cast<uint64_t>(n + 1));
    PolicyVersionRuns joined =
        CompressPolicyVersions(std::span<const int64_t>(v.data(), cut));
    AppendPolicyVersionRuns(&joined,
                            CompressPolicyVersions(std::span<const int64_t>(v.data() + cut, n - cut)));
    EXPECT_EQ(joined.SerializeAsString(), r.SerializeAsString());
  }
}

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(crc32c::Value("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c::ExtendReference(0, "123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c::Value(zeros.data(), 32), 0x8A9136AAu);  // RFC 3720 B.4
  std::string ones(32, '\xff');
  EXPECT_EQ(crc32c::Value(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c::Value(nullptr, 0), 0u);
}

TEST(Crc32cTest, FastPathsMatchReferenceAndCombine) {
  std::mt19937_64 rng(5);
  std::vector<uint8_t> buf(5000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (int t = 0; t < 300; ++t) {
    size_t off = rng() % 64, len = rng() % (buf.size() - 64);
    uint32_t ref = crc32c::ExtendReference(0, buf.data() + off, len);
    EXPECT_EQ(crc32c::Value(buf.data() + off, len), ref);
    EXPECT_EQ(crc32c::ExtendPortable(0, buf.data() + off, len), ref);
    size_t cut = len ? rng() % len : 0;
    uint32_t a = crc32c::Value(buf.data() + off, cut);
    uint32_t b = crc32c::Value(buf.data() + off + cut, len - cut);
    EXPECT_EQ(crc32c::Extend(a, buf.data() + off + cut, len - cut), ref);
    EXPECT_EQ(crc32c::Combine(a, b, len - cut), ref);
  }
}

}  // namespace
}  // namespace chainrl::wire
