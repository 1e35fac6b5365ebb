// Tests for learner/dispatch.h: actors' credits are capped by what they may hold, a restarted
// actor is told apart from a rejoin of the same process, dead actors are pruned, and a lease
// becomes a work item carrying exactly the round's settings and the documented seed; a dispatch
// pass sends each actor its credits' worth of leases, and work not delivered goes back in line;
// actors' messages move their credits and the ledger; the ledger is topped up to two steps.
#include "learner/dispatch.h"

#include <gtest/gtest.h>

#include "apps/run_config.h"
#include "core/wire.h"
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

TEST(DispatchTest, APassSendsEachActorItsCreditsAndRequeuesWhatWasNotDelivered) {
  std::vector<data::Example> train(4);
  for (size_t i = 0; i < train.size(); ++i) train[i].id = "ex" + std::to_string(i);
  GroupOrderOptions order;
  order.shuffle = false;
  auto data = GroupSource::Create(train, {}, order);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  ManualClock clock;
  WorkLedger ledger(LedgerOptions(), &clock);
  for (uint64_t g = 0; g < 4; ++g) ASSERT_TRUE(ledger.AddGroup(g).ok());
  ActorTable actors;
  actors.Request("a", "ra", 2);
  actors.actors()["a"].max = 2;
  actors.Request("a", "ra", 2);
  actors.Request("b", "rb", 1);
  actors.actors()["b"].max = 3;
  actors.Request("b", "rb", 2);
  actors.Request("c", "", 1);  // no routing id yet: gets nothing
  ASSERT_EQ(actors.actors()["a"].pending, 2);
  ASSERT_EQ(actors.actors()["b"].pending, 3);
  SegmentAssembler segments(2);
  std::vector<std::vector<int32_t>> prompts = {{10}, {11}, {12}, {13}};
  std::vector<size_t> rendered;
  PromptOf prompt_of = [&](size_t index) -> Result<const std::vector<int32_t>*> {
    rendered.push_back(index);
    if (index == 1) return InvalidArgument("example 1 does not render");
    return &prompts[index];
  };
  std::vector<std::pair<std::string, wire::Envelope>> sent;
  SendWork send = [&](const std::string& routing, const wire::Envelope& env) -> Status {
    sent.emplace_back(routing, env);
    if (routing == "rb") return IoError("rb: peer gone");
    return Status::Ok();
  };
  WorkRound round;
  round.policy_version = 3;
  round.group_size = 2;
  LearnerMetrics metrics;
  DispatchWork(round, &actors, &ledger, segments, &*data, prompt_of, send, &metrics);

  EXPECT_EQ(rendered, (std::vector<size_t>{0, 1, 2, 3}));
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].first, "ra");
  const auto& to_a = sent[0].second.work_batch();
  ASSERT_EQ(to_a.items_size(), 1);  // group 1's prompt failed: refused, never handed out
  EXPECT_EQ(to_a.items(0).prompt_group_id(), 0u);
  EXPECT_EQ(to_a.items(0).example_id(), "ex0");
  EXPECT_EQ(to_a.items(0).prompt_token_ids(0), 10u);
  EXPECT_EQ(to_a.items(0).policy_version(), 3);
  EXPECT_EQ(sent[1].first, "rb");
  ASSERT_EQ(sent[1].second.work_batch().items_size(), 2);
  EXPECT_EQ(sent[1].second.work_batch().items(1).prompt_group_id(), 3u);
  // a used one credit (its lease stands; the refused group's credit stays asked for); b's batch
  // never left: its groups are in line again, first, and b gets no more until it asks again; c
  // was not served.
  EXPECT_EQ(actors.actors()["a"].pending, 1);
  EXPECT_EQ(actors.actors()["b"].pending, 0);
  EXPECT_EQ(actors.actors()["c"].pending, 1);
  EXPECT_EQ(ledger.in_flight(), 1u);
  EXPECT_EQ(ledger.pending(), 2u);
  EXPECT_EQ(ledger.counters().reassigned, 2u);
  EXPECT_EQ(ledger.counters().refused, 1u);
  auto again = ledger.Dispatch("a", 4);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].group_id, 2u);
  EXPECT_EQ(again[0].attempt, 1);  // an undelivered lease is no attempt
}

wire::Envelope Join(const std::string& actor, uint32_t pid, uint32_t max_credits) {
  wire::Envelope e = wire::MakeEnvelope(actor);
  e.mutable_join()->set_host("host");
  e.mutable_join()->set_pid(pid);
  e.mutable_join()->set_max_credits(max_credits);
  return e;
}

wire::Envelope Declined(const std::string& actor, uint64_t lease, uint64_t group) {
  wire::Envelope e = wire::MakeEnvelope(actor);
  e.mutable_work_declined()->set_lease_id(lease);
  e.mutable_work_declined()->set_prompt_group_id(group);
  e.mutable_work_declined()->set_reason("a prompt longer than the context");
  return e;
}

// A lease its actor cannot make is handed back: its group goes out again, first in line, as an
// attempt; after lease_max_attempts it is given up. Only the lease's holder can decline it.
TEST(DispatchTest, ADeclinedLeaseGoesOutAgainUntilItsAttemptsAreSpent) {
  ManualClock clock;
  WorkLedger ledger(LedgerOptions().set_max_attempts(2), &clock);
  ActorTable actors;
  for (uint64_t g = 0; g < 2; ++g) ASSERT_TRUE(ledger.AddGroup(g).ok());
  TakeWorkMessage(Join("a", 10, 4), "ra", "a@x", &actors, &ledger);
  TakeWorkMessage(Join("b", 11, 4), "rb", "b@x", &actors, &ledger);
  auto first = ledger.Dispatch("a", 1);
  ASSERT_EQ(first.size(), 1u);
  // Not the holder, the wrong group, a lease never issued: nothing changes.
  TakeWorkMessage(Declined("b", first[0].lease_id, first[0].group_id), "rb", "b@x", &actors,
                  &ledger);
  TakeWorkMessage(Declined("a", first[0].lease_id, 99), "ra", "a@x", &actors, &ledger);
  TakeWorkMessage(Declined("a", 777, first[0].group_id), "ra", "a@x", &actors, &ledger);
  EXPECT_EQ(ledger.in_flight(), 1u);
  EXPECT_EQ(ledger.counters().leases_declined, 0u);
  // The holder declines: the group is first in line again, for its second attempt.
  TakeWorkMessage(Declined("a", first[0].lease_id, first[0].group_id), "ra", "a@x", &actors,
                  &ledger);
  EXPECT_EQ(ledger.in_flight(), 0u);
  EXPECT_EQ(ledger.counters().leases_declined, 1u);
  EXPECT_EQ(ledger.counters().reassigned, 1u);
  auto second = ledger.Dispatch("b", 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].group_id, first[0].group_id);
  EXPECT_EQ(second[0].attempt, 2);
  // Declined again at its last attempt: given up, counted as lost; the other group goes on.
  TakeWorkMessage(Declined("b", second[0].lease_id, second[0].group_id), "rb", "b@x", &actors,
                  &ledger);
  EXPECT_EQ(ledger.counters().leases_declined, 2u);
  EXPECT_EQ(ledger.counters().lost, 1u);
  auto rest = ledger.Dispatch("a", 4);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_NE(rest[0].group_id, first[0].group_id);
  // The count survives a checkpoint of the ledger.
  auto restored = WorkLedger::FromJson(ledger.ToJson(), ledger.options(), &clock);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->counters().leases_declined, 2u);
}

TEST(DispatchTest, ActorsMessagesMoveCreditsAndARestartFreesItsLeases) {
  ManualClock clock;
  WorkLedger ledger(LedgerOptions(), &clock);
  ActorTable actors;
  for (uint64_t g = 0; g < 3; ++g) ASSERT_TRUE(ledger.AddGroup(g).ok());
  TakeWorkMessage(Join("a", 10, 4), "ra", "a@x", &actors, &ledger);
  ASSERT_EQ(actors.size(), 1u);
  EXPECT_EQ(actors.ProcessOf("a"), "host:10");
  EXPECT_EQ(actors.actors()["a"].max, 4);
  wire::Envelope req = wire::MakeEnvelope("a");
  req.mutable_work_request()->set_credits(3);
  TakeWorkMessage(req, "ra2", "a@x", &actors, &ledger);
  EXPECT_EQ(actors.actors()["a"].pending, 3);
  EXPECT_EQ(actors.actors()["a"].routing, "ra2");
  ASSERT_EQ(ledger.Dispatch("a", 2).size(), 2u);
  EXPECT_EQ(ledger.in_flight(), 2u);
  // The same name from another process: the predecessor's leases are handed out again.
  TakeWorkMessage(Join("a", 11, 4), "ra3", "a@y", &actors, &ledger);
  EXPECT_EQ(ledger.in_flight(), 0u);
  EXPECT_EQ(ledger.pending(), 3u);
  EXPECT_EQ(actors.actors()["a"].pending, 0);
  EXPECT_TRUE(ledger.IsAlive("a"));
  // Without a sender, or of another kind: ignored.
  wire::Envelope anonymous = req;
  anonymous.set_sender("");
  TakeWorkMessage(anonymous, "rz", "?@z", &actors, &ledger);
  EXPECT_EQ(actors.size(), 1u);
  wire::Envelope other = wire::MakeEnvelope("b");
  other.mutable_work_batch();
  TakeWorkMessage(other, "rb", "b@z", &actors, &ledger);
  EXPECT_EQ(actors.size(), 1u);
  wire::Envelope leave = wire::MakeEnvelope("a");
  leave.mutable_leave()->set_reason("done");
  TakeWorkMessage(leave, "ra3", "a@y", &actors, &ledger);
  EXPECT_EQ(actors.size(), 0u);
}

// A peer asking for more credits than actors.credits gets actors.credits; a flood of made-up
// names stops at the table's bound (names the ledger knows, from a checkpoint, are still heard).
TEST(DispatchTest, PeersCannotTakeEveryLeaseNorGrowTheTablesWithoutBound) {
  ManualClock clock;
  WorkLedger ledger(LedgerOptions(), &clock);
  ActorTable actors(/*max_credits=*/2, /*max_actors=*/3);
  TakeWorkMessage(Join("greedy", 10, 1024), "rg", "greedy@x", &actors, &ledger);
  EXPECT_EQ(actors.actors()["greedy"].max, 2);
  wire::Envelope req = wire::MakeEnvelope("greedy");
  req.mutable_work_request()->set_credits(1024);
  TakeWorkMessage(req, "rg", "greedy@x", &actors, &ledger);
  EXPECT_EQ(actors.actors()["greedy"].pending, 2);
  for (int i = 0; i < 100000; ++i) {
    wire::Envelope hb = wire::MakeEnvelope("made-up-" + std::to_string(i));
    hb.mutable_heartbeat();
    TakeWorkMessage(hb, "rx", "x@y", &actors, &ledger);
  }
  EXPECT_EQ(actors.size(), 3u);
  EXPECT_EQ(actors.ignored(), 100000 - 2);
  EXPECT_TRUE(ledger.Knows("made-up-1"));
  EXPECT_FALSE(ledger.Knows("made-up-2"));
  // A name already known is heard whatever the bound.
  TakeWorkMessage(req, "rg2", "greedy@x", &actors, &ledger);
  EXPECT_EQ(actors.actors()["greedy"].routing, "rg2");
}

TEST(DispatchTest, TheLedgerIsToppedUpToTwoStepsOfGroups) {
  ManualClock clock;
  WorkLedger ledger(LedgerOptions(), &clock);
  uint64_t next = 0;
  TopUpLedger(&ledger, /*buffered=*/1, /*per_step=*/3, &next);
  EXPECT_EQ(next, 5u);
  EXPECT_EQ(ledger.pending(), 5u);
  ASSERT_EQ(ledger.Dispatch("a", 2).size(), 2u);
  TopUpLedger(&ledger, 1, 3, &next);  // leased groups count: nothing to add
  EXPECT_EQ(next, 5u);
  TopUpLedger(&ledger, 0, 3, &next);
  EXPECT_EQ(next, 6u);
  EXPECT_EQ(ledger.pending() + ledger.in_flight(), 6u);
  // A group the ledger already has is skipped, and the top-up goes on past it.
  uint64_t again = 5;
  TopUpLedger(&ledger, 0, 4, &again);
  EXPECT_EQ(again, 8u);
  EXPECT_EQ(ledger.pending() + ledger.in_flight(), 8u);
}

}  // namespace
}  // namespace chainrl::learner
