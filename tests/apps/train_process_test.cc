// Whole runs with real processes and real sockets: `chainrl train` (launcher, learner, actors)
// end to end, an actor killed with SIGKILL mid-run, the learner killed and resumed from its
// checkpoint, peers sending garbage, and a paused learner holding its actors back.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <zmq.hpp>

#include <nlohmann/json.hpp>

#include "core/endpoints.h"
#include "core/wire.h"
#include "tests/apps/train_run.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using chainrl::testing::ReadJson;
using chainrl::testing::ReadText;
using chainrl::testing::StartTrain;
using chainrl::testing::StepEvents;
using chainrl::testing::WaitFor;

std::string Dir(const std::string& name) { return chainrl::testing::FreshDir("train", name); }

// A small but complete run: a random 1-layer model with the byte tokenizer, a short SFT warm-up,
// GRPO with 2 actors. The reward is easy to move (short responses; the warm-up data mixes long
// and short solutions), so a few steps show whether RL works at all.
std::string WriteConfig(const std::string& dir, const std::string& extra) {
  std::string text = R"(
[run]
name = "t"
seed = 3
total_steps = 12
log_level = "info"
[model]
path = ")" + dir + R"(/model"
[model.init]
enabled = true
tokenizer = "bytes"
layers = 1
hidden = 32
heads = 2
kv_heads = 1
intermediate = 64
max_position = 512
[data]
task = "arithmetic"
task_min_size = 1
task_max_size = 1
num_train_examples = 2000
num_eval_examples = 16
[sft]
steps = 20
batch_size = 16
lr = 3e-3
[rollout]
group_size = 8
prompts_per_step = 4
max_new_tokens = 48
[actors]
count = 2
credits = 2
heartbeat_interval_seconds = 0.2
heartbeat_timeout_seconds = 2.0
restart_backoff_seconds = 0.2
[learner]
threads = 1
lr = 1e-2
[algorithm]
name = "grpo"
loss_agg_mode = "token-mean"
kl_coef = 0.0
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 16, max_tokens = 48 }
)" + extra;
  const std::string path = dir + "/run.toml";
  std::ofstream(path) << text;
  return path;
}

// Waits until RUN_DIR/progress.json reports an RL step >= `step`.
bool WaitForStep(const std::string& run_dir, int64_t step, double seconds) {
  auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    json p = ReadJson(run_dir + "/progress.json");
    if (p.is_object() && p.value("phase", "") == "rl" && p.value("step", 0) >= step) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int64_t ResidentBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/statm");
  long long size = 0, resident = 0;
  in >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The run's books must balance: every trained group trained once, none lost, and the ledger's
// counts consistent with what was trained.
void ExpectConsistentSummary(const json& s, int64_t steps, int64_t per_step) {
  ASSERT_TRUE(s.is_object());
  for (const char* k :
       {"steps", "groups_dispatched", "groups_trained", "groups_duplicated", "groups_lost",
        "accuracy_after_sft", "accuracy_after_rl", "mean_length_peak", "mean_length_final",
        "wall_seconds", "actor_restarts", "rejected_messages", "tokens_trained"})
    EXPECT_TRUE(s.contains(k) && !s[k].is_null()) << "summary lacks " << k << "\n" << s.dump(1);
  EXPECT_EQ(s["steps"], steps);
  EXPECT_EQ(s["groups_trained"], steps * per_step);
  EXPECT_EQ(s["groups_duplicated"], 0);
  EXPECT_EQ(s["groups_lost"], 0);
  EXPECT_GE(s["groups_accepted"].get<int64_t>(),
            s["groups_trained"].get<int64_t>() + s["groups_buffered"].get<int64_t>());
  EXPECT_GE(s["groups_dispatched"].get<int64_t>(), s["groups_accepted"].get<int64_t>());
  EXPECT_GT(s["tokens_trained"].get<int64_t>(), 0);
}

TEST(TrainProcessTest, EndToEndRewardImprovesAndSummaryIsComplete) {
  const std::string dir = Dir("e2e");
  const std::string cfg = WriteConfig(dir, "");
  const std::string run = dir + "/run";
  // 20 steps, reward judged over 4-step windows. Which groups finish first depends on timing, so
  // the first batches differ from run to run; most runs climb from ~0.3 to 1.0 by step 12, but one
  // run under a loaded suite started on a different first batch, drifted to long responses (0.05 at
  // step 5) and only climbed back from step 11 (+0.17 over 3-step windows at step 16).
  constexpr int64_t kSteps = 20;
  pid_t pid = StartTrain(cfg, run, {"--set", "run.total_steps=" + std::to_string(kSteps)});
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, kSteps, 4);
  EXPECT_EQ(s["actor_restarts"], 0);
  // Samples whose tokens span policy versions (weights swapped in between decode steps) are
  // counted; how many depends on timing, so only the bound is checked here (the swap itself is
  // tested deterministically in EngineTest.WeightsSwapBetweenDecodeStepsWithoutRestartingTheBatch).
  EXPECT_LE(s["samples_multi_version"].get<int64_t>(), 8 * s["groups_accepted"].get<int64_t>());
  // Reward over the first steps vs the last: RL moves the policy toward what is rewarded.
  std::vector<double> rewards;
  for (const json& e : StepEvents(run)) rewards.push_back(e.value("reward", 0.0));
  ASSERT_EQ(rewards.size(), static_cast<size_t>(kSteps)) << "one step event per update";
  const double first = (rewards[0] + rewards[1] + rewards[2] + rewards[3]) / 4;
  const double last = (rewards[16] + rewards[17] + rewards[18] + rewards[19]) / 4;
  EXPECT_GT(last, first + 0.15) << "reward did not improve: first steps " << first << ", last "
                                << last;
  // The exported model is a Hugging Face directory that generate loads.
  ASSERT_TRUE(fs::exists(run + "/export/config.json"));
  ASSERT_TRUE(fs::exists(run + "/export/tokenizer.json"));
  std::string cmd = std::string(CHAINRL_BIN) + " generate --model " + run +
                    "/export --chat --prompt 'What is 2 + 3?' --max-new-tokens 8 > /dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  // Prometheus finds the run: launcher, learner and both actors in the file_sd targets.
  json targets = ReadJson(dir + "/prometheus/t.json");
  ASSERT_TRUE(targets.is_array());
  EXPECT_EQ(targets.size(), 4u) << targets.dump();
  // The launcher's output ends with the table.
  const std::string out = ReadText(run + ".out");
  EXPECT_NE(out.find("held-out accuracy"), std::string::npos) << out;
}

TEST(TrainProcessTest, ActorKilledMidRunIsRestartedAndNothingIsLostOrDuplicated) {
  const std::string dir = Dir("kill_actor");
  // Also length shaping: Kimi's length reward and DAPO's soft overlong punishment.
  const std::string cfg = WriteConfig(
      dir, "[length_shaping]\nmethods = [\"kimi\", \"dapo_overlong\"]\noverlong_buffer_len = 16\n");
  const std::string run = dir + "/run";
  // Segment rollout: 12 new tokens per sample per lease; the learner carries unfinished samples
  // into later leases, so a killed actor loses at most its current segments.
  pid_t pid = StartTrain(cfg, run, {"--set", "run.total_steps=14", "--set", "sft.steps=2",
                                    "--set", "rollout.segment_tokens=12"});
  ASSERT_TRUE(WaitForStep(run, 3, 120)) << ReadText(run + ".out");
  json procs = ReadJson(run + "/processes.json");
  const pid_t victim = procs["actors"]["actor-0"].get<pid_t>();
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 14, 4);
  EXPECT_GE(s["actor_restarts"].get<int>(), 1);
  EXPECT_GE(s["actors"]["actor-0"]["deaths"].get<int>(), 1);
  json procs_after = ReadJson(run + "/processes.json");
  EXPECT_NE(procs_after["actors"]["actor-0"].get<pid_t>(), victim) << "a new actor-0 was started";
  EXPECT_GT(s["segments_continued"].get<int64_t>(), 0) << s.dump();
  EXPECT_GE(s["segments_received"].get<int64_t>(), s["segments_continued"].get<int64_t>());
  // Shaping changed the rewards the advantages were computed from.
  int shaped_steps = 0;
  std::ifstream events(run + "/events.jsonl");
  for (std::string line; std::getline(events, line);) {
    json e = json::parse(line, nullptr, false);
    if (e.is_object() && e.value("event", "") == "step" &&
        std::abs(e.value("shaped_reward", 0.0) - e.value("reward", 0.0)) > 1e-9)
      ++shaped_steps;
  }
  EXPECT_GT(shaped_steps, 0);
}

TEST(TrainProcessTest, LearnerKilledResumesFromItsCheckpointAndActorsReconnect) {
  const std::string dir = Dir("kill_learner");
  const std::string cfg = WriteConfig(dir, "[checkpoint]\nevery = 2\nkeep = 2\n");
  const std::string run = dir + "/run";
  // Segments whose actor generation ends at an occupancy floor carry over the same way.
  pid_t pid =
      StartTrain(cfg, run,
                 {"--set", "run.total_steps=12", "--set", "sft.steps=2", "--set",
                  "rollout.segment_tokens=12", "--set", "rollout.segment_min_occupancy=0.75"});
  ASSERT_TRUE(WaitForStep(run, 5, 120)) << ReadText(run + ".out");
  json procs = ReadJson(run + "/processes.json");
  const pid_t learner = procs["learner"].get<pid_t>();
  const pid_t actor0 = procs["actors"]["actor-0"].get<pid_t>();
  ASSERT_EQ(kill(learner, SIGKILL), 0);
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 12, 4);
  EXPECT_EQ(s["learner_restarts"], 1);
  EXPECT_EQ(s["actor_restarts"], 0) << "actors reconnect by themselves";
  EXPECT_EQ(ReadJson(run + "/processes.json")["actors"]["actor-0"].get<pid_t>(), actor0);
  const std::string log = ReadText(run + "/logs/learner.log");
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  EXPECT_GT(s["segments_continued"].get<int64_t>(), 0) << s.dump();
  // Actors keep their engine across leases and the learner hands a continuation back to the
  // actor that generated its last segment: continuations under unchanged weights resume from the
  // KV kept in their slot instead of prefilling prompt and carried tokens again.
  int64_t resumed = 0, prefilled = 0;
  for (const char* actor : {"actor-0", "actor-1"}) {
    const std::string text = ReadText(run + "/logs/" + actor + ".log");
    const size_t at = text.find("segments continued here: ");
    if (at == std::string::npos) continue;
    long long r = 0, p = 0;
    ASSERT_EQ(
        std::sscanf(text.c_str() + at,
                    "segments continued here: %lld resumed from kept KV, %lld prefilled", &r, &p),
        2);
    resumed += r;
    prefilled += p;
  }
  EXPECT_GT(resumed, 0) << "prefilled again: " << prefilled;
}

// More credits than a step's groups (2 actors x 3 > 4): when the learner is killed, leases it had
// checkpointed were answered to it and their results died with it. The restarted learner hands
// those out again at the actors' first heartbeats (which list the leases each holds) instead of
// waiting out the 30-minute lease deadline; the run completes with nothing lost or duplicated.
TEST(TrainProcessTest, LeasesAnsweredToADeadLearnerAreHandedOutAgainAfterItsRestart) {
  const std::string dir = Dir("kill_learner_credits");
  // Checkpoints at steps 4 and 8, the kill after step 5: the leases checkpointed at step 4 that
  // made step 5 were answered to the learner that is killed.
  const std::string cfg = WriteConfig(dir, "[checkpoint]\nevery = 4\nkeep = 2\n");
  const std::string run = dir + "/run";
  pid_t pid = StartTrain(cfg, run,
                         {"--set", "run.total_steps=10", "--set", "sft.steps=2", "--set",
                          "actors.credits=3", "--set", "learner.lease_timeout_seconds=1800"});
  ASSERT_TRUE(WaitForStep(run, 1, 120)) << ReadText(run + ".out");
  const auto step1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitForStep(run, 5, 120)) << ReadText(run + ".out");
  const auto killed = std::chrono::steady_clock::now();
  const pid_t learner = ReadJson(run + "/processes.json")["learner"].get<pid_t>();
  ASSERT_EQ(kill(learner, SIGKILL), 0);
  // Far less than a lease deadline: a stall would time out here.
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  const auto end = std::chrono::steady_clock::now();
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 10, 4);
  // The figure the timing claim rests on (printed, not asserted: machines differ): the rest of
  // the run, restart included, against the same steps at the pace before the kill.
  const double pace = std::chrono::duration<double>(killed - step1).count() / 4;
  const double rest = std::chrono::duration<double>(end - killed).count();
  std::cout << "after the kill: " << rest << " s for the restart and steps 5-10; at the pace of "
            << "steps 1-5 (" << pace << " s a step) the 6 steps take " << 6 * pace
            << " s uninterrupted, so the restart (a new learner process, its checkpoint loaded, "
            << "the leases handed out again) cost " << rest - 6 * pace
            << " s; the lease deadline it did not wait for is 1800 s\n";
  EXPECT_EQ(s["learner_restarts"], 1);
  EXPECT_EQ(s["actor_restarts"], 0);
  const std::string log = ReadText(run + "/logs/learner.log");
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  size_t handed_out = 0;
  for (size_t at = log.find("restored from the checkpoint, is not held by");
       at != std::string::npos;
       at = log.find("restored from the checkpoint, is not held by", at + 1))
    ++handed_out;
  std::cout << handed_out << " restored leases handed out again after the restart\n";
  EXPECT_GT(handed_out, 0u) << log;
}

// Two learner ranks (distributed.learner_ranks = 2) through the SFT warm-up and RL with a KL
// reference and two mini-batches per step. Rank 1 is killed mid-run: the launcher stops rank 0 and
// restarts both from the latest checkpoint (rank 1 loads it too), and the run completes with its
// books balanced and both ranks holding identical parameters.
TEST(TrainProcessTest, LearnerRankKilledRestartsTheGroupFromItsCheckpoint) {
  const std::string dir = Dir("kill_rank");
  const std::string cfg =
      WriteConfig(dir, "[checkpoint]\nevery = 2\nkeep = 2\n[distributed]\nlearner_ranks = 2\n");
  const std::string run = dir + "/run";
  pid_t pid = StartTrain(cfg, run,
                         {"--set", "run.total_steps=12", "--set", "sft.steps=4", "--set",
                          "algorithm.kl_coef=0.01", "--set", "learner.mini_batches=2"});
  ASSERT_TRUE(WaitForStep(run, 5, 120)) << ReadText(run + ".out");
  json procs = ReadJson(run + "/processes.json");
  ASSERT_EQ(procs["learner_ranks"].size(), 2u) << procs.dump();
  EXPECT_EQ(procs["learner_ranks"][0], procs["learner"]);
  ASSERT_EQ(kill(procs["learner_ranks"][1].get<pid_t>(), SIGKILL), 0);
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 12, 4);
  EXPECT_EQ(s["learner_restarts"], 1);
  EXPECT_EQ(s["learner_ranks"], 2);
  EXPECT_EQ(s["ranks_parameters_identical"], true);
  const std::string out = ReadText(run + ".out");
  EXPECT_NE(out.find("learner rank 1 exited (signal Killed) while rank 0 ran"), std::string::npos)
      << out;
  const std::string rank1 = ReadText(run + "/logs/learner-rank1.log");
  EXPECT_NE(rank1.find("resumed from"), std::string::npos) << rank1;
  EXPECT_NE(rank1.find("parameters identical on every rank"), std::string::npos) << rank1;
}

// Raw ZeroMQ peers: random bytes, a frame of another schema version, an oversized frame, a valid
// header with a body that does not parse, a trajectory with a token id outside the vocabulary.
// Each is rejected and counted; the run completes.
TEST(TrainProcessTest, GarbageFromPeersIsRejectedCountedAndSurvived) {
  const std::string dir = Dir("garbage");
  // Also a curriculum stage: from step 4 on, responses are capped at 40 tokens.
  const std::string cfg = WriteConfig(dir,
                                      "[[curriculum.stages]]\nname = \"short\"\nstart_step = 4\n"
                                      "overrides = { \"rollout.max_new_tokens\" = 40 }\n");
  const std::string run = dir + "/run";
  // 40 steps: the run must outlast the garbage (a step of this model takes tens of ms).
  pid_t pid = StartTrain(cfg, run, {"--set", "run.total_steps=40", "--set", "sft.steps=2"});
  ASSERT_TRUE(WaitForStep(run, 1, 120)) << ReadText(run + ".out");
  json ep = ReadJson(run + "/endpoints.json");
  zmq::context_t ctx;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer), push(ctx, zmq::socket_type::push);
  dealer.set(zmq::sockopt::linger, 0);
  push.set(zmq::sockopt::linger, 0);
  dealer.connect(ep["work"].get<std::string>());
  push.connect(ep["trajectories"].get<std::string>());
  int sent = 0;
  // A well-formed trajectory whose token id 200000 is inside the wire's limit (2^18) but outside
  // the policy's vocabulary: refused at the socket, never a crash at the next update. (Sent first:
  // the learner logs the first 20 rejections only, and ZeroMQ may drop this connection after the
  // oversized frame.)
  chainrl::wire::Envelope rogue = chainrl::wire::MakeEnvelope("rogue");
  auto* tr = rogue.mutable_trajectory();
  tr->set_prompt_group_id(0);
  tr->set_lease_id(1);
  tr->set_actor_id("rogue");
  auto* smp = tr->add_samples();
  smp->set_finish_reason(chainrl::wire::FINISH_STOP);
  smp->mutable_completion()->add_token_ids(7);
  smp->mutable_completion()->add_token_ids(200000);
  smp->mutable_completion()->add_behaviour_logprobs(-0.5f);
  smp->mutable_completion()->add_behaviour_logprobs(-0.5f);
  const std::vector<int64_t> versions = {0, 0};
  *smp->mutable_completion()->mutable_policy_versions() =
      chainrl::wire::CompressPolicyVersions(versions);
  auto rogue_frame = chainrl::wire::EncodeFrame(rogue);
  ASSERT_TRUE(rogue_frame.ok());
  push.send(zmq::buffer(*rogue_frame), zmq::send_flags::none);
  ++sent;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i, ++sent) {  // random bytes
    std::string junk(1 + rng() % 200, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    (i % 2 ? dealer : push).send(zmq::buffer(junk), zmq::send_flags::none);
  }
  chainrl::wire::Envelope env = chainrl::wire::MakeEnvelope("intruder");
  env.mutable_heartbeat()->set_policy_version(1);
  auto frame = chainrl::wire::EncodeFrame(env);
  ASSERT_TRUE(frame.ok());
  std::string wrong_version = *frame;
  wrong_version[4] = static_cast<char>(wrong_version[4] + 7);  // the u16 schema version
  dealer.send(zmq::buffer(wrong_version), zmq::send_flags::none);
  ++sent;
  std::string truncated_body = frame->substr(0, 8) + std::string(40, '\xff');
  push.send(zmq::buffer(truncated_body), zmq::send_flags::none);
  ++sent;
  std::string huge(300u << 20, 'x');  // beyond the frame limit: refused before parsing
  push.send(zmq::buffer(huge), zmq::send_flags::none);
  ++sent;
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  const std::string learner_log = ReadText(run + "/logs/learner.log");
  EXPECT_NE(learner_log.find("200000 is outside [0, "), std::string::npos) << learner_log;
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 40, 4);
  EXPECT_GE(s["rejected_messages"].get<int64_t>(), sent - 1)
      << "an oversized frame may be dropped by ZeroMQ's own size limit before we see it";
  // The stage switched at step 4 and later work was capped by it.
  bool switched = false;
  std::ifstream events(run + "/events.jsonl");
  for (std::string line; std::getline(events, line);) {
    json e = json::parse(line, nullptr, false);
    if (e.is_object() && e.value("event", "") == "stage" && e.value("name", "") == "short") {
      EXPECT_EQ(e.value("step", -1), 4);
      switched = true;
    }
  }
  EXPECT_TRUE(switched);
}

// A run over TCP with CURVE keys: the actors authenticate with their key and train under its name;
// peers without a key, with a key the learner does not know, or aiming at another learner key are
// refused before a single message, counted, and receive nothing (no work, no weights). An actor on
// a "fresh host" (a directory with nothing of the run) given only the address and its keys fetches
// the run's config and model files from the learner and generates.
TEST(TrainProcessTest, CurveKeysAdmitOnlyAuthorizedActors) {
  const std::string dir = Dir("curve");
  for (const char* who : {"learner", "host-a", "host-b"})
    ASSERT_EQ(
        chainrl::testing::Chainrl(std::string("keys ") + who + " --dir " + dir + "/keys").code, 0);
  std::ofstream(dir + "/keys/allowed")
      << ReadText(dir + "/keys/host-a.pub") << ReadText(dir + "/keys/host-b.pub");
  auto port = chainrl::PickFreePort();
  ASSERT_TRUE(port.ok());
  const std::string bind = "tcp://127.0.0.1:" + std::to_string(*port);
  const std::string keys = dir + "/keys/";
  const std::string cfg =
      WriteConfig(dir, "[security]\nlearner_secret_key_file = \"" + keys + "learner.key\"\n" +
                           "authorized_keys_file = \"" + keys + "allowed\"\n" +
                           "actor_secret_key_file = \"" + keys + "host-a.key\"\n");
  const std::string run = dir + "/run";
  pid_t pid = StartTrain(
      cfg, run,
      {"--set", "run.total_steps=40", "--set", "sft.steps=2", "--set", "learner.bind=" + bind});
  ASSERT_TRUE(WaitForStep(run, 1, 120)) << ReadText(run + ".out");
  // The fresh host: no config, no model, only its key pair and the learner's public key.
  const std::string fresh = dir + "/fresh-host";
  pid_t fresh_pid = fork();
  if (fresh_pid == 0) {
    if (std::freopen((fresh + ".out").c_str(), "w", stdout) == nullptr) _exit(127);
    dup2(1, 2);
    execl(CHAINRL_BIN, CHAINRL_BIN, "actor", "--connect", bind.c_str(), "--index", "5",
          "--fetch-run", fresh.c_str(), "--key", (keys + "host-b.key").c_str(), "--learner-key",
          (keys + "learner.pub").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string learner_pub = ReadText(dir + "/keys/learner.pub").substr(0, 40);
  char stranger_pub[41] = {0}, stranger_sec[41] = {0}, other_pub[41] = {0}, other_sec[41] = {0};
  ASSERT_EQ(zmq_curve_keypair(stranger_pub, stranger_sec), 0);
  ASSERT_EQ(zmq_curve_keypair(other_pub, other_sec), 0);
  zmq::context_t ctx;
  // 0: no key; 1: a key not authorized; 2: a key aimed at another learner key.
  std::vector<std::unique_ptr<zmq::socket_t>> peers;
  const std::string work = bind, weights = "tcp://127.0.0.1:" + std::to_string(*port + 2);
  for (int i = 0; i < 3; ++i)
    for (const std::string& ep : {work, weights}) {
      auto s = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
      s->set(zmq::sockopt::linger, 0);
      if (i > 0) {
        s->set(zmq::sockopt::curve_serverkey, i == 1 ? learner_pub : std::string(other_pub));
        s->set(zmq::sockopt::curve_publickey, stranger_pub);
        s->set(zmq::sockopt::curve_secretkey, stranger_sec);
      }
      s->connect(ep);
      chainrl::wire::Envelope join = chainrl::wire::MakeEnvelope("actor-0");  // an actor's name
      join.mutable_join()->set_host("intruder");
      join.mutable_join()->set_max_credits(4);
      auto frame = chainrl::wire::EncodeFrame(join);
      ASSERT_TRUE(frame.ok());
      s->send(zmq::buffer(*frame), zmq::send_flags::dontwait);
      peers.push_back(std::move(s));
    }
  // Nothing comes back to any of them while the run goes on: no lease, no announcement.
  std::vector<zmq::pollitem_t> items;
  for (auto& s : peers) items.push_back({static_cast<void*>(*s), 0, ZMQ_POLLIN, 0});
  const auto t0 = Clock::now();
  int heard = 0;
  while (Clock::now() - t0 < std::chrono::seconds(3)) {
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    for (auto& it : items) heard += (it.revents & ZMQ_POLLIN) ? 1 : 0;
  }
  EXPECT_EQ(heard, 0);
  peers.clear();
  // The fresh actor joins under its key's name and generates for this run.
  bool fresh_joined = false;
  for (auto t = Clock::now(); !fresh_joined && Clock::now() - t < std::chrono::seconds(90);
       std::this_thread::sleep_for(std::chrono::milliseconds(100)))
    fresh_joined =
        ReadText(run + "/logs/learner.log").find("host-b/actor-5 joined") != std::string::npos;
  EXPECT_TRUE(fresh_joined) << ReadText(fresh + ".out");
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  kill(fresh_pid, SIGINT);
  EXPECT_EQ(WaitFor(fresh_pid, 60), 0) << ReadText(fresh + ".out");
  const std::string fresh_log = ReadText(fresh + ".out");
  EXPECT_NE(fresh_log.find("model files written to " + fresh), std::string::npos) << fresh_log;
  EXPECT_NE(fresh_log.find("loaded; generating"), std::string::npos) << fresh_log;
  for (const char* f : {"run.toml", "model/config.json", "model/tokenizer.json"})
    EXPECT_TRUE(fs::exists(fresh + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(fresh + "/model/model.safetensors"));
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 40, 4);
  EXPECT_EQ(s["rejected_messages"], 0) << "no stranger's message reached a socket";
  EXPECT_GE(s["peers_refused"].get<int64_t>(), 6) << s.dump(1);
  const std::string log = ReadText(run + "/logs/learner.log");
  EXPECT_NE(log.find("(CURVE; 2 authorized keys)"), std::string::npos) << log;
  EXPECT_NE(log.find("host-a/actor-0 joined"), std::string::npos) << log;
  EXPECT_NE(log.find("host-a/actor-1 joined"), std::string::npos) << log;
  EXPECT_NE(log.find("refused a peer (unknown_key"), std::string::npos) << log;
  EXPECT_NE(log.find("refused a peer (handshake"), std::string::npos) << log;
  EXPECT_EQ(log.find("intruder"), std::string::npos) << "a stranger's join was read";
}

// configs/quickstart.toml itself, shortened by overrides only: the command README runs.
// A safetensors file of float32 tensors [rows, hidden], written by hand (the format is 8 bytes of
// header length, a JSON header, then the data).
void WriteEmbeddingsFile(const std::string& path, int tensors, int rows, int hidden) {
  std::string header = "{";
  const size_t per = static_cast<size_t>(rows) * static_cast<size_t>(hidden) * 4;
  for (int i = 0; i < tensors; ++i)
    header += (i ? "," : "") + std::string("\"e") + std::to_string(i) +
              "\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(rows) + "," +
              std::to_string(hidden) + "],\"data_offsets\":[" + std::to_string(i * per) + "," +
              std::to_string((i + 1) * per) + "]}";
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  for (int i = 0; i < tensors; ++i)
    for (int k = 0; k < rows * hidden; ++k) {
      const float v = 0.5f * std::sin(0.37f * static_cast<float>(k) + static_cast<float>(i));
      out.write(reinterpret_cast<const char*>(&v), 4);
    }
}

// JSONL data whose prompts carry precomputed embeddings (spliced at the "@" token): the learner
// and the actors each load a prompt's tensor once and reuse it for the G samples, the later
// segments and the learner's prefill; a placeholder that is not one token stops the run, named.
TEST(TrainProcessTest, PromptEmbeddingsAreCachedByActorsAndTheLearner) {
  const std::string dir = Dir("embeddings");
  constexpr int kPrompts = 12;
  WriteEmbeddingsFile(dir + "/emb.safetensors", kPrompts, 2, 32);
  {
    std::ofstream train(dir + "/train.jsonl"), eval(dir + "/eval.jsonl");
    for (int i = 0; i < kPrompts; ++i)
      train << "{\"id\": \"p" << i << "\", \"prompt\": \"Describe @ and @ (" << i
            << ").\", \"answer\": \"" << i << "\", \"embeddings\": \"emb.safetensors#e" << i
            << "\"}\n";
    for (int i = 0; i < 4; ++i)
      eval << "{\"id\": \"q" << i << "\", \"prompt\": \"Describe @ and @ (" << i
           << ").\", \"answer\": \"" << i << "\", \"embeddings\": \"emb.safetensors#e" << i
           << "\"}\n";
  }
  const std::string cfg = WriteConfig(dir, "");
  auto args = [&](const std::string& placeholder) {
    return std::vector<std::string>{
        "--set", "run.total_steps=4", "--set", "sft.steps=0", "--set", "data.source=\"jsonl\"",
        "--set", "data.train_files=[\"" + dir + "/train.jsonl\"]", "--set",
        "data.eval_files=[\"" + dir + "/eval.jsonl\"]", "--set",
        "data.embedding_placeholder=\"" + placeholder + "\"", "--set", "rollout.segment_tokens=16"};
  };
  const std::string run = dir + "/run";
  ASSERT_EQ(WaitFor(StartTrain(cfg, run, args("@")), 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 4, 4);
  // The learner: a lookup per accepted group and per evaluated prompt, one load per distinct
  // prompt.
  const json& lc = s["prompt_embedding_cache"];
  ASSERT_TRUE(lc.is_object()) << s.dump(1);
  EXPECT_GE(lc["hits"].get<int64_t>() + lc["misses"].get<int64_t>(),
            s["groups_accepted"].get<int64_t>());
  EXPECT_GT(lc["misses"].get<int64_t>(), 0);
  EXPECT_LE(lc["misses"].get<int64_t>(), kPrompts);
  EXPECT_EQ(lc["bytes"].get<int64_t>(), lc["misses"].get<int64_t>() * 2 * 32 * 4);
  // The actors: a prompt's G samples share one lookup; later segments of a group hit the cache.
  int64_t hits = 0, misses = 0;
  for (const char* a : {"actor-0", "actor-1"}) {
    const std::string log = ReadText(run + "/logs/" + a + ".log");
    const size_t at = log.find("prompt-embedding cache: ");
    ASSERT_NE(at, std::string::npos) << log;
    std::stringstream in(log.substr(at + 24));
    int64_t h = 0, m = 0;
    std::string word;
    in >> h >> word >> m;
    hits += h;
    misses += m;
  }
  EXPECT_GT(misses, 0);
  EXPECT_LE(misses, 2 * kPrompts) << "at most one load per prompt and actor";
  EXPECT_GT(hits, 0) << "later segments reuse the cached embeddings";
  EXPECT_GT(s["segments_continued"].get<int64_t>(), 0);
  // `chainrl eval` splices them too.
  const std::string eval_cmd = std::string(CHAINRL_BIN) + " eval --model " + run +
                               "/export --data " + dir + "/eval.jsonl --set " +
                               "'data.embedding_placeholder=\"@\"' > " + dir + "/eval.out 2>&1";
  EXPECT_EQ(std::system(eval_cmd.c_str()), 0) << ReadText(dir + "/eval.out");
  const std::string no_placeholder = std::string(CHAINRL_BIN) + " eval --model " + run +
                                     "/export --data " + dir + "/eval.jsonl > " + dir +
                                     "/eval2.out 2>&1";
  EXPECT_NE(std::system(no_placeholder.c_str()), 0);
  EXPECT_NE(ReadText(dir + "/eval2.out").find("data.embedding_placeholder"), std::string::npos)
      << ReadText(dir + "/eval2.out");

  const std::string bad = dir + "/bad";
  EXPECT_NE(WaitFor(StartTrain(cfg, bad, args("@@")), 120), 0);
  const std::string log = ReadText(bad + "/logs/learner.log") + ReadText(bad + ".out");
  EXPECT_NE(log.find("data.embedding_placeholder: '@@' is not one token"), std::string::npos)
      << log;
}

TEST(TrainProcessTest, QuickstartConfigRunsShortened) {
  const std::string dir = Dir("quickstart");
  const std::string run = dir + "/run";
  pid_t pid = StartTrain(std::string(CHAINRL_SOURCE_DIR) + "/configs/quickstart.toml", run,
                         {"--set", "model.path=\"" + dir + "/model\"", "--set", "sft.steps=3",
                          "--set", "sft.batch_size=8", "--set", "run.total_steps=3", "--set",
                          "data.num_eval_examples=8", "--set", "data.num_train_examples=500",
                          "--set", "rollout.prompts_per_step=4", "--set",
                          "rollout.max_new_tokens=32", "--set", "curriculum.budget_start=32",
                          "--set", "curriculum.budget_end=16", "--set",
                          "metrics.progress_interval_seconds=0"});
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 3, 4);  // 3 steps: the cosine schedule needs more than its warm-up
  EXPECT_EQ(s["sft_steps"], 3);
  EXPECT_TRUE(fs::exists(run + "/export/model.safetensors"));
}

// The LoRA quickstart shortened: the quickstart's SFT warm-up alone (run.total_steps = 0: no RL
// step, no actor started, the SFT'd model exported), then configs/quickstart-lora.toml on it with
// the learner killed mid-run: it resumes its adapters and their optimiser state from its
// checkpoint, the actors take adapters alone, and the export holds the merged model and the PEFT
// adapter directory.
TEST(TrainProcessTest, LoraQuickstartOnAnSftOnlyBaseSurvivesALearnerKill) {
  const std::string dir = Dir("lora");
  const std::string sft = dir + "/sft";
  const std::vector<std::string> small = {
      "--set", "data.num_eval_examples=8",           "--set", "data.num_train_examples=500",
      "--set", "rollout.prompts_per_step=4",         "--set", "rollout.max_new_tokens=32",
      "--set", "curriculum.budget_start=32",         "--set", "curriculum.budget_end=16",
      "--set", "metrics.progress_interval_seconds=0"};
  std::vector<std::string> sets = {"--set", "model.path=\"" + dir + "/model\"",
                                   "--set", "sft.steps=3",
                                   "--set", "sft.batch_size=8",
                                   "--set", "run.total_steps=0"};
  sets.insert(sets.end(), small.begin(), small.end());
  pid_t pid = StartTrain(std::string(CHAINRL_SOURCE_DIR) + "/configs/quickstart.toml", sft, sets);
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(sft + ".out");
  json s = ReadJson(sft + "/summary.json");
  EXPECT_EQ(s["completed"], true);
  EXPECT_EQ(s["steps"], 0);
  EXPECT_EQ(s["sft_steps"], 3);
  EXPECT_FALSE(s["accuracy_after_sft"].is_null()) << s.dump();
  EXPECT_TRUE(fs::exists(sft + "/export/model.safetensors"));
  EXPECT_FALSE(fs::exists(sft + "/logs/actor-0.log")) << "an SFT-only run started actors";

  const std::string run = dir + "/run";
  sets = {"--set", "model.path=\"" + sft + "/export\"",
          "--set", "run.total_steps=8",
          "--set", "checkpoint.every=2",
          "--set", "learner.warmup_steps=1"};
  sets.insert(sets.end(), small.begin(), small.end());
  pid = StartTrain(std::string(CHAINRL_SOURCE_DIR) + "/configs/quickstart-lora.toml", run, sets);
  ASSERT_TRUE(WaitForStep(run, 4, 180)) << ReadText(run + ".out");
  ASSERT_EQ(kill(ReadJson(run + "/processes.json")["learner"].get<pid_t>(), SIGKILL), 0);
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 8, 4);
  EXPECT_EQ(s["learner_restarts"], 1);
  const std::string log = ReadText(run + "/logs/learner.log");
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  EXPECT_NE(log.find("LoRA rank 16 on 7 projection(s) per layer"), std::string::npos) << log;
  EXPECT_NE(ReadText(run + "/logs/actor-0.log").find("taking the learner's adapters"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(run + "/export/model.safetensors"));
  EXPECT_TRUE(fs::exists(run + "/export/adapter/adapter_model.safetensors"));
  const json adapter = ReadJson(run + "/export/adapter/adapter_config.json");
  EXPECT_EQ(adapter["r"], 16);
  EXPECT_EQ(adapter["base_model_name_or_path"], fs::absolute(sft + "/export").string());
  // The checkpoints hold the adapters beside the frozen base.
  bool adapters_checkpointed = false;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints"))
    adapters_checkpointed |= fs::exists(e.path() / "adapter_model.safetensors");
  EXPECT_TRUE(adapters_checkpointed);
}

TEST(TrainProcessTest, PausedLearnerHoldsActorsBackWithFlatMemory) {
  const std::string dir = Dir("pause");
  const std::string cfg = WriteConfig(dir, "");
  const std::string run = dir + "/run";
  pid_t pid = StartTrain(cfg, run,
                         {"--set", "run.total_steps=10", "--set", "sft.steps=2", "--set",
                          "actors.heartbeat_timeout_seconds=30"});
  ASSERT_TRUE(WaitForStep(run, 2, 120)) << ReadText(run + ".out");
  json procs = ReadJson(run + "/processes.json");
  const pid_t learner = procs["learner"].get<pid_t>();
  const pid_t actor = procs["actors"]["actor-0"].get<pid_t>();
  ASSERT_EQ(kill(learner, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // queues fill up
  const int64_t rss0 = ResidentBytes(actor);
  int64_t rss_max = rss0;
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    rss_max = std::max(rss_max, ResidentBytes(actor));
  }
  const json p = ReadJson(run + "/progress.json");
  ASSERT_EQ(kill(learner, SIGCONT), 0);
  EXPECT_LT(rss_max - rss0, 16 << 20) << "actor memory grew from " << rss0 << " to " << rss_max;
  ASSERT_EQ(WaitFor(pid, 240), 0) << ReadText(run + ".out");
  json s = ReadJson(run + "/summary.json");
  ExpectConsistentSummary(s, 10, 4);
  EXPECT_EQ(s["actor_restarts"], 0);
  EXPECT_GT(s["steps"].get<int64_t>(), p.value("step", 0));
}

}  // namespace
