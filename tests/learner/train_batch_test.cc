// Tests for learner/train_batch.h: a trajectory becomes exactly its group's tokens, logprobs,
// rewards and ends with the right means; a step's batch sums its groups' figures, counts
// duplicates and staleness; shaping sees and sets every sample; the step's history entry and
// metrics carry the numbers they are given.
#include "learner/train_batch.h"

#include <gtest/gtest.h>

#include <cmath>

namespace chainrl::learner {
namespace {

wire::Sample MakeSample(uint32_t index, std::vector<uint32_t> tokens, double reward, bool correct,
                        wire::FinishReason finish) {
  wire::Sample s;
  s.set_sample_index(index);
  for (uint32_t t : tokens) {
    s.mutable_completion()->add_token_ids(t);
    s.mutable_completion()->add_behaviour_logprobs(-0.5f * static_cast<float>(t));
  }
  s.set_reward(reward);
  s.set_correct(correct);
  s.set_finish_reason(finish);
  (*s.mutable_reward_components())["math"] = reward;
  (*s.mutable_reward_components())["format"] = 0.5;
  return s;
}

wire::Trajectory MakeTrajectory(uint64_t gid, std::vector<wire::Sample> samples) {
  wire::Trajectory t;
  t.set_prompt_group_id(gid);
  for (auto& s : samples) *t.add_samples() = std::move(s);
  return t;
}

// A group of `rewards.size()` samples of `length` tokens each, none correct, none truncated.
AcceptedGroup Group(uint64_t gid, std::vector<double> rewards, int64_t version, double length) {
  AcceptedGroup a;
  a.group.group_id = gid;
  for (double r : rewards) {
    SampleData s;
    s.reward = r;
    s.tokens.assign(static_cast<size_t>(length), 7);
    a.group.samples.push_back(s);
  }
  a.behaviour_version = version;
  a.mean_length = length;
  a.correct_fraction = 0.25;
  a.truncated_fraction = 0.5;
  a.component_means["math"] = 1.0;
  return a;
}

TEST(TrainBatchTest, SampleEndKeepsTheFinishReason) {
  EXPECT_EQ(SampleEndOf(wire::FINISH_LENGTH), SampleEnd::kLength);
  EXPECT_EQ(SampleEndOf(wire::FINISH_BUDGET), SampleEnd::kBudget);
  EXPECT_EQ(SampleEndOf(wire::FINISH_REPETITION), SampleEnd::kRepetition);
  EXPECT_EQ(SampleEndOf(wire::FINISH_ABORTED), SampleEnd::kAborted);
  EXPECT_EQ(SampleEndOf(wire::FINISH_STOP), SampleEnd::kStop);
  EXPECT_EQ(SampleEndOf(wire::FINISH_UNSPECIFIED), SampleEnd::kStop);
}

TEST(TrainBatchTest, TrajectoryBecomesItsGroupWithMeans) {
  const wire::Trajectory t =
      MakeTrajectory(42, {MakeSample(0, {1, 2, 3}, 1.0, true, wire::FINISH_STOP),
                          MakeSample(1, {4, 5, 6, 7, 8}, 0.0, false, wire::FINISH_LENGTH),
                          MakeSample(2, {9}, 0.5, false, wire::FINISH_REPETITION),
                          MakeSample(3, {}, 0.0, false, wire::FINISH_ABORTED)});
  const AcceptedGroup a = GroupFromTrajectory(t, {100, 101}, 3);
  EXPECT_EQ(a.group.group_id, 42u);
  EXPECT_EQ(a.group.prompt, (std::vector<int32_t>{100, 101}));
  EXPECT_EQ(a.behaviour_version, 3);
  ASSERT_EQ(a.group.samples.size(), 4u);
  EXPECT_EQ(a.group.samples[1].tokens, (std::vector<int32_t>{4, 5, 6, 7, 8}));
  EXPECT_EQ(a.group.samples[1].behaviour_logprobs,
            (std::vector<float>{-2.0f, -2.5f, -3.0f, -3.5f, -4.0f}));
  EXPECT_EQ(a.group.samples[2].reward, 0.5);
  EXPECT_EQ(a.group.samples[0].end, SampleEnd::kStop);
  EXPECT_EQ(a.group.samples[1].end, SampleEnd::kLength);
  EXPECT_EQ(a.group.samples[2].end, SampleEnd::kRepetition);
  EXPECT_EQ(a.group.samples[3].end, SampleEnd::kAborted);
  EXPECT_TRUE(a.group.samples[0].correct);
  EXPECT_FALSE(a.group.samples[1].correct);
  EXPECT_FALSE(a.group.samples[0].advantage.has_value());
  EXPECT_DOUBLE_EQ(a.correct_fraction, 0.25);
  EXPECT_DOUBLE_EQ(a.mean_length, 9.0 / 4);
  EXPECT_DOUBLE_EQ(a.truncated_fraction, 0.5);  // length and repetition; aborted is not
  EXPECT_DOUBLE_EQ(a.component_means.at("math"), 1.5 / 4);
  EXPECT_DOUBLE_EQ(a.component_means.at("format"), 0.5);
  EXPECT_TRUE(a.serialized.empty());
  // Each token's policy version, as the wire's runs: whole, or unknown when they do not cover.
  wire::Trajectory v = MakeTrajectory(43, {MakeSample(0, {1, 2, 3}, 1.0, true, wire::FINISH_STOP),
                                           MakeSample(1, {4, 5}, 0.0, false, wire::FINISH_STOP)});
  auto* runs = v.mutable_samples(0)->mutable_completion()->mutable_policy_versions();
  runs->add_versions(2);
  runs->add_lengths(1);
  runs->add_versions(3);
  runs->add_lengths(2);
  auto* short_runs = v.mutable_samples(1)->mutable_completion()->mutable_policy_versions();
  short_runs->add_versions(3);
  short_runs->add_lengths(1);
  const AcceptedGroup withv = GroupFromTrajectory(v, {100}, 2);
  ASSERT_EQ(withv.group.samples[0].versions.size(), 2u);
  EXPECT_EQ(withv.group.samples[0].versions[0].version, 2);
  EXPECT_EQ(withv.group.samples[0].versions[0].length, 1);
  EXPECT_EQ(withv.group.samples[0].versions[1].version, 3);
  EXPECT_EQ(withv.group.samples[0].versions[1].length, 2);
  EXPECT_TRUE(withv.group.samples[1].versions.empty());

  const AcceptedGroup empty = GroupFromTrajectory(MakeTrajectory(1, {}), {}, 0);
  EXPECT_TRUE(empty.group.samples.empty());
  EXPECT_EQ(empty.correct_fraction, 0);
  EXPECT_EQ(empty.mean_length, 0);
}

TEST(TrainBatchTest, StepBatchSumsItsGroupsAndCountsDuplicates) {
  std::deque<AcceptedGroup> buffer;
  buffer.push_back(Group(10, {1.0, 0.0}, 5, 4));
  buffer.push_back(Group(11, {1.0, 1.0, 1.0, 0.0}, 3, 8));
  buffer.push_back(Group(12, {0.0}, 6, 2));
  std::set<uint64_t> trained = {11};
  const StepBatch b =
      TakeStepBatch(&buffer, 2, 6, &trained, [](uint64_t g) { return g == 10 ? "easy" : "hard"; });
  ASSERT_EQ(b.groups.size(), 2u);
  EXPECT_EQ(b.groups[0].group_id, 10u);
  EXPECT_EQ(b.groups[1].group_id, 11u);
  ASSERT_EQ(buffer.size(), 1u);
  EXPECT_EQ(buffer.front().group.group_id, 12u);
  EXPECT_EQ(trained, (std::set<uint64_t>{10, 11}));
  EXPECT_EQ(b.duplicated, 1);
  EXPECT_DOUBLE_EQ(b.reward, 0.5 + 0.75);
  EXPECT_DOUBLE_EQ(b.correct, 0.5);
  EXPECT_DOUBLE_EQ(b.length, 12);
  EXPECT_DOUBLE_EQ(b.truncated, 1.0);
  EXPECT_DOUBLE_EQ(b.components.at("math"), 1.0);
  EXPECT_EQ(b.max_staleness, 3);
  EXPECT_EQ(b.difficulty, nlohmann::json({{"easy", 1}, {"hard", 1}}));

  const StepBatch no_buckets = TakeStepBatch(&buffer, 1, 6, &trained, nullptr);
  EXPECT_TRUE(no_buckets.difficulty.is_null());
  EXPECT_EQ(no_buckets.duplicated, 0);
  EXPECT_EQ(no_buckets.max_staleness, 0);
  EXPECT_TRUE(buffer.empty());
}

TEST(TrainBatchTest, ShapingSeesEverySampleAndSetsItsRewardAndAdvantage) {
  StepBatch b;
  b.groups.resize(2);
  SampleData stop, looped, cut;
  stop.tokens = {1, 2, 3};
  stop.reward = 1.0;
  stop.correct = true;
  looped.tokens = {4, 4, 4, 4};
  looped.end = SampleEnd::kRepetition;
  cut.tokens = {5};
  cut.end = SampleEnd::kLength;
  b.groups[0].samples = {stop, looped};
  b.groups[1].samples = {cut};
  const std::vector<ShapingGroup> in = ShapingInputs(b.groups);
  ASSERT_EQ(in.size(), 2u);
  ASSERT_EQ(in[0].samples.size(), 2u);
  EXPECT_EQ(in[0].samples[0].reward, 1.0);
  EXPECT_EQ(in[0].samples[0].length, 3);
  EXPECT_TRUE(in[0].samples[0].correct);
  EXPECT_TRUE(in[0].samples[0].formatted);
  EXPECT_FALSE(in[0].samples[0].truncated);
  EXPECT_FALSE(in[0].samples[0].looping);
  EXPECT_TRUE(in[0].samples[1].truncated);
  EXPECT_FALSE(in[0].samples[1].formatted);
  EXPECT_TRUE(in[0].samples[1].looping);
  EXPECT_EQ(in[0].samples[1].tokens.size(), 4u);
  EXPECT_EQ(in[0].samples[1].tokens.data(), b.groups[0].samples[1].tokens.data());
  EXPECT_TRUE(in[1].samples[0].truncated);
  EXPECT_FALSE(in[1].samples[0].looping);

  ShapedStep shaped;
  shaped.rewards = {{0.8, -0.2}, {0.1}};
  shaped.advantages = {{1.0, -1.0}, {0.0}};
  shaped.soft_weights = {0.5, 1.5};
  shaped.laser_targets = {300, 200, 100};
  shaped.laser_targets_updated = true;
  ApplyShaping(shaped, &b);
  EXPECT_EQ(b.groups[0].samples[0].reward, 0.8);
  EXPECT_EQ(b.groups[0].samples[1].advantage, -1.0);
  EXPECT_EQ(b.groups[1].samples[0].advantage, 0.0);
  EXPECT_DOUBLE_EQ(b.shaped_reward, 0.3 + 0.1);
  EXPECT_DOUBLE_EQ(b.soft_weight, 1.0);
  EXPECT_EQ(b.laser_targets, (std::array<int64_t, 3>{300, 200, 100}));
  EXPECT_TRUE(b.laser_targets_updated);
}

TEST(TrainBatchTest, HistoryEntryAndMetricsCarryTheStepsFigures) {
  std::deque<AcceptedGroup> buffer;
  buffer.push_back(Group(1, {1.0, 0.0}, 4, 10));
  buffer.push_back(Group(2, {1.0, 1.0}, 5, 30));
  std::set<uint64_t> trained;
  StepBatch b = TakeStepBatch(&buffer, 2, 5, &trained, nullptr);
  b.shaped_reward = 1.2;
  StepOutcome o;
  o.step = 7;
  o.budget = 512;
  o.stats.loss = 0.25;
  o.stats.grad_norm = 2.0;
  o.stats.lr = 1e-6;
  o.stats.response_tokens = 80;
  o.stats.policy.tokens = 80;
  o.stats.policy.clipped_tokens = 8;
  o.stats.policy.approx_kl_sum = 4;
  o.stats.policy.mismatch_tokens = 40;
  o.stats.policy.mismatch_abs_sum = 2;
  o.stats.policy.entropy_sum = 16;
  o.train_seconds = 3;
  o.wait_seconds = 1;
  o.step_seconds = 4;
  o.rollout_tokens_per_s = 20;
  o.generated_groups = 3;

  nlohmann::json h = StepHistoryEntry(b, o);
  EXPECT_EQ(h["phase"], "rl");
  EXPECT_EQ(h["step"], 7);
  EXPECT_DOUBLE_EQ(h["reward"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(h["shaped_reward"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(h["accuracy"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(h["mean_length"].get<double>(), 20);
  EXPECT_DOUBLE_EQ(h["truncated"].get<double>(), 0.5);
  EXPECT_EQ(h["budget"], 512);
  EXPECT_DOUBLE_EQ(h["clip_fraction"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(h["approx_kl"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(h["logprob_mismatch"].get<double>(), 0.05);
  EXPECT_EQ(h["max_staleness"], 1);
  EXPECT_EQ(h["tokens"], 80);
  EXPECT_EQ(h["groups"], 2);
  EXPECT_EQ(h["generated_groups"], 3);
  EXPECT_DOUBLE_EQ(h["rollout_tokens_per_s"].get<double>(), 20);
  EXPECT_DOUBLE_EQ(h["entropy_mean"].get<double>(), 0.2);  // measured: its sum is not 0
  EXPECT_EQ(h.size(), 22u);                                // nothing optional but the entropy

  o.gen_limit_reached = true;
  o.soft_weighting = true;
  o.mastered_token_mask = true;
  o.stats.mastered_masked_tokens = 9;
  o.preference = PreferenceStepStats{};
  o.preference->pairs = 2;
  o.preference->reward_accuracy = 0.5;
  o.preference->reward_margin = 0.125;
  b.soft_weight = 0.75;
  b.difficulty = {{"hard", 2}};
  b.laser_targets = {400, 300, 200};
  h = StepHistoryEntry(b, o);
  EXPECT_EQ(h["gen_limit_reached"], true);
  EXPECT_EQ(h["pairs"], 2);
  EXPECT_EQ(h["reward_accuracy"], 0.5);
  EXPECT_EQ(h["reward_margin"], 0.125);
  EXPECT_EQ(h["difficulty"], nlohmann::json({{"hard", 2}}));
  EXPECT_EQ(h["soft_weight_mean"], 0.75);
  EXPECT_EQ(h["mastered_masked_tokens"], 9);
  EXPECT_EQ(h["laser_d_targets"], nlohmann::json({400, 300, 200}));
  EXPECT_FALSE(h.contains("laser_d_updated"));
  EXPECT_EQ(h.size(), 30u);

  const StepMetrics m = StepMetricsOf(b, o);
  EXPECT_EQ(m.groups, 2);
  EXPECT_EQ(m.response_tokens, 80);
  EXPECT_EQ(m.groups_duplicated, 0);
  EXPECT_DOUBLE_EQ(m.reward_components.at("math"), 1.0);
  EXPECT_EQ(m.train_seconds, 3);
  EXPECT_EQ(m.wait_seconds, 1);
  EXPECT_EQ(m.step_seconds, 4);
  EXPECT_DOUBLE_EQ(m.reward_mean, 0.75);
  EXPECT_DOUBLE_EQ(m.truncated_fraction, 0.5);
  EXPECT_EQ(m.loss, 0.25);
  EXPECT_DOUBLE_EQ(m.approx_kl, 0.05);
  EXPECT_DOUBLE_EQ(m.clip_fraction, 0.1);
  EXPECT_EQ(m.grad_norm, 2.0);
  EXPECT_EQ(m.lr, 1e-6);
  EXPECT_EQ(m.max_staleness, 1);
  EXPECT_EQ(m.token_budget, 512);
  EXPECT_DOUBLE_EQ(m.entropy_mean, 0.2);
}

// Staleness when trained: groups past the bound leave the buffer (the others keep their order);
// CountStale sees the same groups among the first n.
TEST(TrainBatchTest, TakeStaleRemovesTheGroupsPastTheBound) {
  std::deque<AcceptedGroup> buffer;
  for (int64_t v : {7, 4, 6, 3, 7}) {
    AcceptedGroup a;
    a.group.group_id = static_cast<uint64_t>(10 + buffer.size());
    a.behaviour_version = v;
    buffer.push_back(std::move(a));
  }
  // Learner at 7, bound 2: lags 0, 3, 1, 4, 0.
  EXPECT_EQ(CountStale(buffer, 2, 7, 2), 1u);
  EXPECT_EQ(CountStale(buffer, 5, 7, 2), 2u);
  EXPECT_EQ(CountStale(buffer, 9, 7, 2), 2u);
  EXPECT_TRUE(TakeStale(&buffer, 7, 4).empty());
  ASSERT_EQ(buffer.size(), 5u);
  const std::vector<AcceptedGroup> stale = TakeStale(&buffer, 7, 2);
  ASSERT_EQ(stale.size(), 2u);
  EXPECT_EQ(stale[0].group.group_id, 11u);
  EXPECT_EQ(stale[1].group.group_id, 13u);
  ASSERT_EQ(buffer.size(), 3u);
  EXPECT_EQ(buffer[0].group.group_id, 10u);
  EXPECT_EQ(buffer[1].group.group_id, 12u);
  EXPECT_EQ(buffer[2].group.group_id, 14u);
}

TEST(TrainBatchTest, PreferenceHistoryEntryCarriesTheUpdatesFigures) {
  PreferenceStepStats st;
  st.loss = 0.5;
  st.reward_accuracy = 0.75;
  st.reward_margin = 0.25;
  st.pairs = 4;
  st.grad_norm = 1.5;
  st.lr = 2e-6;
  st.response_tokens = 64;
  EXPECT_EQ(PreferenceHistoryEntry(3, st, 0.125), nlohmann::json({{"phase", "preference"},
                                                                  {"step", 3},
                                                                  {"loss", 0.5},
                                                                  {"reward_accuracy", 0.75},
                                                                  {"reward_margin", 0.25},
                                                                  {"pairs", 4},
                                                                  {"grad_norm", 1.5},
                                                                  {"lr", 2e-6},
                                                                  {"tokens", 64},
                                                                  {"train_seconds", 0.125}}));
}

TEST(TrainBatchTest, BufferRecordsRoundTripAndCorruptionIsNamed) {
  std::deque<AcceptedGroup> buffer;
  for (uint64_t g : {4u, 9u}) {
    wire::Envelope e = wire::MakeEnvelope("actor-0");  // as it arrived
    *e.mutable_trajectory() =
        MakeTrajectory(g, {MakeSample(0, {1, 2, 3}, 1.0, true, wire::FINISH_STOP)});
    e.mutable_trajectory()->set_lease_id(g + 100);
    auto* runs =
        e.mutable_trajectory()->mutable_samples(0)->mutable_completion()->mutable_policy_versions();
    runs->add_versions(0);  // every token of version 0, as an actor says
    runs->add_lengths(3);
    AcceptedGroup a;
    a.serialized = e.SerializeAsString();
    buffer.push_back(std::move(a));
  }
  const std::string bytes = BufferRecords(buffer);
  auto back = ReadBufferRecords(bytes, "ckpt/buffer.bin");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].trajectory.prompt_group_id(), 4u);
  EXPECT_EQ((*back)[1].trajectory.prompt_group_id(), 9u);
  EXPECT_EQ((*back)[1].record, buffer[1].serialized);
  EXPECT_EQ((*back)[1].trajectory.samples(0).completion().token_ids_size(), 3);
  EXPECT_TRUE(ReadBufferRecords("", "ckpt/buffer.bin")->empty());

  // A record that is no envelope with a trajectory, and a torn file.
  std::deque<AcceptedGroup> bad(1);
  bad[0].serialized = wire::Envelope().SerializeAsString();
  auto no_traj = ReadBufferRecords(BufferRecords(bad), "ckpt/buffer.bin");
  ASSERT_FALSE(no_traj.ok());
  EXPECT_EQ(no_traj.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(no_traj.status().message().find("ckpt/buffer.bin: record 1"), std::string::npos)
      << no_traj.status().message();
  // A record that parses but that intake would have refused (a reward that is not finite).
  wire::Envelope forged = wire::MakeEnvelope("actor-0");
  *forged.mutable_trajectory() =
      MakeTrajectory(5, {MakeSample(0, {1, 2, 3}, 1.0, true, wire::FINISH_STOP)});
  forged.mutable_trajectory()->set_lease_id(7);
  auto* runs = forged.mutable_trajectory()
                   ->mutable_samples(0)
                   ->mutable_completion()
                   ->mutable_policy_versions();
  runs->add_versions(0);
  runs->add_lengths(3);
  forged.mutable_trajectory()->mutable_samples(0)->set_reward(std::nan(""));
  bad[0].serialized = forged.SerializeAsString();
  auto nan = ReadBufferRecords(BufferRecords(bad), "ckpt/buffer.bin");
  ASSERT_FALSE(nan.ok());
  EXPECT_EQ(nan.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(nan.status().message().find("ckpt/buffer.bin: record 1: "), std::string::npos)
      << nan.status().message();
  EXPECT_NE(nan.status().message().find("reward"), std::string::npos) << nan.status().message();
  auto torn = ReadBufferRecords(std::string_view(bytes).substr(0, bytes.size() - 3), "b.bin");
  ASSERT_FALSE(torn.ok());
  EXPECT_NE(torn.status().message().find("b.bin"), std::string::npos);
}

TEST(TrainBatchTest, GenerationLimitOnlyWhenFilteringAndRoundsAreSpent) {
  // 3 rounds of 4 groups: 12 completions since the last step.
  EXPECT_TRUE(GenerationLimitReached(2, true, 3, 12, 4));
  EXPECT_FALSE(GenerationLimitReached(2, true, 3, 11, 4));
  EXPECT_FALSE(GenerationLimitReached(0, true, 3, 12, 4)) << "nothing to train on";
  EXPECT_FALSE(GenerationLimitReached(2, false, 3, 12, 4)) << "no filter: the batch fills";
  EXPECT_FALSE(GenerationLimitReached(2, true, 0, 1000, 4)) << "0 rounds: no limit";
}

}  // namespace
}  // namespace chainrl::learner
