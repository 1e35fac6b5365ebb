// Tests for actors/actor.h that need no learner: the actor's compute-thread count, from
// actors.threads (0: a share of the host's cores) and the CHAINRL_THREADS environment variable.
#include "actors/actor.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>

#include "apps/run_config.h"
#include "core/cpu_budget.h"

namespace chainrl::actors {
namespace {

Config WithThreads(const std::string& threads) {
  std::vector<std::string> sets;
  if (!threads.empty()) sets.push_back("actors.threads=" + threads);
  auto c = ParseConfig("[model]\npath = \"m\"\n", "test.toml", sets);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

TEST(ActorTest, ThreadsComeFromTheConfigUnlessTheEnvironmentSetsThem) {
  // The default, 0: a share of this host's physical cores among the run's compute processes.
  const CpuBudget budget = ReadCpuBudget();
  ::unsetenv(kCpuProcessesEnv);
  EXPECT_EQ(ActorThreads(WithThreads(""), nullptr), ThreadShare(budget, 1));
  ::setenv(kCpuProcessesEnv, "3", 1);
  EXPECT_EQ(ActorThreads(WithThreads(""), nullptr), std::max(1, budget.usable_cores() / 3));
  ::unsetenv(kCpuProcessesEnv);
  const Config three = WithThreads("3");
  EXPECT_EQ(ActorThreads(three, nullptr), 3);
  EXPECT_EQ(ActorThreads(three, ""), 3);
  EXPECT_EQ(ActorThreads(three, "5"), 5);  // CHAINRL_THREADS overrides actors.threads
  // A value that is not a positive integer is ignored: the config applies.
  for (const char* bad : {"0", "-2", "four", "4x", " "})
    EXPECT_EQ(ActorThreads(three, bad), 3) << "'" << bad << "'";
}

TEST(ActorTest, ThreadsOutOfRangeAreRefusedByTheSchema) {
  auto c = ParseConfig("[model]\npath = \"m\"\n", "test.toml", {"actors.threads=-1"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("actors.threads"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::actors
