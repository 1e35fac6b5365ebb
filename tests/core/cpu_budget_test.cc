// Tests of core/cpu_budget.h on this machine: the budget agrees with what the kernel says (the
// affinity mask, /sys topology), shares divide physical cores, and the choice of threads follows
// CHAINRL_THREADS, then the config key, then the share, saying why.
#include "core/cpu_budget.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>

namespace chainrl {
namespace {

TEST(CpuBudgetTest, MatchesTheAffinityMaskAndTheTopology) {
  const CpuBudget b = ReadCpuBudget();
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(b.allowed, CPU_COUNT(&set));
  EXPECT_EQ(b.online, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
  // Physical cores: the distinct (package, core) pairs of the allowed CPUs, read again here.
  std::set<std::string> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string t = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::string core, package;
    std::ifstream(t + "core_id") >> core;
    std::ifstream(t + "physical_package_id") >> package;
    cores.insert(core.empty() ? "cpu" + std::to_string(cpu) : package + "/" + core);
  }
  EXPECT_EQ(b.physical, static_cast<int>(cores.size()));
  EXPECT_GE(b.usable_cores(), 1);
  EXPECT_LE(b.usable_cores(), b.allowed);
  EXPECT_NE(b.Describe().find(std::to_string(b.allowed) + " CPUs allowed"), std::string::npos)
      << b.Describe();
}

TEST(CpuBudgetTest, SharesArePhysicalCoresDividedAmongProcessesAtLeastOne) {
  CpuBudget b;
  b.online = b.allowed = 16;
  b.physical = 8;  // SMT: two CPUs per core
  EXPECT_EQ(b.usable_cores(), 8);
  EXPECT_EQ(ThreadShare(b, 1), 8);
  EXPECT_EQ(ThreadShare(b, 3), 2);
  EXPECT_EQ(ThreadShare(b, 9), 1);
  b.quota = 2.5;  // a cgroup quota of 2.5 CPUs: 3 usable at most
  EXPECT_EQ(b.usable(), 3);
  EXPECT_EQ(ThreadShare(b, 1), 3);
  EXPECT_EQ(ThreadShare(b, 3), 1);
  CpuBudget two;  // the 2-vCPU machines this project is tested on, SMT or not
  two.online = two.allowed = 2;
  two.physical = 1;
  EXPECT_EQ(ThreadShare(two, 1), 1);
  two.physical = 2;
  EXPECT_EQ(ThreadShare(two, 1), 2);
  EXPECT_EQ(ThreadShare(two, 3), 1);
}

TEST(CpuBudgetTest, ChoiceFollowsTheEnvironmentThenTheKeyThenTheShare) {
  ::unsetenv("CHAINRL_THREADS");
  ::setenv(kCpuProcessesEnv, "3", 1);
  const CpuBudget b = ReadCpuBudget();
  ThreadChoice c = ChooseThreads("learner.threads", 0, 1);
  EXPECT_EQ(c.threads, ThreadShare(b, 3));
  EXPECT_EQ(c.why, "learner.threads = 0: " + b.Describe() + " shared by 3 compute processes");
  // A phase in which only this process computes (the SFT warm-up): the run's count is ignored.
  c = ChooseThreads("learner.threads", 0, 1, /*run_processes=*/false);
  EXPECT_EQ(c.threads, ThreadShare(b, 1));
  EXPECT_EQ(c.why, "learner.threads = 0: " + b.Describe() + " shared by 1 compute process");
  c = ChooseThreads("learner.threads", 5, 1);
  EXPECT_EQ(c.threads, 5);
  EXPECT_EQ(c.why, "learner.threads = 5");
  ::setenv("CHAINRL_THREADS", "7", 1);
  c = ChooseThreads("learner.threads", 5, 1);
  EXPECT_EQ(c.threads, 7);
  EXPECT_EQ(c.why, "CHAINRL_THREADS = 7");
  ::setenv("CHAINRL_THREADS", "lots", 1);  // not a positive integer: ignored
  EXPECT_EQ(ChooseThreads("learner.threads", 5, 1).threads, 5);
  ::unsetenv("CHAINRL_THREADS");
  ::unsetenv(kCpuProcessesEnv);
  c = ChooseThreads("actors.threads", 0, 2);
  EXPECT_EQ(c.threads, ThreadShare(b, 2));
  EXPECT_NE(c.why.find("shared by 2 compute processes"), std::string::npos) << c.why;
}

}  // namespace
}  // namespace chainrl
