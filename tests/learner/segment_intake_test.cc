// Tests for learner/segment_intake.h and learner/record_file.h: segments of a group assemble into
// exactly the tokens, logprobs, policy versions and rewards of their samples; carried samples go
// back out as work; the state round-trips through partials.bin records, and damaged records are
// Corrupt errors, never a crash.
#include "learner/segment_intake.h"

#include <gtest/gtest.h>

#include "core/wire.h"
#include "learner/record_file.h"

namespace chainrl::learner {
namespace {

// Sample `index` with tokens [first, first + n), logprobs -0.1 * token, all from `version`.
wire::Sample MakeSample(uint32_t index, int first, int n, int64_t version,
                        wire::FinishReason finish, double reward = 0) {
  wire::Sample s;
  s.set_sample_index(index);
  for (int t = first; t < first + n; ++t) {
    s.mutable_completion()->add_token_ids(static_cast<uint32_t>(t));
    s.mutable_completion()->add_behaviour_logprobs(-0.1f * static_cast<float>(t));
  }
  if (n > 0) {
    s.mutable_completion()->mutable_policy_versions()->add_versions(version);
    s.mutable_completion()->mutable_policy_versions()->add_lengths(static_cast<uint32_t>(n));
  }
  s.set_finish_reason(finish);
  if (finish != wire::FINISH_UNFINISHED) {
    s.set_reward(reward);
    s.set_correct(reward >= 1.0);
    (*s.mutable_reward_components())["math"] = reward;
  }
  s.mutable_timings()->set_generate_seconds(1.0);
  return s;
}

wire::Trajectory Result(uint64_t gid, uint64_t lease, std::vector<wire::Sample> samples) {
  wire::Trajectory t;
  t.set_prompt_group_id(gid);
  t.set_lease_id(lease);
  t.set_actor_id("actor-" + std::to_string(lease));
  for (auto& s : samples) *t.add_samples() = std::move(s);
  return t;
}

TEST(RecordFileTest, RoundTripsAndRefusesEveryTruncation) {
  std::string bytes;
  AppendRecord(&bytes, "first");
  AppendRecord(&bytes, "");
  AppendRecord(&bytes, std::string(1000, 'x'));
  auto records = SplitRecords(bytes, "buffer.bin");
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0], "first");
  EXPECT_EQ((*records)[1], "");
  EXPECT_EQ((*records)[2].size(), 1000u);
  EXPECT_EQ(SplitRecords("", "x")->size(), 0u);
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    auto r = SplitRecords(std::string_view(bytes).substr(0, cut), "buffer.bin");
    const bool boundary = cut == 13 || cut == 21;  // after record 1 and after record 2
    if (boundary) {
      EXPECT_TRUE(r.ok()) << cut;
      continue;
    }
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
    EXPECT_EQ(r.status().message().rfind("buffer.bin: truncated record", 0), 0u)
        << r.status().message();
  }
}

TEST(SegmentIntakeTest, AFreshFinishedGroupIsWholeAndNothingIsKept) {
  SegmentAssembler a(2);
  EXPECT_EQ(a.Expected(7), (std::set<uint32_t>{0, 1}));
  wire::Trajectory out;
  auto t = Result(
      7, 1,
      {MakeSample(0, 0, 3, 0, wire::FINISH_STOP, 1), MakeSample(1, 0, 2, 0, wire::FINISH_LENGTH)});
  EXPECT_EQ(a.Add(t, "a", &out), SegmentIntake::kWhole);
  EXPECT_EQ(a.groups(), 0u);
  EXPECT_EQ(a.segments_received(), 0);
  EXPECT_EQ(out.samples_size(), 0);
}

TEST(SegmentIntakeTest, SegmentsAssembleExactlyAcrossLeasesAndVersions) {
  SegmentAssembler a(3);
  wire::Trajectory out;
  // Lease 1: sample 1 finishes, samples 0 and 2 run out of segment.
  auto first = Result(5, 1,
                      {MakeSample(0, 0, 4, 0, wire::FINISH_UNFINISHED),
                       MakeSample(1, 100, 2, 0, wire::FINISH_STOP, 1.0),
                       MakeSample(2, 200, 4, 0, wire::FINISH_UNFINISHED)});
  EXPECT_EQ(a.Add(first, "actor-a", &out), SegmentIntake::kCarried);
  EXPECT_EQ(a.groups(), 1u);
  ASSERT_NE(a.LastActor(5), nullptr);
  EXPECT_EQ(*a.LastActor(5), "actor-a");
  EXPECT_EQ(a.Expected(5), (std::set<uint32_t>{0, 2}));

  // The carried samples go out with their tokens so far.
  wire::WorkItem item;
  a.AddCarried(5, &item);
  ASSERT_EQ(item.carried_size(), 2);
  EXPECT_EQ(item.carried(0).sample_index(), 0u);
  EXPECT_EQ(item.carried(0).segment().token_ids_size(), 4);
  EXPECT_EQ(item.carried(1).sample_index(), 2u);
  EXPECT_EQ(item.carried(1).segment().token_ids(3), 203u);
  wire::WorkItem fresh;
  a.AddCarried(6, &fresh);
  EXPECT_EQ(fresh.carried_size(), 0);

  // Lease 2 (another actor, new weights): sample 0 finishes, sample 2 goes on.
  auto second = Result(5, 2,
                       {MakeSample(0, 4, 3, 1, wire::FINISH_REPETITION, 0.0),
                        MakeSample(2, 204, 4, 1, wire::FINISH_UNFINISHED)});
  EXPECT_EQ(a.Add(second, "actor-b", &out), SegmentIntake::kCarried);
  EXPECT_EQ(*a.LastActor(5), "actor-b");
  EXPECT_EQ(a.Expected(5), (std::set<uint32_t>{2}));

  // Lease 3: the last sample finishes, in the same version as its previous segment.
  auto third = Result(5, 3, {MakeSample(2, 208, 1, 1, wire::FINISH_BUDGET, 0.5)});
  ASSERT_EQ(a.Add(third, "actor-b", &out), SegmentIntake::kAssembled);
  EXPECT_EQ(a.groups(), 0u);
  EXPECT_EQ(a.LastActor(5), nullptr);
  EXPECT_EQ(a.segments_received(), 3);
  EXPECT_EQ(out.prompt_group_id(), 5u);
  EXPECT_EQ(out.lease_id(), 3u);
  EXPECT_EQ(out.actor_id(), "actor-3");
  ASSERT_EQ(out.samples_size(), 3);
  const auto& s0 = out.samples(0);
  EXPECT_EQ(s0.finish_reason(), wire::FINISH_REPETITION);
  ASSERT_EQ(s0.completion().token_ids_size(), 7);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(s0.completion().token_ids(i), static_cast<uint32_t>(i));
    EXPECT_FLOAT_EQ(s0.completion().behaviour_logprobs(i), -0.1f * static_cast<float>(i));
  }
  EXPECT_EQ(wire::ExpandPolicyVersions(s0.completion().policy_versions()),
            (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(s0.timings().generate_seconds(), 2.0);
  const auto& s1 = out.samples(1);
  EXPECT_EQ(s1.finish_reason(), wire::FINISH_STOP);
  EXPECT_DOUBLE_EQ(s1.reward(), 1.0);
  EXPECT_TRUE(s1.correct());  // the actor's verdict travels with the sample
  EXPECT_FALSE(s0.correct());
  EXPECT_DOUBLE_EQ(s1.reward_components().at("math"), 1.0);
  const auto& s2 = out.samples(2);
  EXPECT_EQ(s2.finish_reason(), wire::FINISH_BUDGET);
  EXPECT_EQ(s2.completion().token_ids_size(), 9);
  EXPECT_EQ(s2.completion().token_ids(8), 208u);
  // Runs of equal versions are joined: 4 tokens of v0, then 4 + 1 of v1.
  EXPECT_EQ(s2.completion().policy_versions().versions_size(), 2);
  EXPECT_EQ(s2.completion().policy_versions().lengths(1), 5u);
  EXPECT_DOUBLE_EQ(s2.reward(), 0.5);
  EXPECT_DOUBLE_EQ(s2.timings().generate_seconds(), 3.0);
}

TEST(SegmentIntakeTest, StateRoundTripsThroughRecordsAndDamageIsCorrupt) {
  SegmentAssembler a(2);
  wire::Trajectory out;
  for (uint64_t gid : {3, 9})
    ASSERT_EQ(a.Add(Result(gid, gid,
                           {MakeSample(0, 0, 2, 0, wire::FINISH_UNFINISHED),
                            MakeSample(1, 0, 1, 0, wire::FINISH_STOP, 1)}),
                    "x", &out),
              SegmentIntake::kCarried);
  const std::string records = a.ToRecords();
  SegmentAssembler b(2);
  ASSERT_TRUE(b.LoadRecords(records, "partials.bin").ok());
  EXPECT_EQ(b.groups(), 2u);
  EXPECT_EQ(b.Expected(9), (std::set<uint32_t>{0}));
  EXPECT_EQ(b.LastActor(9), nullptr);  // a hint, not checkpointed
  EXPECT_EQ(b.ToRecords(), records);

  // A record that is not a trajectory, and one whose samples are out of place.
  std::string junk;
  AppendRecord(&junk, std::string("\xff\xff\xff", 3));
  Status st = b.LoadRecords(junk, "ck/partials.bin");
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_EQ(st.message(), "ck/partials.bin: a record does not parse");
  EXPECT_EQ(b.groups(), 2u);  // unchanged by a failed load
  wire::Trajectory misplaced = Result(4, 4, {MakeSample(1, 0, 1, 0, wire::FINISH_UNFINISHED)});
  std::string bad;
  AppendRecord(&bad, misplaced.SerializeAsString());
  st = b.LoadRecords(bad, "partials.bin");
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_EQ(st.message(), "partials.bin: group 4 holds sample 1 at position 0");
  EXPECT_EQ(b.LoadRecords(records.substr(0, records.size() - 1), "p").code(), StatusCode::kCorrupt);
}

// A carried sample whose policy version runs do not cover its tokens, or whose logprobs do not
// match them, is refused at load: the next segment for its group appended runs out of bounds.
TEST(SegmentIntakeTest, CarriedSamplesMustHaveALogprobAndAVersionPerToken) {
  SegmentAssembler a(2);
  wire::Trajectory out;
  ASSERT_EQ(a.Add(Result(5, 5,
                         {MakeSample(0, 0, 2, 0, wire::FINISH_UNFINISHED),
                          MakeSample(1, 0, 1, 0, wire::FINISH_STOP, 1)}),
                  "x", &out),
            SegmentIntake::kCarried);
  const std::string records = a.ToRecords();
  auto split = SplitRecords(records, "partials.bin");
  ASSERT_TRUE(split.ok());
  ASSERT_EQ(split->size(), 1u);
  wire::Trajectory t;
  ASSERT_TRUE(t.ParseFromString(std::string((*split)[0])));
  ASSERT_GE(t.samples(0).completion().token_ids_size(), 1);
  const int tokens = t.samples(0).completion().token_ids_size();

  wire::Trajectory no_lengths = t;
  no_lengths.mutable_samples(0)->mutable_completion()->mutable_policy_versions()->clear_lengths();
  std::string bytes;
  AppendRecord(&bytes, no_lengths.SerializeAsString());
  SegmentAssembler b(2);
  Status st = b.LoadRecords(bytes, "ck/partials.bin");
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_NE(st.message().find("ck/partials.bin: group 5 sample 0: policy version runs (1 versions, "
                              "0 lengths) do not cover its " +
                              std::to_string(tokens) + " tokens"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(b.groups(), 0u);

  wire::Trajectory short_logprobs = t;
  short_logprobs.mutable_samples(0)->mutable_completion()->add_behaviour_logprobs(-0.5f);
  bytes.clear();
  AppendRecord(&bytes, short_logprobs.SerializeAsString());
  st = b.LoadRecords(bytes, "ck/partials.bin");
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_EQ(st.message(), "ck/partials.bin: group 5 sample 0: " + std::to_string(tokens + 1) +
                              " logprobs for " + std::to_string(tokens) + " tokens");
}

}  // namespace
}  // namespace chainrl::learner
