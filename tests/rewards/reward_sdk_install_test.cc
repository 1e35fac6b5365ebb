// Proof that the reward SDK installs and works for an external plugin: `cmake --install` of this
// build's reward_sdk component into a temporary prefix, the example plugin (rewards/examples/)
// configured and built as a separate project with find_package(chainrl), then loaded and run by a
// RewardPool. Also checks that the installed header is the one in the tree.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "rewards/reward_pool.h"

namespace chainrl::rewards {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int RunShell(const std::string& cmd, const std::string& log) {
  int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
  if (rc != 0) ADD_FAILURE() << "command failed (" << rc << "): " << cmd << "\n" << Slurp(log);
  return rc;
}

TEST(RewardSdkInstall, ExternalPluginBuildsWithFindPackageAndRuns) {
  char tmpl[] = "/tmp/chainrl_sdk_install_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string tmp = tmpl, prefix = tmp + "/prefix", build = tmp + "/build";
  const std::string cmake = std::string("'") + CHAINRL_CMAKE_COMMAND + "'";
  ASSERT_EQ(RunShell(cmake + " --install '" + CHAINRL_BINARY_DIR +
                         "' --component reward_sdk --prefix '" + prefix + "'",
                     tmp + "/install.log"),
            0);
  EXPECT_EQ(Slurp(prefix + "/include/chainrl/reward.h"),
            Slurp(std::string(CHAINRL_SOURCE_DIR) + "/rewards/include/chainrl/reward.h"));
  struct stat sb;
  EXPECT_EQ(stat((prefix + "/include/chainrl/reward.hpp").c_str(), &sb), 0);
  EXPECT_EQ(stat((prefix + "/lib/cmake/chainrl/chainrlConfig.cmake").c_str(), &sb), 0);
  std::string config = Slurp(prefix + "/lib/cmake/chainrl/chainrlConfig.cmake");
  EXPECT_NE(config.find("set(chainrl_REWARD_ABI_VERSION 1)"), std::string::npos) << config;

  // Configure + build the example as an outside project: only the installed prefix is visible.
  ASSERT_EQ(
      RunShell(cmake + " -S '" + CHAINRL_SOURCE_DIR + "/rewards/examples' -B '" + build + "' -G '" +
                   CHAINRL_CMAKE_GENERATOR + "' -DCMAKE_CXX_COMPILER='" + CHAINRL_CXX_COMPILER +
                   "' -DCMAKE_PREFIX_PATH='" + prefix + "' -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
               tmp + "/configure.log"),
      0);
  EXPECT_NE(
      Slurp(build + "/CMakeCache.txt").find("chainrl_DIR:PATH=" + prefix + "/lib/cmake/chainrl"),
      std::string::npos);
  ASSERT_EQ(RunShell(cmake + " --build '" + build + "'", tmp + "/build.log"), 0);
  const std::string plugin = build + "/last_line_answer.so";
  ASSERT_EQ(stat(plugin.c_str(), &sb), 0) << plugin;

  auto pool =
      RewardPool::Create({RewardSpec().set_name("external").set_kind("plugin").set_path(plugin)},
                         PoolOptions().set_worker_path(CHAINRL_REWARD_WORKER_PATH));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  RewardInput hit, miss;
  hit.response = "thinking\nit is 12";
  hit.answer_json = "\"12\"";
  miss.response = "12\nit is 13";
  miss.answer_json = "12";
  auto res = (*pool)->Score({hit, miss});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].total, 1.0);
  EXPECT_EQ((*res)[1].total, 0.0);

  // A plugin in C through the package's chainrl_add_reward_plugin() helper.
  const std::string c_src = tmp + "/c_plugin", c_build = tmp + "/c_build";
  ASSERT_EQ(mkdir(c_src.c_str(), 0755), 0);
  std::ofstream(c_src + "/CMakeLists.txt")
      << "cmake_minimum_required(VERSION 3.22)\nproject(c_plugin LANGUAGES C)\n"
         "find_package(chainrl REQUIRED)\n"
         "chainrl_add_reward_plugin(c_plugin test_plugin.c)\n";
  std::ofstream(c_src + "/test_plugin.c")
      << Slurp(std::string(CHAINRL_SOURCE_DIR) + "/tests/rewards/plugins/test_plugin.c");
  ASSERT_EQ(RunShell(cmake + " -S '" + c_src + "' -B '" + c_build + "' -G '" +
                         CHAINRL_CMAKE_GENERATOR + "' -DCMAKE_PREFIX_PATH='" + prefix + "'",
                     tmp + "/c_configure.log"),
            0);
  ASSERT_EQ(RunShell(cmake + " --build '" + c_build + "'", tmp + "/c_build.log"), 0);
  auto c_pool = RewardPool::Create(
      {RewardSpec().set_name("c").set_kind("plugin").set_path(c_build + "/c_plugin.so")},
      PoolOptions().set_worker_path(CHAINRL_REWARD_WORKER_PATH));
  ASSERT_TRUE(c_pool.ok()) << c_pool.status().ToString();
  auto c_res = (*c_pool)->Score({hit});
  ASSERT_TRUE(c_res.ok());
  EXPECT_EQ((*c_res)[0].total, static_cast<double>(hit.response.size()));  // no tokens
  EXPECT_EQ(std::system(("rm -rf '" + tmp + "'").c_str()), 0);
}

}  // namespace
}  // namespace chainrl::rewards
