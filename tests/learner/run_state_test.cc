// Tests for learner/run_state.h: the checkpointed run state round-trips exactly, checkpoints of
// earlier versions (without the optional keys) load with zeros, and a damaged state is an error
// naming the file and the key.
#include "learner/run_state.h"

#include <gtest/gtest.h>

namespace chainrl::learner {
namespace {

using nlohmann::json;

RunState Sample() {
  RunState s;
  s.sft_done = true;
  s.sft_step = 40;
  s.step = 7;
  s.version = 7;
  s.next_group = 123;
  s.tokens_trained = 4567;
  s.groups_duplicated = 1;
  s.groups_filtered = 2;
  s.stale_dropped = 3;
  s.samples_multi_version = 4;
  s.segments_received = 5;
  s.gen_limit_steps = 6;
  s.history = json::array({{{"phase", "rl"}, {"step", 7}, {"loss", 0.5}}});
  s.evals = json::array({{{"label", "after_sft"}, {"accuracy", 0.25}}});
  s.sft_eval = {{"accuracy", 0.25}};
  s.wall_seconds = 12.5;
  s.trained = {3, 1, 2};
  s.shaping = {{"laser_targets", {1, 2}}};
  s.difficulty_buckets = nullptr;
  s.torch_rng = {{"cpu", "abc"}};
  return s;
}

TEST(RunStateTest, RoundTripsExactly) {
  const RunState s = Sample();
  const json j = s.ToJson();
  EXPECT_EQ(j["trained"], json({1, 2, 3}));
  auto back = RunState::FromJson(j, "ck/state.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), j);
  EXPECT_EQ(back->next_group, 123u);
  EXPECT_EQ(back->trained, (std::set<uint64_t>{1, 2, 3}));
  EXPECT_TRUE(back->difficulty_buckets.is_null());
  EXPECT_EQ(back->torch_rng["cpu"], "abc");
}

TEST(RunStateTest, EarlierCheckpointsLoadWithoutTheOptionalKeys) {
  json j = Sample().ToJson();
  for (const char* k : {"samples_multi_version", "segments_received", "gen_limit_steps", "shaping",
                        "difficulty_buckets", "torch_rng", "sft_done"})
    j.erase(k);
  auto back = RunState::FromJson(j, "state.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->samples_multi_version, 0);
  EXPECT_EQ(back->segments_received, 0);
  EXPECT_EQ(back->gen_limit_steps, 0);
  EXPECT_FALSE(back->sft_done);
  EXPECT_TRUE(back->shaping.is_null());
  EXPECT_EQ(back->step, 7);
}

TEST(RunStateTest, DamageIsAnErrorNamingTheFileAndKey) {
  json j = Sample().ToJson();
  j.erase("next_group");
  auto missing = RunState::FromJson(j, "ck/state.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message().rfind("ck/state.json: ", 0), 0u);
  EXPECT_NE(missing.status().message().find("next_group"), std::string::npos)
      << missing.status().message();
  j = Sample().ToJson();
  j["step"] = "seven";
  EXPECT_FALSE(RunState::FromJson(j, "s").ok());
  j = Sample().ToJson();
  j["trained"] = "all";
  EXPECT_FALSE(RunState::FromJson(j, "s").ok());
  j = Sample().ToJson();
  j["history"] = 3;
  auto history = RunState::FromJson(j, "s");
  ASSERT_FALSE(history.ok());
  EXPECT_EQ(history.status().message(), "s: history and evals must be arrays");
}

// A count written as a number beyond the integers (1e300) was converted with undefined behaviour;
// measured figures (history, wall time) may hold any number.
TEST(RunStateTest, CountsMustBeIntegers) {
  json j = Sample().ToJson();
  j["step"] = 1e300;
  auto huge = RunState::FromJson(j, "ck/state.json");
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().message(), "ck/state.json: step: 1e+300 is not an integer");
  j = Sample().ToJson();
  j["trained"] = json::array({1, 2.5});
  EXPECT_EQ(RunState::FromJson(j, "s").status().message(), "s: trained[1]: 2.5 is not an integer");
  j = Sample().ToJson();
  j["wall_seconds"] = 12.75;
  j["history"] = json::array({json{{"loss", 0.25}}});
  EXPECT_TRUE(RunState::FromJson(j, "s").ok());
}

}  // namespace
}  // namespace chainrl::learner
