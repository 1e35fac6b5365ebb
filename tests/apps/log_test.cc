// Tests for logging: levels, role tags and the JSONL event log.
#include "core/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace chainrl {
namespace {

TEST(LogTest, EventLogIsJsonLinesWithRole) {
  std::string path = std::filesystem::temp_directory_path() /
                     ("chainrl_log_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(path);
  ASSERT_TRUE(log::OpenEventLog(path).ok());
  log::SetRole("actor-3");
  log::SetLevel(log::Level::kInfo);
  CHAINRL_LOG(kDebug) << "dropped";
  CHAINRL_LOG(kWarn) << "lease " << 42 << " expired \"quoted\"";
  log::Event("step", R"({"step": 7, "reward": 0.5})");
  log::Event("bad", "not json");
  log::CloseEventLog();
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["level"], "WARN");
  EXPECT_EQ(lines[0]["role"], "actor-3");
  EXPECT_EQ(lines[0]["msg"], "lease 42 expired \"quoted\"");
  EXPECT_EQ(lines[1]["event"], "step");
  EXPECT_EQ(lines[1]["step"], 7);
  EXPECT_DOUBLE_EQ(lines[1]["reward"].get<double>(), 0.5);
  EXPECT_EQ(lines[2]["fields_unparsed"], "not json");
  std::filesystem::remove(path);
}

TEST(LogTest, ParseLevel) {
  EXPECT_EQ(*log::ParseLevel("debug"), log::Level::kDebug);
  EXPECT_EQ(*log::ParseLevel("error"), log::Level::kError);
  auto bad = log::ParseLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'loud'"), std::string::npos);
}

TEST(LogTest, OpenEventLogFailureNamesPath) {
  Status st = log::OpenEventLog("/nonexistent-dir/x/events.jsonl");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent-dir/x/events.jsonl"), std::string::npos);
}

}  // namespace
}  // namespace chainrl
