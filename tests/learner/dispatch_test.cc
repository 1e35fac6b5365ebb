// Tests for learner/dispatch.h: actors' credits are capped by what they may hold, a restarted
// actor is told apart from a rejoin of the same process, dead actors are pruned, and a lease
// becomes a work item carrying exactly the round's settings and the documented seed.
#include "learner/dispatch.h"

#include <gtest/gtest.h>

#include "apps/run_config.h"
#include "learner/group_source.h"

namespace chainrl::learner {
namespace {

TEST(DispatchTest, CreditsAreCappedAndRestartsAreToldApart) {
  ActorTable t;
  EXPECT_FALSE(t.Join("a", "r1", "host:10", 4));  // first join
  t.Request("a", "r1", 3);
  EXPECT_EQ(t.actors()["a"].pending, 3);
  t.Request("a", "r1", 3);
  EXPECT_EQ(t.actors()["a"].pending, 4);             // capped at the joined maximum
  EXPECT_FALSE(t.Join("a", "r2", "host:10", 2000));  // the same process again: no restart
  EXPECT_EQ(t.actors()["a"].pending, 0);
  EXPECT_EQ(t.actors()["a"].max, kMaxActorCredits);
  EXPECT_EQ(t.actors()["a"].routing, "r2");
  EXPECT_TRUE(t.Join("a", "r3", "host:11", 0));  // another pid under the same name
  EXPECT_EQ(t.actors()["a"].max, 1);
  EXPECT_EQ(t.ProcessOf("a"), "host:11");
  // A request before any join is served up to one group.
  t.Request("b", "rb", 5);
  EXPECT_EQ(t.actors()["b"].pending, 1);
  EXPECT_EQ(t.size(), 2u);
  t.Prune([](const std::string& name) { return name == "b"; });
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.ProcessOf("a"), "");
  t.Leave("b");
  EXPECT_EQ(t.size(), 0u);
}

TEST(DispatchTest, ALeaseBecomesTheRoundsWorkItem) {
  auto c = ParseConfig(
      "[model]\npath = \"m\"\n[run]\nseed = 9\n[rollout]\ntemperature = 0.7\ntop_p = 0.9\ntop_k = "
      "20\n"
      "max_new_tokens = 64\ngroup_size = 4\nsegment_tokens = 16\nstop_token_ids = [7]\n"
      "stop_strings = [\"</answer>\"]\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const WorkRound round = WorkRoundFromConfig(*c, {2, 3}, /*budget=*/32, /*version=*/5, 99);
  data::Example ex;
  ex.id = std::string(300, 'i');
  ex.answer = 42;
  ex.embeddings = "e.safetensors#t";
  Lease l;
  l.lease_id = 11;
  l.group_id = 6;
  l.attempt = 2;
  wire::WorkItem w;
  FillWorkItem(round, l, ex, {1, 2, 3}, &w);
  EXPECT_EQ(w.prompt_group_id(), 6u);
  EXPECT_EQ(w.lease_id(), 11u);
  ASSERT_EQ(w.prompt_token_ids_size(), 3);
  EXPECT_EQ(w.prompt_token_ids(2), 3u);
  EXPECT_FLOAT_EQ(w.sampling().temperature(), 0.7f);
  EXPECT_FLOAT_EQ(w.sampling().top_p(), 0.9f);
  EXPECT_EQ(w.sampling().top_k(), 20);
  // The chat template's stop tokens, then the configured ones.
  ASSERT_EQ(w.sampling().stop_token_ids_size(), 3);
  EXPECT_EQ(w.sampling().stop_token_ids(0), 2u);
  EXPECT_EQ(w.sampling().stop_token_ids(2), 7u);
  EXPECT_EQ(w.sampling().stop_strings(0), "</answer>");
  EXPECT_EQ(w.sampling().seed(), SplitMix64(9 ^ SplitMix64(6 * 1315423911ull + 2)));
  EXPECT_EQ(w.sampling().seed(), LeaseSeed(9, 6, 2));
  EXPECT_NE(LeaseSeed(9, 6, 2), LeaseSeed(9, 6, 3));  // a group handed out again samples anew
  EXPECT_EQ(w.token_budget(), 32u);
  EXPECT_EQ(w.max_new_tokens(), 64u);
  EXPECT_EQ(w.group_size(), 4u);
  EXPECT_EQ(w.segment_tokens(), 16u);
  EXPECT_EQ(w.policy_version(), 5);
  EXPECT_EQ(w.example_id().size(), 200u);  // ids are cut to what the wire accepts
  EXPECT_EQ(w.answer_json(), "42");
  EXPECT_EQ(w.metadata_json(), "{}");
  EXPECT_EQ(w.prompt_embeddings(), "e.safetensors#t");
  EXPECT_EQ(w.placeholder_token_id(), 99);
  EXPECT_EQ(w.carried_size(), 0);
}

}  // namespace
}  // namespace chainrl::learner
