// Data parallelism over c10d Gloo on the CPU: two real worker processes, placed by torchrun-style
// variables, each train their shard of a batch; their summed gradients and their updated
// parameters equal one process's on the whole batch, for the GRPO-family update in every loss
// aggregation mode (also with one shard empty), the SFT update and the DPO update. Malformed
// variables, a peer that never starts and a backend this build lacks are errors, not hangs.
#include "learner/data_parallel.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/metrics_queries.h"
#include "tests/learner/data_parallel_case.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;

// Sets environment variables for one scope and restores them after.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k);
      saved_.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
      if (v)
        setenv(k, v, 1);
      else
        unsetenv(k);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v)
        setenv(k.c_str(), v->c_str(), 1);
      else
        unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(DataParallel, EnvironmentVariablesAreReadLikeTorchrunsAndErrorsNameThem) {
  {
    ScopedEnv e({{"WORLD_SIZE", nullptr}});
    auto w = RankInfoFromEnvironment();
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->world_size, 1);
  }
  {
    ScopedEnv e({{"WORLD_SIZE", "2"},
                 {"RANK", "1"},
                 {"MASTER_ADDR", "10.0.0.7"},
                 {"MASTER_PORT", "29500"}});
    auto w = RankInfoFromEnvironment();
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ(w->rank, 1);
    EXPECT_EQ(w->world_size, 2);
    EXPECT_EQ(w->master_addr, "10.0.0.7");
    EXPECT_EQ(w->master_port, 29500);
  }
  struct Bad {
    const char *world, *rank, *addr, *port, *names;
  };
  for (const Bad& b : {Bad{"two", "0", "h", "1", "WORLD_SIZE='two'"},
                       Bad{"2", "2", "h", "1", "RANK='2' is not an integer in [0, 1]"},
                       Bad{"2", nullptr, "h", "1", "RANK is not set"},
                       Bad{"2", "0", nullptr, "1", "MASTER_ADDR is not set"},
                       Bad{"2", "0", "h", "http", "MASTER_PORT='http'"},
                       Bad{"2", "0", "h", "70000", "MASTER_PORT='70000'"}}) {
    ScopedEnv e({{"WORLD_SIZE", b.world},
                 {"RANK", b.rank},
                 {"MASTER_ADDR", b.addr},
                 {"MASTER_PORT", b.port}});
    auto w = RankInfoFromEnvironment();
    ASSERT_FALSE(w.ok()) << b.names;
    EXPECT_NE(w.status().message().find(b.names), std::string::npos) << w.status().ToString();
  }
}

TEST(DataParallel, APeerThatNeverStartsIsAnErrorWithinTheTimeoutAndNcclIsRefused) {
  auto port = metrics::PickFreePort();
  ASSERT_TRUE(port.ok());
  RankInfo who;
  who.rank = 0;
  who.world_size = 2;
  who.master_addr = "127.0.0.1";
  who.master_port = *port;
  DataParallelOptions o;
  o.timeout_seconds = 1.0;
  const auto t0 = std::chrono::steady_clock::now();
  auto dp = DataParallel::Join(who, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(dp.status().message().find("127.0.0.1:" + std::to_string(*port)), std::string::npos)
      << dp.status().ToString();
  EXPECT_NE(dp.status().message().find("rank 0 of 2"), std::string::npos);
  EXPECT_LT(s, 30.0) << "gave up after " << s << " s";

  o.backend = "nccl";
  auto nccl = DataParallel::Join(who, o);
  ASSERT_FALSE(nccl.ok());
  EXPECT_NE(nccl.status().message().find("no NCCL"), std::string::npos);
  o.backend = "mpi";
  EXPECT_FALSE(DataParallel::Join(who, o).ok());
}

std::vector<double> ReadDoubles(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<double> v;
  double x;
  while (f.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}

TEST(DataParallel, TwoGlooRanksTakeTheStepOfOneProcessOnTheWholeBatch) {
  const fs::path out = fs::temp_directory_path() / ("chainrl_dp_" + std::to_string(getpid()));
  fs::remove_all(out);
  fs::create_directories(out);
  auto port = metrics::PickFreePort();
  ASSERT_TRUE(port.ok());
  const std::string worker = CHAINRL_DP_WORKER;
  const std::string port_s = std::to_string(*port);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string log = (out / ("rank" + std::to_string(rank) + ".log")).string();
    pid_t pid = fork();
    if (pid == 0) {
      if (std::freopen(log.c_str(), "w", stderr) == nullptr) _exit(127);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port_s.c_str(), 1);
      execl(worker.c_str(), worker.c_str(), out.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_GT(pid, 0);
    pids.push_back(pid);
  }
  // Both ranks finish (or are killed after 120 s).
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int> status(2, -1);
  for (size_t i = 0; i < 2; ++i) {
    while (waitpid(pids[i], &status[i], WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120)) {
        for (pid_t p : pids) kill(p, SIGKILL);
        waitpid(pids[i], &status[i], 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream log(out / ("rank" + std::to_string(rank) + ".log"));
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    ASSERT_TRUE(WIFEXITED(status[rank]) && WEXITSTATUS(status[rank]) == 0)
        << "rank " << rank << " failed:\n"
        << text;
  }

  for (const std::string& mode : dp_case::kModes) {
    dp_case::Case c = dp_case::MakeCase(mode);
    dp_case::Outcome one = dp_case::Run(c, c.groups, nullptr);
    ASSERT_TRUE(one.status.ok()) << one.status.ToString();
    const int64_t n = one.grads.numel();
    std::vector<std::vector<double>> ranks;
    for (int rank = 0; rank < 2; ++rank) {
      ranks.push_back(
          ReadDoubles((out / ("rank" + std::to_string(rank) + "-" + mode + ".bin")).string()));
      ASSERT_EQ(static_cast<int64_t>(ranks.back().size()), 2 * n) << mode;
    }
    // The summed gradient equals the whole batch's.
    const double gmax = one.grads.abs().max().item<double>();
    ASSERT_GT(gmax, 1e-4) << mode << ": the update has a gradient";
    for (int rank = 0; rank < 2; ++rank) {
      double worst = 0;
      for (int64_t i = 0; i < n; ++i)
        worst = std::max(worst, std::abs(ranks[rank][i] - one.grads[i].item<double>()));
      EXPECT_LE(worst / gmax, 1e-5) << mode << " rank " << rank;
    }
    // Both ranks hold the same parameters after the step (bit for bit), those of the single
    // process where the gradient is not near zero (Adam's first step moves a parameter by about
    // lr times the sign of its gradient, so signs of near-zero gradients may differ).
    int64_t compared = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(ranks[0][n + i], ranks[1][n + i]) << mode << " parameter " << i;
      if (std::abs(one.grads[i].item<double>()) < 1e-3 * gmax) continue;
      ++compared;
      worst = std::max(worst, std::abs(ranks[0][n + i] - one.params[i].item<double>()));
    }
    EXPECT_GT(compared, n / 4) << mode;
    EXPECT_LE(worst, 1e-6) << mode;
  }
  fs::remove_all(out);
}

}  // namespace
}  // namespace chainrl::learner
