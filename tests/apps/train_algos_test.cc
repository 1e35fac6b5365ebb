// A real `chainrl train` run (launcher, learner, actors) with the shaping and curriculum methods
// the learner process applies: LASER-D targets adapting and checkpointed, difficulty soft
// weighting, DMMPT, difficulty-bucket sampling, DAPO dynamic sampling capped by
// max_num_gen_batches, and a curriculum stage that changes the optimiser's learning rate and the
// bucket weights.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/endpoints.h"
#include "tests/apps/train_run.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

using chainrl::testing::ReadJson;
using chainrl::testing::ReadText;
using chainrl::testing::StepEvents;

// `chainrl train CONFIG --run-dir DIR`; the exit code, or -1 after `seconds`.
int Train(const std::string& config, const std::string& run_dir, double seconds,
          const std::vector<std::string>& extra = {}) {
  return chainrl::testing::WaitFor(chainrl::testing::StartTrain(config, run_dir, extra), seconds);
}

// A fresh, empty temporary directory for one test.
fs::path FreshDir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / (name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// [run] and [model] of a run whose 1-layer byte-level model is created on the fly in dir/model.
// `model_keys` go under [model].
std::string TinyModelToml(const fs::path& dir, const std::string& name, int seed, int steps,
                          int max_position, const std::string& model_keys = "") {
  return "[run]\nname = \"" + name + "\"\nseed = " + std::to_string(seed) +
         "\ntotal_steps = " + std::to_string(steps) + "\n[model]\npath = \"" +
         (dir / "model").string() + "\"\n" + model_keys + R"([model.init]
enabled = true
tokenizer = "bytes"
layers = 1
hidden = 32
heads = 2
kv_heads = 1
intermediate = 64
max_position = )" + std::to_string(max_position) +
         "\n";
}

// The config of a small `chainrl train` run: that model, one-digit arithmetic, groups of 4 from 4
// prompts per step, 2 actors, learner lr `lr`. `rest` (algorithm, metrics, rewards) follows
// [learner].
std::string TinyRunConfig(const fs::path& dir, const std::string& name, int seed, int steps,
                          int max_new_tokens, const std::string& model_keys,
                          const std::string& rest, const std::string& lr = "1e-2") {
  return TinyModelToml(dir, name, seed, steps, 512, model_keys) + R"([data]
task = "arithmetic"
task_min_size = 1
task_max_size = 1
num_train_examples = 200
num_eval_examples = 8
[rollout]
group_size = 4
prompts_per_step = 4
max_new_tokens = )" + std::to_string(max_new_tokens) +
         R"(
[actors]
count = 2
[learner]
threads = 1
lr = )" + lr + "\n" + rest;
}

TEST(TrainAlgosTest, ShapingCurriculumAndMaskingAreAppliedByTheProcess) {
  const fs::path dir = FreshDir("chainrl_algos");
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyModelToml(dir, "algos", 5, 8, 512) + R"([data]
task = "arithmetic"
task_min_size = 1
task_max_size = 2
num_train_examples = 500
num_eval_examples = 8
difficulty_buckets = ["d1", "d2"]
bucket_weights = [0.0, 1.0]
[sft]
steps = 10
batch_size = 16
lr = 3e-3
[rollout]
group_size = 4
prompts_per_step = 4
max_new_tokens = 48
[actors]
count = 2
credits = 2
heartbeat_interval_seconds = 0.2
heartbeat_timeout_seconds = 5.0
[learner]
threads = 1
lr = 1e-2
[algorithm]
name = "grpo"
loss_agg_mode = "token-mean"
kl_coef = 0.0
dynamic_sampling = true
max_num_gen_batches = 1
mastered_token_mask = true
mastered_prob_threshold = 0.0
mastered_entropy_threshold = 1000.0
[length_shaping]
methods = ["laser_d"]
laser_target_tokens = 20
laser_d_update_every = 2
[curriculum]
soft_weighting = "easy"
[[curriculum.stages]]
name = "later"
start_step = 3
overrides = { "learner.lr" = 2e-3, "data.bucket_weights" = [1.0, 0.0] }
[checkpoint]
every = 2
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 16, max_tokens = 48 }
)";
  const std::string run = (dir / "run").string();
  ASSERT_EQ(Train(config, run, 240), 0) << ReadText(run + ".out");
  const json s = ReadJson(run + "/summary.json");
  ASSERT_TRUE(s.is_object()) << ReadText(run + ".out");
  EXPECT_EQ(s["steps"], 8);

  std::vector<json> steps;
  std::ifstream events(run + "/events.jsonl");
  for (std::string line; std::getline(events, line);) {
    json e = json::parse(line, nullptr, false);
    if (e.is_object() && e.value("event", "") == "step") steps.push_back(e);
  }
  ASSERT_EQ(steps.size(), 8u);
  int64_t trained = 0, short_steps = 0, d1_after_stage = 0;
  bool shaped_differs = false;
  std::vector<int64_t> targets_before;
  for (const json& h : steps) {
    const int64_t step = h["step"].get<int64_t>();  // 1-based: the update just made
    SCOPED_TRACE("step " + std::to_string(step) + ": " + h.dump());
    // Dynamic sampling capped at one generation round: a step trains on what it has.
    const int64_t groups = h["groups"].get<int64_t>();
    EXPECT_GE(groups, 1);
    EXPECT_LE(groups, 4);
    trained += groups;
    if (groups < 4) {
      EXPECT_TRUE(h.value("gen_limit_reached", false));
      EXPECT_GE(h["generated_groups"].get<int64_t>(), 4);
      ++short_steps;
    }
    // LASER-D rewards: +1 (+0.5 within the target) correct, −0.5 wrong but ended, −1 truncated.
    const double shaped = h["shaped_reward"].get<double>(), reward = h["reward"].get<double>();
    EXPECT_GE(shaped, -1.0 - 1e-9);
    EXPECT_LE(shaped, 1.5 + 1e-9);
    if (std::abs(shaped - reward) > 1e-6) shaped_differs = true;
    // Targets: 20 until the first monitor pass (before the 3rd update), then from the grid
    // 3, 6, ..., 48 (max_new_tokens / 16 spacing) or the longest monitor response (≤ 48).
    ASSERT_TRUE(h.contains("laser_d_targets"));
    const auto t = h["laser_d_targets"].get<std::vector<int64_t>>();
    ASSERT_EQ(t.size(), 3u);
    if (step <= 2) {
      EXPECT_EQ(t, (std::vector<int64_t>{20, 20, 20}));
    }
    EXPECT_EQ(h.value("laser_d_updated", false), step == 3 || step == 5 || step == 7);
    if (step == 3) {
      EXPECT_NE(t, (std::vector<int64_t>{20, 20, 20}));
    }
    for (int64_t v : t) {
      EXPECT_GE(v, 1);
      EXPECT_LE(v, 48);
    }
    // Soft weighting ("easy"): each group's weight is in [0, 1].
    EXPECT_GE(h["soft_weight_mean"].get<double>(), 0.0);
    EXPECT_LE(h["soft_weight_mean"].get<double>(), 1.0);
    // DMMPT with τ = 0 and σ = 1000: every token of every correct sample leaves the loss.
    const int64_t masked = h["mastered_masked_tokens"].get<int64_t>();
    if (h["accuracy"].get<double>() == 0.0) {
      EXPECT_EQ(masked, 0);
    }
    if (h["accuracy"].get<double>() > 0.0) {
      EXPECT_GT(masked, 0);
    }
    if (h["accuracy"].get<double>() < 1.0) {
      EXPECT_LT(masked, h["tokens"].get<int64_t>());
    }
    // The stage from step 3 on lowers the optimiser's learning rate from 1e-2 to 2e-3.
    EXPECT_NEAR(h["lr"].get<double>(), step <= 3 ? 1e-2 : 2e-3, 1e-12);
    // Bucket weights [0, 1]: only two-digit problems until the stage's [1, 0] takes over
    // (groups drawn ahead of the switch may still be d2; at most 2 steps' worth are).
    const json& d = h["difficulty"];
    EXPECT_EQ(d.value("d1", 0) + d.value("d2", 0), groups);
    if (step <= 3) {
      EXPECT_EQ(d.value("d1", 0), 0);
    }
    if (step > 3) d1_after_stage += d.value("d1", 0);
  }
  EXPECT_TRUE(shaped_differs);
  EXPECT_GT(d1_after_stage, 0);
  EXPECT_EQ(s["steps_at_gen_limit"].get<int64_t>(), short_steps);
  EXPECT_EQ(s["groups_trained"].get<int64_t>(), trained);
  // The final checkpoint carries LASER-D's targets as the last step used them.
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints"))
    if (e.path().filename().string().rfind("step-", 0) == 0) ckpts.push_back(e.path().string());
  ASSERT_FALSE(ckpts.empty());
  std::sort(ckpts.begin(), ckpts.end(), [](const std::string& a, const std::string& b) {
    return std::stoll(fs::path(a).filename().string().substr(5)) <
           std::stoll(fs::path(b).filename().string().substr(5));
  });
  const json state = ReadJson(ckpts.back() + "/state.json")["state"];
  ASSERT_TRUE(state.is_object());
  EXPECT_EQ(state["shaping"]["laser_d"]["targets"], steps.back()["laser_d_targets"]);
  EXPECT_EQ(state["shaping"]["laser_d"]["num_updates"], 3);
  EXPECT_TRUE(state["difficulty_buckets"].is_object());
  // Resumed for 4 more steps: LASER-D's targets and pending monitor groups come back from the
  // checkpoint, so the pass at step index 8 runs and the count of passes goes on (5, not 1).
  ASSERT_EQ(Train(config, run, 240,
                  {"--set", "run.total_steps=12", "--set", "checkpoint.resume=\"latest\""}),
            0)
      << ReadText(run + ".out");
  std::string last;
  int64_t last_step = -1;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && std::stoll(name.substr(5)) > last_step) {
      last_step = std::stoll(name.substr(5));
      last = e.path().string();
    }
  }
  const json resumed = ReadJson(last + "/state.json")["state"];
  ASSERT_TRUE(resumed.is_object());
  EXPECT_EQ(resumed["step"], 12);
  EXPECT_EQ(resumed["shaping"]["laser_d"]["num_updates"], 5);
  const json& hist = resumed["history"];
  int rl_steps = 0;
  for (const json& h : hist) {
    if (h.value("phase", "") != "rl") continue;
    ++rl_steps;
    if (h["step"] == 9) {
      EXPECT_TRUE(h.value("laser_d_updated", false)) << h.dump();
    }
    if (h["step"].get<int64_t>() > 8) {
      EXPECT_NEAR(h["lr"].get<double>(), 2e-3, 1e-12);  // still the stage's rate
    }
  }
  EXPECT_EQ(rl_steps, 12);
  fs::remove_all(dir);
}

// The offline DPO run of the tests below: 12 consistent prompt/chosen/rejected pairs, 4 per step,
// 6 steps, checkpoints every 3; `extra` is appended. Returns the config's path.
std::string WriteOfflineDpoRun(const fs::path& dir, const std::string& extra = "") {
  {
    std::ofstream pairs(dir / "pairs.jsonl");
    for (int i = 0; i < 12; ++i)
      pairs << json({{"prompt", "What is " + std::to_string(i) + " + 1?"},
                     {"chosen", std::to_string(i + 1)},
                     {"rejected", "I do not know, maybe " + std::to_string(i + 7)}})
                   .dump()
            << "\n";
  }
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyModelToml(dir, "dpo", 1, 6, 256) + R"([data]
source = "jsonl"
train_files = [")" + (dir / "pairs.jsonl").string() +
                               R"("]
num_eval_examples = 0
[rollout]
prompts_per_step = 4
[learner]
threads = 1
lr = 1e-2
[algorithm]
name = "dpo"
beta = 0.5
[checkpoint]
every = 3
[metrics]
progress_interval_seconds = 0
)" + extra;
  return config;
}

// Offline DPO: prompt/chosen/rejected JSONL trained by the learner alone. At the first step the
// policy is its own reference, so every pair's h is 0 and the loss is exactly log 2; training
// on consistent preferences then opens a positive implicit-reward margin.
TEST(TrainAlgosTest, OfflineDpoTrainsFromPairsWithoutActors) {
  const fs::path dir = FreshDir("chainrl_dpo");
  const std::string config = WriteOfflineDpoRun(dir);
  const std::string run = (dir / "run").string();
  ASSERT_EQ(Train(config, run, 120), 0) << ReadText(run + ".out");
  // No [[rewards]] and no actors are needed: the launcher starts none.
  EXPECT_NE(ReadText(run + ".out").find("no actors are started"), std::string::npos)
      << ReadText(run + ".out");
  EXPECT_TRUE(ReadJson(run + "/processes.json")["actors"].empty());
  const json s = ReadJson(run + "/summary.json");
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["steps"], 6);
  const std::vector<json> steps = StepEvents(run);
  ASSERT_EQ(steps.size(), 6u);
  EXPECT_NEAR(steps[0]["loss"].get<double>(), std::log(2.0), 1e-5);
  EXPECT_NEAR(steps[0]["reward_margin"].get<double>(), 0.0, 1e-5);
  for (const json& h : steps) {
    EXPECT_EQ(h["pairs"], 4);
    EXPECT_EQ(h["phase"], "preference");
  }
  EXPECT_GT(steps.back()["reward_margin"].get<double>(), 0.05) << steps.back().dump();
  EXPECT_LT(steps.back()["loss"].get<double>(), std::log(2.0));
  EXPECT_GT(steps.back()["reward_accuracy"].get<double>(), 0.5);
  fs::remove_all(dir);
}

// `chainrl learner CONFIG --run-dir RUN_DIR` as ranks 0..n-1 of one group (torchrun's variables,
// a fresh port), rank r with extra arguments rank_args[r]; output in RUN_DIR-rank<r>.out.
std::vector<pid_t> StartLearnerRanks(const std::string& config, const std::string& run_dir,
                                     const std::vector<std::vector<std::string>>& rank_args) {
  const chainrl::Result<int> free_port = chainrl::PickFreePort();
  const std::string port = std::to_string(free_port.ok() ? *free_port : 29533);
  const std::string world = std::to_string(rank_args.size());
  std::vector<pid_t> ranks;
  for (size_t r = 0; r < rank_args.size(); ++r) {
    const std::string out = run_dir + "-rank" + std::to_string(r) + ".out";
    pid_t pid = fork();
    if (pid == 0) {
      if (std::freopen(out.c_str(), "w", stdout) == nullptr) _exit(127);
      dup2(1, 2);
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", world.c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<std::string> args = {CHAINRL_BIN,
                                       "learner",
                                       config,
                                       "--run-dir",
                                       run_dir,
                                       "--set",
                                       "model.init.enabled=false"};
      args.insert(args.end(), rank_args[r].begin(), rank_args[r].end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    ranks.push_back(pid);
  }
  return ranks;
}

// Data parallelism as torchrun starts it: two `chainrl learner` processes given RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT train the offline DPO run above. Rank 0 splits each step's pairs
// with rank 1 and the gradients are summed, so every step's loss, margin, accuracy and gradient
// norm equal those of one process on the whole batch; both ranks end with identical parameters.
// A curriculum stage halves the learning rate from step 4: rank 1 applies it at the same step.
TEST(TrainAlgosTest, TwoLearnerRanksStartedLikeTorchrunTakeTheStepsOfOneProcess) {
  const fs::path dir = FreshDir("chainrl_dpo_ranks");
  const std::string config = WriteOfflineDpoRun(dir, R"([[curriculum.stages]]
name = "slower"
start_step = 3
overrides = { "learner.lr" = 5e-3 }
)");
  const std::string one = (dir / "one").string(), two = (dir / "two").string();
  ASSERT_EQ(Train(config, one, 120), 0) << ReadText(one + ".out");  // also creates the model
  std::vector<pid_t> ranks = StartLearnerRanks(config, two, {{}, {}});
  for (int r = 0; r < 2; ++r)
    EXPECT_EQ(chainrl::testing::WaitFor(ranks[static_cast<size_t>(r)], 120), 0)
        << ReadText(two + "-rank" + std::to_string(r) + ".out");
  const json s = ReadJson(two + "/summary.json");
  ASSERT_TRUE(s.is_object()) << ReadText(two + "-rank0.out");
  EXPECT_EQ(s["learner_ranks"], 2);
  EXPECT_EQ(s["ranks_parameters_identical"], true);
  EXPECT_EQ(ReadJson(one + "/summary.json")["learner_ranks"], 1);
  EXPECT_NE(ReadText(two + "-rank1.out").find("6 updates taken here; parameters identical"),
            std::string::npos)
      << ReadText(two + "-rank1.out");
  // Rank 1 serves its own /metrics (metrics.bind) under its own role.
  EXPECT_NE(ReadText(two + "-rank1.out").find("/metrics (run dpo, role learner-rank1)"),
            std::string::npos)
      << ReadText(two + "-rank1.out");
  const std::vector<json> a = StepEvents(one), b = StepEvents(two);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]["pairs"], 4);  // the whole batch's figures, not rank 0's share
    EXPECT_EQ(b[i]["tokens"], a[i]["tokens"]);
    for (const char* k : {"loss", "reward_margin", "reward_accuracy", "grad_norm"}) {
      const double x = a[i][k].get<double>(), y = b[i][k].get<double>();
      EXPECT_NEAR(y, x, 1e-5 * std::max(1.0, std::abs(x))) << "step " << i + 1 << " " << k;
    }
  }
  // The later steps move the policy away from its start: the two runs agree beyond step 1.
  EXPECT_LT(a.back()["loss"].get<double>(), 0.5 * std::log(2.0));
  EXPECT_DOUBLE_EQ(b.back()["lr"].get<double>(), 5e-3);  // the stage reached rank 0's optimiser

  // A rank started with another model (here a wider one) is refused on every rank, naming why,
  // before any parameter travels.
  const std::string other = (dir / "other-model").string();
  ASSERT_EQ(std::system((std::string(CHAINRL_BIN) +
                         " init-model --arch qwen2 --layers 1 --hidden 48 --heads 2 "
                         "--intermediate 64 --tokenizer bytes --out " +
                         other + " > /dev/null")
                            .c_str()),
            0);
  const std::string bad = (dir / "bad").string();
  ranks = StartLearnerRanks(config, bad, {{}, {"--set", "model.path=\"" + other + "\""}});
  std::vector<int> codes;
  for (pid_t pid : ranks) codes.push_back(chainrl::testing::WaitFor(pid, 60));
  for (int r = 0; r < 2; ++r) {
    const std::string out = ReadText(bad + "-rank" + std::to_string(r) + ".out");
    EXPECT_EQ(codes[static_cast<size_t>(r)], 2) << out;
    EXPECT_NE(out.find("the ranks' models differ"), std::string::npos) << out;
  }
  fs::remove_all(dir);
}

// Online DPO: pairs from each group's best and worst rollouts, trained with actors.
TEST(TrainAlgosTest, OnlineDpoPairsEachGroupsBestAndWorst) {
  const fs::path dir = FreshDir("chainrl_odpo");
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyRunConfig(dir, "odpo", 2, 4, 32, "", R"([algorithm]
name = "dpo"
preference_source = "online"
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 8, max_tokens = 32 }
)");
  const std::string run = (dir / "run").string();
  ASSERT_EQ(Train(config, run, 180), 0) << ReadText(run + ".out");
  const std::vector<json> steps = StepEvents(run);
  ASSERT_EQ(steps.size(), 4u);
  int64_t pairs = 0;
  for (const json& h : steps) {
    // At most one pair per group; a pair exists only where rewards differ.
    EXPECT_LE(h["pairs"].get<int64_t>(), 4);
    pairs += h["pairs"].get<int64_t>();
    if (h["pairs"].get<int64_t>() > 0 && h["step"] == 1) {
      EXPECT_NEAR(h["loss"].get<double>(), std::log(2.0), 1e-5);  // policy == reference
    }
  }
  EXPECT_GT(pairs, 0);
  fs::remove_all(dir);
}

// DRPO: the reward becomes 1[correct] (so the step's shaped reward equals its accuracy) and its
// loss over sequence scores replaces the policy loss.
TEST(TrainAlgosTest, DrpoTrainsOnCorrectnessWithItsOwnLoss) {
  const fs::path dir = FreshDir("chainrl_drpo");
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyRunConfig(dir, "drpo", 4, 4, 32, "", R"([algorithm]
name = "grpo"
kl_coef = 0.0
[length_shaping]
methods = ["drpo"]
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 12, max_tokens = 32 }
)");
  const std::string run = (dir / "run").string();
  ASSERT_EQ(Train(config, run, 180), 0) << ReadText(run + ".out");
  const std::vector<json> steps = StepEvents(run);
  ASSERT_EQ(steps.size(), 4u);
  for (const json& h : steps) {
    EXPECT_NEAR(h["shaped_reward"].get<double>(), h["accuracy"].get<double>(), 1e-9) << h.dump();
    EXPECT_TRUE(std::isfinite(h["loss"].get<double>()));
  }
  fs::remove_all(dir);
}

// Mixed precision in a real run: the learner keeps float32 master weights and computes in
// bfloat16, the actors hold bfloat16 weights published in bfloat16, the behaviour logprobs stay
// close to the learner's, and the exported model keeps the float32 master weights.
TEST(TrainAlgosTest, Bfloat16ComputeWithFloat32MasterWeights) {
  const fs::path dir = FreshDir("chainrl_bf16");
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyRunConfig(dir, "bf16", 5, 3, 24, "dtype = \"float32\"\ncompute_dtype = \"bfloat16\"\n", R"([algorithm]
name = "grpo"
kl_coef = 0.01
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 12, max_tokens = 24 }
)", "1e-5");
  const std::string run = (dir / "run").string();
  ASSERT_EQ(Train(config, run, 180), 0) << ReadText(run + ".out");
  EXPECT_NE(ReadText(run + "/logs/learner.log").find("float32 weights, bfloat16 compute on cpu"),
            std::string::npos);
  for (const char* actor : {"/logs/actor-0.log", "/logs/actor-1.log"})
    EXPECT_NE(ReadText(run + actor).find("bfloat16 weights on cpu"), std::string::npos) << actor;
  const std::vector<json> steps = StepEvents(run);
  ASSERT_EQ(steps.size(), 3u);
  int measured = 0;
  for (const json& h : steps) {
    EXPECT_TRUE(std::isfinite(h["loss"].get<double>())) << h.dump();
    // bfloat16 actors against the learner's mixed-precision recomputation: rounding, not drift
    // (the learning rate is tiny, so a sample generated one version back changes nothing).
    const double mismatch = h["logprob_mismatch"].get<double>();
    std::cout << "step " << h["step"] << " logprob mismatch " << mismatch << "\n";
    EXPECT_GT(mismatch, 0.0) << h.dump();
    EXPECT_LT(mismatch, 0.01) << h.dump();
    // The same gap at equal weights, apart from staleness (docs/ALGORITHMS.md §2.2): measured on
    // the tokens the learner's own version sampled, before the update.
    ASSERT_TRUE(h.contains("mismatch")) << h.dump();
    const json& x = h["mismatch"];
    std::cout << "  equal weights: " << x["tokens"] << " tokens, k1 " << x["k1"] << ", k3 "
              << x["k3"] << ", mean |d| " << x["abs_mean"] << ", max |d| " << x["abs_max"]
              << ", ratio q01 " << x["ratio_q01"] << " q99 " << x["ratio_q99"] << "\n";
    if (x["tokens"].get<double>() > 0) {
      EXPECT_GT(x["abs_mean"].get<double>(), 0.0) << h.dump();
      EXPECT_LT(x["abs_mean"].get<double>(), 0.01) << h.dump();
      EXPECT_GT(x["k3"].get<double>(), 0.0) << h.dump();
      EXPECT_LT(x["k3"].get<double>(), 1e-3) << h.dump();
      EXPECT_LE(x["ratio_q01"].get<double>(), 1.0);
      EXPECT_GE(x["ratio_q99"].get<double>(), 1.0);
      ++measured;
    }
  }
  EXPECT_GT(measured, 0) << "no step had a token sampled by the learner's own version";
  const json exported = ReadJson(run + "/export/config.json");
  EXPECT_EQ(exported["torch_dtype"], "float32");
  fs::remove_all(dir);
}

// Rollout correction in a real run (docs/ALGORITHMS.md §2.4): bfloat16 actors, the learner's
// recomputed logprobs as the proximal policy, token TIS at 2 and a token mask tight enough that
// the rounding gap between the actors' decode and the learner's recomputation drops some tokens.
TEST(TrainAlgosTest, RolloutCorrectionWeighsAndMasksTokensInARun) {
  const fs::path dir = FreshDir("chainrl_rollout_correction");
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyRunConfig(dir, "corr", 6, 3, 24,
                                         "dtype = \"float32\"\ncompute_dtype = \"bfloat16\"\n",
                                         R"(old_logprobs = "recompute"
[algorithm]
name = "grpo"
kl_coef = 0.0
rollout_is = "token"
rollout_is_cap = 2.0
rollout_mask = "token"
rollout_mask_low = 0.999
rollout_mask_high = 1.001
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 12, max_tokens = 24 }
)",
                                         "1e-5");
  const std::string run = (dir / "run").string();
  ASSERT_EQ(Train(config, run, 180), 0) << ReadText(run + ".out");
  const std::vector<json> steps = StepEvents(run);
  ASSERT_EQ(steps.size(), 3u);
  double masked = 0;
  for (const json& h : steps) {
    ASSERT_TRUE(h.contains("rollout_weight_mean") && h.contains("rollout_masked_fraction"))
        << h.dump();
    const double w = h["rollout_weight_mean"].get<double>();
    const double f = h["rollout_masked_fraction"].get<double>();
    std::cout << "step " << h["step"] << " rollout weight mean " << w << ", masked " << f
              << ", logprob mismatch " << h["logprob_mismatch"] << "\n";
    EXPECT_GE(f, 0.0);
    EXPECT_LT(f, 1.0) << "a gap of bfloat16 rounding leaves most tokens inside [0.999, 1.001]";
    // Kept tokens weigh ρ_t (within the mask, so within 0.1% of 1); dropped ones 0.
    EXPECT_NEAR(w, 1.0 - f, 0.002) << h.dump();
    EXPECT_TRUE(std::isfinite(h["loss"].get<double>()));
    masked += f;
  }
  EXPECT_GT(masked, 0.0) << "no token fell outside [0.999, 1.001]";
  // Without recomputed logprobs the same correction is refused before anything starts.
  const std::string refused = (dir / "refused").string();
  EXPECT_EQ(Train(config, refused, 60, {"--set", "learner.old_logprobs=\"behaviour\""}), 2)
      << ReadText(refused + ".out");
  EXPECT_NE(ReadText(refused + ".out").find("learner.old_logprobs"), std::string::npos)
      << ReadText(refused + ".out");
  fs::remove_all(dir);
}

// `chainrl train` whose learner runs slowly: stopped (SIGSTOP) for 1.2 s of every 1.6 s, so the
// actors finish their leases while it trains. The exit code, or -1 after `seconds`.
int TrainWithSlowLearner(const std::string& config, const std::string& run, double seconds,
                         const std::vector<std::string>& extra) {
  const pid_t pid = chainrl::testing::StartTrain(config, run, extra);
  const auto t0 = Clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    pid_t learner = 0;
    if (fs::exists(run + "/processes.json")) {
      const json procs = json::parse(ReadText(run + "/processes.json"), nullptr, false);
      if (procs.is_object() && procs.contains("learner")) learner = procs["learner"].get<pid_t>();
    }
    if (learner > 0 && kill(learner, SIGSTOP) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
      kill(learner, SIGCONT);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

// Staleness enforced when trained (docs/ALGORITHMS.md §7.1): with more leases than a step trains
// (2 actors x 4 credits > 4 groups per step) and a slow learner (stopped most of the time), the
// actors finish their leases while it trains, and accepted groups wait in the buffer while the
// policy moves on. The bound is 0 (on-policy): the ledger keeps at most two steps of work
// outstanding, so without segment rollout this run's groups lag by at most one version, and a
// bound of 0 is the one they can exceed. With stale_policy "drop" no trained token is older than
// the learner (read from the per-token versions every step reports): the results that arrived
// stale were dropped, and the groups that aged past the bound in the buffer were dropped and
// generated again; with "flag" the same run trains such tokens, counted.
TEST(TrainAlgosTest, NoTrainedTokenIsOlderThanTheStalenessBound) {
  const fs::path dir = FreshDir("chainrl_staleness");
  const std::string config = (dir / "run.toml").string();
  std::ofstream(config) << TinyRunConfig(dir, "stale", 9, 8, 16, "", R"(max_off_policy_steps = 0
ppo_epochs = 8
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 8, max_tokens = 16 }
)");
  const std::vector<std::string> busy = {"--set", "actors.credits=4"};
  std::map<std::string, json> summaries;
  for (const std::string policy : {"drop", "flag"}) {
    SCOPED_TRACE(policy);
    const std::string run = (dir / policy).string();
    std::vector<std::string> extra = busy;
    extra.insert(extra.end(), {"--set", "learner.stale_policy=\"" + policy + "\""});
    ASSERT_EQ(TrainWithSlowLearner(config, run, 300, extra), 0) << ReadText(run + ".out");
    const std::vector<json> steps = StepEvents(run);
    ASSERT_EQ(steps.size(), 8u);
    int64_t worst = 0;
    for (const json& h : steps) {
      ASSERT_TRUE(h.contains("token_staleness_max")) << h.dump();
      const int64_t lag = h["token_staleness_max"].get<int64_t>();
      // The group figure and the per-token one are the same definition.
      EXPECT_EQ(lag, h["max_staleness"].get<int64_t>()) << h.dump();
      if (policy == "drop") {
        EXPECT_EQ(lag, 0) << h.dump();
      }
      worst = std::max(worst, lag);
      std::cout << policy << " step " << h["step"] << ": token lag mean "
                << h["token_staleness_mean"] << ", max " << lag << ", equal-weight tokens "
                << h["mismatch"]["tokens"] << "\n";
    }
    summaries[policy] = ReadJson(run + "/summary.json");
    const json& s = summaries[policy];
    std::cout << policy << ": requeued " << s["groups_stale_requeued"] << ", trained stale "
              << s["groups_stale_trained"] << ", dropped on arrival " << s["results_dropped_stale"]
              << "\n";
    EXPECT_EQ(s["groups_lost"], 0);
    EXPECT_EQ(s["groups_duplicated"], 0);
    if (policy == "flag") {
      EXPECT_GT(worst, 0) << "the run never trained a group past the bound: nothing was tested";
      EXPECT_GT(s["groups_stale_trained"].get<int64_t>(), 0);
      EXPECT_EQ(s["groups_stale_requeued"], 0);
    } else {
      EXPECT_GT(s["groups_stale_requeued"].get<int64_t>(), 0)
          << "no buffered group aged past the bound: nothing was dropped";
      EXPECT_EQ(s["groups_stale_trained"], 0);
    }
  }
  fs::remove_all(dir);
}

}  // namespace
