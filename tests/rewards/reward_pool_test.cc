// Tests of RewardPool with real plugins built in the test tree: composition, and isolation of
// plugins that crash, hang, throw, return NaN or exit, plus load-time refusals (wrong ABI, missing
// entry point, not a shared library, missing file, failing init).
#include "rewards/reward_pool.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/cgroup.h"
#include "core/log.h"

namespace chainrl::rewards {
namespace {

// The verdict every consumer takes: the first reward scored >= 1 without error.
TEST(RewardResultTest, CorrectIsTheFirstRewardsVerdict) {
  RewardResult r;
  EXPECT_FALSE(r.correct());  // no reward
  r.rewards = {{1.0, RewardError::kNone, "", {}}, {0.0, RewardError::kNone, "", {}}};
  EXPECT_TRUE(r.correct());
  r.rewards[0].score = 0.999;
  EXPECT_FALSE(r.correct());
  r.rewards[0].score = 2.0;
  r.rewards[0].error = RewardError::kTimeout;  // an error's score is not a verdict
  EXPECT_FALSE(r.correct());
  r.rewards[0] = {0.0, RewardError::kNone, "", {}};
  r.rewards[1].score = 1.0;  // only the first reward decides
  EXPECT_FALSE(r.correct());
}

PoolOptions Opts(int workers = 1) {
  return PoolOptions().set_worker_path(CHAINRL_REWARD_WORKER_PATH).set_workers_per_plugin(workers);
}

RewardSpec Plugin(const std::string& name, const std::string& path) {
  return RewardSpec().set_name(name).set_kind("plugin").set_path(path);
}

RewardInput In(const std::string& id, const std::string& response, size_t tokens = 2) {
  RewardInput in;
  in.example_id = id;
  in.prompt = "prompt of " + id;
  in.response = response;
  in.token_ids.assign(tokens, 7);
  in.answer_json = "\"4\"";
  return in;
}

// What the well-behaved test plugin computes: response_len + 0.5 * num_tokens (scale 1).
double Expected(const RewardInput& in) {
  return static_cast<double>(in.response.size()) + 0.5 * static_cast<double>(in.token_ids.size());
}

std::unique_ptr<RewardPool> MakePool(std::vector<RewardSpec> specs, PoolOptions o = Opts()) {
  auto pool = RewardPool::Create(std::move(specs), o);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return pool.ok() ? std::move(pool).value() : nullptr;
}

Status CreateStatus(std::vector<RewardSpec> specs, PoolOptions o = Opts()) {
  auto pool = RewardPool::Create(std::move(specs), o);
  return pool.status();
}

TEST(RewardPool, ComposesPluginAndBuiltinsWithWeights) {
  auto pool = MakePool({Plugin("len", PLUGIN_GOOD).set_weight(0.5).set_batch_size(3),
                        RewardSpec().set_name("acc").set_kind("math").set_weight(2),
                        RewardSpec().set_name("fmt").set_kind("format").set_weight(0.25)});
  ASSERT_TRUE(pool);
  std::vector<RewardInput> inputs = {In("a", "<think>x</think> \\boxed{4}", 3),
                                     In("b", "\\boxed{5}", 1), In("c", "the answer is 4", 0),
                                     In("d", "<think></think>4", 10)};
  inputs[3].finish_reason = "length";
  auto res = pool->Score(inputs);
  ASSERT_TRUE(res.ok());
  ASSERT_EQ(res->size(), 4u);
  const double acc[] = {1, 0, 1, 1};
  const double fmt[] = {1, 0, 0, 1};
  for (size_t i = 0; i < 4; ++i) {
    const RewardResult& r = (*res)[i];
    ASSERT_EQ(r.rewards.size(), 3u);
    EXPECT_EQ(r.rewards[0].score, Expected(inputs[i])) << i;
    EXPECT_EQ(r.rewards[1].score, acc[i]) << i;
    EXPECT_EQ(r.rewards[2].score, fmt[i]) << i;
    EXPECT_DOUBLE_EQ(r.total, 0.5 * Expected(inputs[i]) + 2 * acc[i] + 0.25 * fmt[i]) << i;
    EXPECT_FALSE(r.any_error());
    ASSERT_EQ(r.rewards[0].components.size(), 1u);
    EXPECT_EQ(r.rewards[0].components[0].first, "len");
    EXPECT_EQ(r.rewards[0].components[0].second, static_cast<double>(inputs[i].response.size()));
  }
  EXPECT_EQ((*res)[3].rewards[0].message, "truncated");
  EXPECT_EQ((*res)[0].rewards[0].message, "");
  auto stats = pool->stats();
  EXPECT_EQ(stats["len"].samples, 4);
  EXPECT_EQ(stats["len"].calls, 2);  // batch_size 3: [a b c] [d]
  EXPECT_EQ(stats["len"].errors, 0);
  EXPECT_EQ(stats["acc"].samples, 4);
  EXPECT_EQ(stats["fmt"].samples, 4);
}

TEST(RewardPool, PluginOptionsReachInit) {
  auto pool = MakePool({Plugin("len", PLUGIN_GOOD).set_options_toml("scale = 3\n")});
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("a", "abcd", 2)});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].score, 3 * (4 + 1.0));
}

TEST(RewardPool, CrashCostsOneSampleAndARestart) {
  // One worker so the sequence of events is fixed: batch [0..3] crashes, each of its samples is
  // retried alone, sample 2 crashes again and is the only error; batch [4 5] then runs.
  auto pool = MakePool({Plugin("crashy", PLUGIN_CRASH).set_batch_size(4).set_error_score(-1)});
  ASSERT_TRUE(pool);
  std::vector<RewardInput> inputs;
  for (int i = 0; i < 6; ++i)
    inputs.push_back(In("ex" + std::to_string(i), i == 2 ? "CRASH" : "ok" + std::string(i, 'x')));
  auto res = pool->Score(inputs);
  ASSERT_TRUE(res.ok());
  for (size_t i = 0; i < 6; ++i) {
    const RewardOutcome& o = (*res)[i].rewards[0];
    if (i == 2) {
      EXPECT_EQ(o.error, RewardError::kCrash);
      EXPECT_EQ(o.score, -1);
      EXPECT_EQ((*res)[i].total, -1);
      EXPECT_NE(o.message.find("SIGSEGV"), std::string::npos) << o.message;
    } else {
      EXPECT_EQ(o.error, RewardError::kNone) << i;
      EXPECT_EQ(o.score, Expected(inputs[i])) << i;
    }
  }
  RewardStats s = pool->stats()["crashy"];
  EXPECT_EQ(s.samples, 6);
  EXPECT_EQ(s.errors, 1);
  EXPECT_EQ(s.crashes, 2);          // the batch, then the sample alone
  EXPECT_EQ(s.worker_restarts, 2);  // after each crash
  EXPECT_EQ(s.calls, 6);            // batch + 4 singles + [4 5]
  EXPECT_EQ(s.timeouts, 0);

  // The pool keeps working on the restarted worker.
  auto again = pool->Score({In("later", "fine")});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].rewards[0].score, Expected(In("later", "fine")));
  EXPECT_EQ(pool->stats()["crashy"].worker_restarts, 2);
}

TEST(RewardPool, WorkerExitIsACrashToo) {
  auto pool = MakePool({Plugin("quitter", PLUGIN_EXIT).set_batch_size(1)});
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("a", "EXIT"), In("b", "stay")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].error, RewardError::kCrash);
  EXPECT_NE((*res)[0].rewards[0].message.find("exited with status 7"), std::string::npos)
      << (*res)[0].rewards[0].message;
  EXPECT_EQ((*res)[1].rewards[0].score, Expected(In("b", "stay")));
  EXPECT_EQ(pool->stats()["quitter"].crashes, 1);
}

TEST(RewardPool, HangIsKilledAtTheDeadline) {
  auto pool = MakePool({Plugin("sleepy", PLUGIN_HANG)
                            .set_deadline_seconds(0.5)
                            .set_batch_size(3)
                            .set_error_score(-2),
                        RewardSpec().set_name("fmt").set_kind("format")},
                       Opts(2));
  ASSERT_TRUE(pool);
  std::vector<RewardInput> inputs = {In("h0", "<think></think>a"), In("h1", "HANG"),
                                     In("h2", "ccc"), In("h3", "dddd")};
  auto res = pool->Score(inputs);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[1].rewards[0].error, RewardError::kTimeout);
  EXPECT_EQ((*res)[1].rewards[0].score, -2);
  EXPECT_EQ((*res)[1].total, -2 + 0.0);
  for (size_t i : {0, 2, 3}) {
    EXPECT_EQ((*res)[i].rewards[0].error, RewardError::kNone) << i;
    EXPECT_EQ((*res)[i].rewards[0].score, Expected(inputs[i])) << i;
  }
  EXPECT_EQ((*res)[0].rewards[1].score, 1.0);  // built-ins unaffected
  RewardStats s = pool->stats()["sleepy"];
  EXPECT_EQ(s.timeouts, 2);  // the batch [h0 h1 h2], then h1 alone
  EXPECT_EQ(s.errors, 1);
  EXPECT_EQ(s.crashes, 0);
  EXPECT_EQ(pool->stats()["fmt"].errors, 0);
}

TEST(RewardPool, ThrowIsAnErrorForThatSampleOnly) {
  auto pool = MakePool({Plugin("thrower", PLUGIN_THROW).set_batch_size(8).set_error_score(0.25)});
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("t0", "a"), In("t1", "THROW"), In("t2", "b")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].score, 2.0);
  EXPECT_EQ((*res)[2].rewards[0].score, 2.0);
  const RewardOutcome& bad = (*res)[1].rewards[0];
  EXPECT_EQ(bad.error, RewardError::kPluginError);
  EXPECT_EQ(bad.score, 0.25);
  EXPECT_NE(bad.message.find("verifier exploded on t1"), std::string::npos) << bad.message;
  RewardStats s = pool->stats()["thrower"];
  EXPECT_EQ(s.plugin_errors, 1);
  EXPECT_EQ(s.errors, 1);
  EXPECT_EQ(s.crashes, 0);
  EXPECT_EQ(s.calls, 4);  // the batch, then each sample alone
}

TEST(RewardPool, PluginReportedErrorStatus) {
  auto pool = MakePool({Plugin("len", PLUGIN_GOOD)});
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("r0", "REJECT"), In("r1", "fine")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].error, RewardError::kPluginError);
  EXPECT_EQ((*res)[0].rewards[0].message, "rejected by the test plugin");
  EXPECT_EQ((*res)[1].rewards[0].score, Expected(In("r1", "fine")));
  EXPECT_EQ(pool->stats()["len"].plugin_errors, 1);
}

TEST(RewardPool, NanIsAnError) {
  auto pool = MakePool({Plugin("nanny", PLUGIN_NAN).set_error_score(-0.5)});
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("n0", "NAN"), In("n1", "fine")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].error, RewardError::kNotFinite);
  EXPECT_EQ((*res)[0].rewards[0].score, -0.5);
  EXPECT_TRUE(std::isfinite((*res)[0].total));
  EXPECT_EQ((*res)[1].rewards[0].score, Expected(In("n1", "fine")));
  RewardStats s = pool->stats()["nanny"];
  EXPECT_EQ(s.not_finite, 1);
  EXPECT_EQ(s.errors, 1);
  EXPECT_EQ(s.crashes, 0);
}

// A score beyond 1e6 (1e308 from a broken plugin) would swamp its group's advantages: an error like
// NaN. A megabyte of error message reaches the log cut at 1 KiB.
TEST(RewardPool, HugeScoresAreErrorsAndLongMessagesAreCutInTheLog) {
  char dir[] = "/tmp/chainrl_reward_huge_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/events.jsonl";
  ASSERT_TRUE(log::OpenEventLog(path).ok());
  {
    auto pool = MakePool({Plugin("nanny", PLUGIN_NAN).set_error_score(-0.5)});
    ASSERT_TRUE(pool);
    auto res = pool->Score({In("h0", "HUGE"), In("l0", "LONGMSG"), In("f0", "fine")});
    ASSERT_TRUE(res.ok());
    EXPECT_EQ((*res)[0].rewards[0].error, RewardError::kNotFinite);
    EXPECT_EQ((*res)[0].rewards[0].score, -0.5);
    EXPECT_NE((*res)[0].rewards[0].message.find("outside [-1e6, 1e6]"), std::string::npos)
        << (*res)[0].rewards[0].message;
    EXPECT_EQ((*res)[1].rewards[0].error, RewardError::kPluginError);
    EXPECT_EQ((*res)[2].rewards[0].score, Expected(In("f0", "fine")));
  }
  log::CloseEventLog();
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    EXPECT_LT(line.size(), 2048u) << line.substr(0, 200);
    if (line.find("l0") != std::string::npos) {
      EXPECT_NE(line.find("... ("), std::string::npos) << line.substr(0, 200);
    }
  }
  std::remove(path.c_str());
  rmdir(dir);
}

// A plugin that forks a process that never exits: the child is killed with its worker (the
// worker's process group) when the pool goes, instead of outliving the run.
TEST(RewardPool, WhatAPluginForksDiesWithItsWorker) {
  pid_t child = -1;
  {
    auto pool = MakePool({Plugin("forker", PLUGIN_NAN)});
    ASSERT_TRUE(pool);
    auto res = pool->Score({In("f0", "FORK")});
    ASSERT_TRUE(res.ok());
    ASSERT_EQ((*res)[0].rewards[0].error, RewardError::kPluginError);
    child = static_cast<pid_t>(std::stol((*res)[0].rewards[0].message));
    ASSERT_GT(child, 0);
    EXPECT_EQ(::kill(child, 0), 0) << "the plugin's child runs while the pool does";
  }
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    // Gone, or a zombie waiting for init to reap it: /proc says which.
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid, comm, state;
    gone = !(stat >> pid >> comm >> state) || state == "Z";
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone) << "pid " << child << " outlived its reward pool";
}

// A plugin that forks (the child inherits the worker's socket) and then crashes: the crash is seen
// at once, not at the 30 s deadline, and counted as a crash, not a timeout.
TEST(RewardPool, ACrashAfterAForkIsACrashNotATimeout) {
  auto pool = MakePool({Plugin("forker", PLUGIN_NAN).set_deadline_seconds(30).set_error_score(-1)});
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("c0", "FORKCRASH")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].score, -1);
  RewardStats s = pool->stats()["forker"];
  EXPECT_EQ(s.crashes, 1);
  EXPECT_EQ(s.timeouts, 0);  // a timeout would mean the crash was seen only at the deadline
}

// Many samples over two workers with crashes sprinkled in: every result lands on its own sample.
TEST(RewardPool, NoResultLostOrMisassignedUnderCrashes) {
  auto pool =
      MakePool({Plugin("crashy", PLUGIN_CRASH).set_batch_size(4).set_error_score(-1)}, Opts(2));
  ASSERT_TRUE(pool);
  std::vector<RewardInput> inputs;
  int crash_samples = 0, crash_batches = 0;
  bool batch_has_crash = false;
  for (int i = 0; i < 40; ++i) {
    bool crash = i % 7 == 3;
    inputs.push_back(In("m" + std::to_string(i), crash ? "CRASH" : std::string(i + 1, 'y'),
                        static_cast<size_t>(i % 5)));
    crash_samples += crash;
    batch_has_crash |= crash;
    if (i % 4 == 3) {
      crash_batches += batch_has_crash;
      batch_has_crash = false;
    }
  }
  auto res = pool->Score(inputs);
  ASSERT_TRUE(res.ok());
  for (int i = 0; i < 40; ++i) {
    const RewardOutcome& o = (*res)[i].rewards[0];
    if (i % 7 == 3) {
      EXPECT_EQ(o.error, RewardError::kCrash) << i;
    } else {
      EXPECT_EQ(o.error, RewardError::kNone) << i;
      EXPECT_EQ(o.score, Expected(inputs[i])) << i;
    }
  }
  RewardStats s = pool->stats()["crashy"];
  EXPECT_EQ(s.samples, 40);
  EXPECT_EQ(s.errors, crash_samples);
  EXPECT_EQ(s.crashes, crash_batches + crash_samples);
}

TEST(RewardPool, FailuresAreLoggedWithRewardAndExampleId) {
  char dir[] = "/tmp/chainrl_reward_log_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/events.jsonl";
  ASSERT_TRUE(log::OpenEventLog(path).ok());
  {
    auto pool = MakePool({Plugin("crashy", PLUGIN_CRASH).set_batch_size(1)});
    ASSERT_TRUE(pool);
    auto res = pool->Score({In("the-bad-one", "CRASH")});
    ASSERT_TRUE(res.ok());
  }
  log::CloseEventLog();
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  EXPECT_NE(text.find("\"event\":\"reward_worker_failure\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"reward\":\"crashy\""), std::string::npos) << text;
  EXPECT_NE(text.find("the-bad-one"), std::string::npos) << text;
  EXPECT_NE(text.find("\"event\":\"reward_error\""), std::string::npos) << text;
  std::remove(path.c_str());
  rmdir(dir);
}

TEST(RewardPool, ExamplePluginThroughTheCppLayer) {
  auto pool = MakePool({Plugin("last_line", EXAMPLE_PLUGIN).set_options_toml("miss_score = 0.1")});
  ASSERT_TRUE(pool);
  RewardInput no_answer = In("e2", "4");
  no_answer.answer_json = "null";
  auto res = pool->Score({In("e0", "work\nso 4"), In("e1", "4\nno"), no_answer});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].score, 1.0);
  EXPECT_EQ((*res)[0].rewards[0].components[0].second, 2.0);  // lines
  EXPECT_EQ((*res)[1].rewards[0].score, 0.1);
  EXPECT_EQ((*res)[1].rewards[0].message, "answer 4 not on the last line");
  EXPECT_EQ((*res)[2].rewards[0].error, RewardError::kPluginError);
  EXPECT_EQ((*res)[2].rewards[0].message, "example has no answer");
}

// Pids of the live children of `parent` (from /proc).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream f("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    std::getline(f, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(pid);
  }
  closedir(d);
  return out;
}

bool Alive(pid_t pid) {  // a zombie left to a non-reaping init counts as dead
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// A host that dies while its plugin hangs must not leave the worker behind.
TEST(RewardPool, WorkerDiesWithItsHost) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t host = fork();
  ASSERT_GE(host, 0);
  if (host == 0) {
    close(fds[0]);
    auto pool =
        RewardPool::Create({Plugin("sleepy", PLUGIN_HANG).set_deadline_seconds(100)}, Opts());
    if (!pool.ok()) _exit(3);
    std::thread([&] { (void)(*pool)->Score({In("h", "HANG")}); }).detach();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<pid_t> kids = ChildrenOf(getpid());
    pid_t worker = kids.empty() ? 0 : kids[0];
    if (write(fds[1], &worker, sizeof(worker)) != sizeof(worker)) _exit(4);
    _exit(0);  // the host dies with the worker stuck in the plugin
  }
  close(fds[1]);
  pid_t worker = 0;
  ASSERT_EQ(read(fds[0], &worker, sizeof(worker)), static_cast<ssize_t>(sizeof(worker)));
  close(fds[0]);
  int st = 0;
  ASSERT_EQ(waitpid(host, &st, 0), host);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  ASSERT_GT(worker, 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {  // the watchdog polls every 200 ms
    gone = !Alive(worker);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone) << "worker " << worker << " outlived its host";
  if (!gone) kill(worker, SIGKILL);
}

// ---- cgroup containment: what a plugin starts in a new session dies with its worker ----------

// Skips (with the reason) where this process cannot make cgroups: not root, or no cgroup v2.
#define SKIP_WITHOUT_CGROUPS()                                                              \
  do {                                                                                      \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups (CI runs as root)"; \
    auto own = OwnCgroupV2Dir();                                                            \
    if (!own.ok()) GTEST_SKIP() << own.status().message();                                  \
  } while (0)

// The pid a plugin wrote to $CHAINRL_TEST_PID_FILE, waiting for it up to 5 s.
pid_t PidFromFile(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    std::ifstream f(path);
    long pid = 0;
    if (f >> pid && pid > 0) return static_cast<pid_t>(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

bool GoneWithin(pid_t pid, int ms) {
  for (int i = 0; i < ms / 10; ++i) {
    if (!Alive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !Alive(pid);
}

std::string CgroupOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "";
}

struct PidFile {
  std::string path = "/tmp/chainrl_reward_pid_" + std::to_string(::getpid()) + "_" +
                     std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  PidFile() { ::setenv("CHAINRL_TEST_PID_FILE", path.c_str(), 1); }
  ~PidFile() {
    ::unsetenv("CHAINRL_TEST_PID_FILE");
    std::remove(path.c_str());
  }
};

// A child that called setsid has left the worker's process group, so only the cgroup holds it:
// it dies when the pool goes, and the pool's cgroups are removed.
TEST(RewardPoolCgroups, ASetsidChildDiesWithThePool) {
  SKIP_WITHOUT_CGROUPS();
  PidFile pid_file;
  pid_t child = -1;
  std::string nest;
  {
    auto pool = MakePool({Plugin("daemon", PLUGIN_NAN)}, Opts().set_contain("cgroup"));
    ASSERT_TRUE(pool);
    auto res = pool->Score({In("s0", "SETSID")});
    ASSERT_TRUE(res.ok());
    EXPECT_EQ((*res)[0].rewards[0].message, "left a child in its own session");
    child = PidFromFile(pid_file.path);
    ASSERT_GT(child, 0);
    ASSERT_TRUE(Alive(child));
    EXPECT_EQ(::getsid(child), child) << "the child leads its own session";
    nest = CgroupOf(child);
    EXPECT_NE(nest.find("/chainrl-rewards-" + std::to_string(::getpid()) + "-"), std::string::npos)
        << nest;
    EXPECT_NE(nest.find("/r0-w0"), std::string::npos) << nest;
  }
  EXPECT_TRUE(GoneWithin(child, 2000)) << "pid " << child << " outlived its reward pool";
  if (Alive(child)) ::kill(child, SIGKILL);
  auto own = OwnCgroupV2Dir();
  ASSERT_TRUE(own.ok());
  const std::string nest_dir =
      *own + nest.substr(0, nest.rfind('/')).substr(nest.find("/chainrl-rewards-"));
  struct stat sb;
  EXPECT_NE(::stat(nest_dir.c_str(), &sb), 0) << nest_dir << " was left behind";
}

// A worker killed at its deadline takes the setsid child with it at once, not when the pool goes.
TEST(RewardPoolCgroups, ASetsidChildDiesWithAWorkerKilledAtItsDeadline) {
  SKIP_WITHOUT_CGROUPS();
  PidFile pid_file;
  auto pool = MakePool({Plugin("daemon", PLUGIN_NAN).set_deadline_seconds(1).set_error_score(-1)},
                       Opts().set_contain("cgroup"));
  ASSERT_TRUE(pool);
  auto res = pool->Score({In("h0", "SETSIDHANG")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].error, RewardError::kTimeout);
  const pid_t child = PidFromFile(pid_file.path);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(GoneWithin(child, 2000)) << "pid " << child << " outlived its killed worker";
  if (Alive(child)) ::kill(child, SIGKILL);
  // The next call gets a fresh worker in the same cgroup.
  res = pool->Score({In("ok", "fine")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].error, RewardError::kNone);
}

// A host killed while its plugin hangs: the worker's watchdog kills its whole cgroup, setsid child
// included.
TEST(RewardPoolCgroups, ASetsidChildDiesWithTheHost) {
  SKIP_WITHOUT_CGROUPS();
  PidFile pid_file;
  pid_t host = fork();
  ASSERT_GE(host, 0);
  if (host == 0) {
    auto pool = RewardPool::Create({Plugin("daemon", PLUGIN_NAN).set_deadline_seconds(100)},
                                   Opts().set_contain("cgroup"));
    if (!pool.ok()) _exit(3);
    std::thread([&] { (void)(*pool)->Score({In("h", "SETSIDHANG")}); }).detach();
    if (PidFromFile(pid_file.path) <= 0) _exit(4);
    _exit(0);  // the host dies with the worker stuck in the plugin
  }
  int st = 0;
  ASSERT_EQ(waitpid(host, &st, 0), host);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  const pid_t child = PidFromFile(pid_file.path);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(GoneWithin(child, 5000)) << "pid " << child << " outlived its host";
  if (Alive(child)) ::kill(child, SIGKILL);
  // The dead host's cgroups stay until the next pool of any process removes them.
  auto own = OwnCgroupV2Dir();
  ASSERT_TRUE(own.ok());
  const std::string stale = *own + "/chainrl-rewards-" + std::to_string(host) + "-";
  auto left = [&] {
    int n = 0;
    DIR* d = opendir(own->c_str());
    while (dirent* e = d ? readdir(d) : nullptr) n += (*own + "/" + e->d_name).rfind(stale, 0) == 0;
    if (d) closedir(d);
    return n;
  };
  EXPECT_EQ(left(), 1) << "the dead host's cgroups";
  auto nest = CgroupNest::Open("chainrl-rewards");
  ASSERT_TRUE(nest.ok()) << nest.status().ToString();
  EXPECT_EQ(left(), 0) << "removed by the next nest";
}

// Without cgroups, "process_group" is the containment; the setsid child escapes it, which is why
// "auto" prefers cgroups. Here only the refusal of an unknown mode is checked.
TEST(RewardPoolCreate, RefusesAnUnknownContainment) {
  Status st = CreateStatus({Plugin("len", PLUGIN_GOOD)}, Opts().set_contain("jail"));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("rewards_common.contain"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("\"jail\""), std::string::npos) << st.message();
}

// ---- refusals at Create: configuration errors before anything runs --------------------------

void ExpectInvalid(const Status& st, std::initializer_list<const char*> fragments) {
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  for (const char* f : fragments)
    EXPECT_NE(st.message().find(f), std::string::npos) << "'" << f << "' not in: " << st.message();
}

TEST(RewardPoolCreate, RefusesWrongAbiVersion) {
  ExpectInvalid(
      CreateStatus({Plugin("old", PLUGIN_WRONG_ABI)}),
      {"reward 'old'", PLUGIN_WRONG_ABI, "ABI version 2", "uses ABI version 1", "rebuild"});
}

TEST(RewardPoolCreate, RefusesMissingEntryPoint) {
  ExpectInvalid(CreateStatus({Plugin("noentry", PLUGIN_NO_ENTRY)}),
                {"reward 'noentry'", "lacks the entry point chainrl_reward_entry"});
}

TEST(RewardPoolCreate, RefusesMissingFileAndNonLibraries) {
  ExpectInvalid(CreateStatus({Plugin("gone", "/nonexistent/dir/plugin.so")}),
                {"reward 'gone'", "/nonexistent/dir/plugin.so", "does not exist"});
  char dir[] = "/tmp/chainrl_reward_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string text = std::string(dir) + "/notes.so";
  std::ofstream(text) << "not a library\n";
  ExpectInvalid(CreateStatus({Plugin("txt", text)}), {"reward 'txt'", "is not a shared library"});
  ExpectInvalid(CreateStatus({Plugin("dir", dir)}), {"reward 'dir'", "not a regular file"});
  std::remove(text.c_str());
  rmdir(dir);
  // An ELF file that is not a loadable library (a PIE executable is ET_DYN but dlopen refuses it).
  Status exe = CreateStatus({Plugin("exe", CHAINRL_REWARD_WORKER_PATH)});
  EXPECT_EQ(exe.code(), StatusCode::kInvalidArgument) << exe.ToString();
  EXPECT_NE(exe.message().find("reward 'exe'"), std::string::npos) << exe.message();
}

TEST(RewardPoolCreate, RefusesFailingInitWithPluginMessage) {
  ExpectInvalid(CreateStatus({Plugin("picky", PLUGIN_GOOD).set_options_toml("fail_init = true")}),
                {"reward 'picky'", "init failed", "init refused: fail_init is set"});
}

TEST(RewardPoolCreate, RefusesBadSpecs) {
  ExpectInvalid(CreateStatus({}), {"no rewards"});
  ExpectInvalid(CreateStatus({RewardSpec().set_name("a").set_kind("math"),
                              RewardSpec().set_name("a").set_kind("format")}),
                {"reward 'a'", "twice"});
  ExpectInvalid(CreateStatus({RewardSpec().set_name("a").set_kind("nope")}),
                {"reward 'a'", "unknown kind 'nope'"});
  ExpectInvalid(CreateStatus({Plugin("p", "")}), {"reward 'p'", "needs a path"});
  ExpectInvalid(CreateStatus({Plugin("p", PLUGIN_GOOD).set_deadline_seconds(0)}),
                {"reward 'p'", "deadline_seconds"});
  ExpectInvalid(CreateStatus({Plugin("p", PLUGIN_GOOD).set_batch_size(0)}),
                {"reward 'p'", "batch_size"});
  ExpectInvalid(CreateStatus({RewardSpec().set_name("m").set_kind("math").set_path("/x.so")}),
                {"reward 'm'", "only for kind"});
  ExpectInvalid(CreateStatus({RewardSpec().set_name("m").set_kind("math").set_options_toml("x=1")}),
                {"reward 'm'", "unknown option 'x'"});
}

TEST(RewardPoolCreate, MissingWorkerIsNotFound) {
  Status st = CreateStatus({Plugin("p", PLUGIN_GOOD)},
                           PoolOptions().set_worker_path("/nonexistent/chainrl-reward-worker"));
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
  EXPECT_NE(st.message().find("/nonexistent/chainrl-reward-worker"), std::string::npos);
  // Built-ins alone need no worker.
  EXPECT_TRUE(CreateStatus({RewardSpec().set_name("m").set_kind("math")},
                           PoolOptions().set_worker_path("/nonexistent/w"))
                  .ok());
}

TEST(RewardPoolCreate, RelativePathIsResolvedAgainstCwd) {
  std::string abs = PLUGIN_GOOD;
  std::string dir = abs.substr(0, abs.rfind('/'));
  std::string file = abs.substr(abs.rfind('/') + 1);
  char old[4096];
  ASSERT_NE(getcwd(old, sizeof(old)), nullptr);
  ASSERT_EQ(chdir(dir.c_str()), 0);
  auto pool = RewardPool::Create({Plugin("rel", file)}, Opts());
  ASSERT_EQ(chdir(old), 0);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto res = (*pool)->Score({In("a", "xyz", 0)});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].rewards[0].score, 3.0);
}

}  // namespace
}  // namespace chainrl::rewards
