// Runs that meet bad input and broken machines, with real processes: a learner that fails the same
// way twice is not restarted into a loop, a full disk (a real tmpfs) stops the run with one error
// naming the bytes, a poisoned JSONL line is skipped and counted or stops the run with one clear
// error, and a second launcher on a run directory in use is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/apps/train_run.h"
#include "tests/common/tmpfs.h"

namespace {
namespace fs = std::filesystem;
using chainrl::testing::Chainrl;
using chainrl::testing::ReadJson;
using chainrl::testing::ReadText;
using chainrl::testing::StartTrain;
using chainrl::testing::WaitFor;

std::string Dir(const std::string& name) { return chainrl::testing::FreshDir("faults", name); }

// A short run: a random 1-layer model with the byte tokenizer, 2 SFT steps, 3 GRPO steps with one
// actor and a length reward; `extra` is appended (tables given there must not repeat these).
std::string WriteConfig(const std::string& dir, const std::string& data, const std::string& extra) {
  std::string text = R"(
[run]
name = "faults"
seed = 5
total_steps = 3
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
max_position = 256
[data]
)" + data + R"(
num_eval_examples = 0
[sft]
steps = 2
batch_size = 4
[rollout]
group_size = 4
prompts_per_step = 2
max_new_tokens = 16
[actors]
count = 1
credits = 2
heartbeat_interval_seconds = 0.2
heartbeat_timeout_seconds = 2.0
restart_backoff_seconds = 0.1
[learner]
threads = 1
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 8, max_tokens = 16 }
)" + extra;
  const std::string path = dir + "/run.toml";
  std::ofstream(path) << text;
  return path;
}

const char* kTask = "task = \"arithmetic\"\ntask_min_size = 1\ntask_max_size = 1\n";

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The run's export directory is a regular file: the learner trains to the end, then fails to
// export the policy, with the same exit code every time, and its restart (resumed from its final
// checkpoint) makes no progress before failing again. The launcher restarts the learner once, sees
// the same death again and stops, naming it, instead of restarting it actors.max_restarts (10)
// times. (An unwritable checkpoint.dir, this test's former fault, is now refused at start-up,
// exit 2.)
TEST(TrainFaultsTest, LearnerFailingTheSameWayTwiceIsNotRestartedAgain) {
  const std::string dir = Dir("same_death");
  fs::create_directories(dir + "/run");
  std::ofstream(dir + "/run/export") << "a file";
  const std::string cfg = WriteConfig(dir, kTask, "[checkpoint]\nexport_hf = true\n");
  auto r = Chainrl("train " + cfg + " --run-dir " + dir + "/run");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(Count(r.out, "restarting it from its latest checkpoint"), 1) << r.out;
  EXPECT_NE(r.out.find("the learner died the same way twice in a row (exit code 1, at "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("run/export"), std::string::npos) << r.out;  // the cause, from its log
  EXPECT_FALSE(fs::exists(dir + "/run/summary.json"));
  fs::remove_all(dir);
}

// The checkpoints' directory is a 64 KiB tmpfs (root only: a private mount namespace that the run's
// processes inherit): the first checkpoint does not fit. The learner stops with one error naming
// the directory and the bytes, exit 3; the launcher does not restart it and exits 3 too.
TEST(TrainFaultsTest, FullDiskStopsTheRunWithOneErrorNamingTheBytes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs (CI runs as root)";
  const std::string dir = Dir("full_disk");
  fs::create_directories(dir + "/ckpt");
  ASSERT_EQ(chainrl::testing::MountTmpfs(dir + "/ckpt", 64 << 10), "");
  const std::string cfg =
      WriteConfig(dir, kTask, "[checkpoint]\nevery = 1\ndir = \"" + dir + "/ckpt\"\n");
  auto r = Chainrl("train " + cfg + " --run-dir " + dir + "/run");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_EQ(Count(r.out, "restarting it"), 0) << r.out;
  EXPECT_NE(r.out.find("the learner stopped on a full disk"), std::string::npos) << r.out;
  const std::string log = ReadText(dir + "/run/logs/learner.log");
  EXPECT_NE(log.find(dir + "/ckpt: the disk is full: checkpoint step-"), std::string::npos) << log;
  EXPECT_NE(log.find("bytes are free; no checkpoint has been written yet"), std::string::npos)
      << log;
  EXPECT_EQ(chainrl::testing::UnmountTmpfs(dir + "/ckpt"), "");
  fs::remove_all(dir);
}

// Training data with one line whose `meta` nests 100,000 arrays (a 200 KB line that once overflowed
// the parser's stack), and prompts longer than the model's context, which are refused at dispatch
// (counted, never leased: no actor allocates for them, no lease hangs). "skip": the line is skipped
// and counted in the summary, and the run completes; meanwhile a second launcher on the same run
// directory is refused. "error": one clear error naming file:line, exit 2, and no restart.
TEST(TrainFaultsTest, PoisonedJsonlLineIsSkippedAndCountedOrStopsTheRunOnce) {
  const std::string dir = Dir("poisoned");
  const std::string data = dir + "/train.jsonl";
  {
    std::ofstream out(data);
    for (int i = 0; i < 40; ++i) {
      if (i == 6)
        out << "{\"prompt\": \"1+1=\", \"meta\": " << std::string(100000, '[')
            << std::string(100000, ']') << "}\n";
      if (i % 8 == 3)  // a prompt of 600 tokens for a context of 256: no actor could take it
        out << "{\"prompt\": \"" << std::string(600, 'x') << "\", \"answer\": 1}\n";
      const int a = i % 7, b = i % 5;
      out << "{\"prompt\": \"" << a << "+" << b << "=\", \"answer\": \"" << a + b
          << "\", \"solution\": \"" << a + b << "\"}\n";
    }
  }
  const std::string source =
      "source = \"jsonl\"\nshuffle = false\ntrain_files = [\"" + data + "\"]\n";

  const std::string skip_cfg = WriteConfig(dir, source + "on_bad_line = \"skip\"\n", "");
  const std::string run = dir + "/skip";
  const pid_t first = StartTrain(skip_cfg, run);
  for (int i = 0; i < 600 && !fs::exists(run + "/launcher.lock"); ++i) usleep(50000);
  auto second = Chainrl("train " + skip_cfg + " --run-dir " + run);
  EXPECT_EQ(second.code, 2) << second.out;
  EXPECT_NE(second.out.find(run + ": another launcher (pid " + std::to_string(first) +
                            ") is running in this run directory"),
            std::string::npos)
      << second.out;
  ASSERT_EQ(WaitFor(first, 300), 0) << ReadText(run + ".out");
  const nlohmann::json summary = ReadJson(run + "/summary.json");
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary.value("data_lines_skipped", -1), 1);
  EXPECT_EQ(summary.value("steps", -1), 3);
  EXPECT_GE(summary.value("groups_refused", -1), 1);  // the long prompts drawn: never leased out
  EXPECT_EQ(summary.value("groups_lost", -1), 0);
  const std::string log = ReadText(run + "/logs/learner.log");
  EXPECT_NE(log.find(data + ": 1 malformed lines skipped (data.on_bad_line = \"skip\"); first: " +
                     data + ":8: "),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("is refused: example '"), std::string::npos) << log;
  EXPECT_NE(log.find(" tokens, and the model's context (max_position_embeddings) is 256"),
            std::string::npos)
      << log;

  const std::string error_cfg = WriteConfig(dir, source, "");
  auto r = Chainrl("train " + error_cfg + " --run-dir " + dir + "/error");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(data + ":8: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nested deeper than"), std::string::npos) << r.out;
  EXPECT_EQ(Count(r.out, "restarting it"), 0) << r.out;
  fs::remove_all(dir);
}

}  // namespace
