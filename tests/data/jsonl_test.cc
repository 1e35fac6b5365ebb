// JSONL datasets: field mapping, metadata, and bad lines either named (file:line) or skipped and
// counted.
#include "data/jsonl.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace chainrl::data {
namespace {

class JsonlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("chainrl_jsonl_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  std::filesystem::path dir_;
};

TEST_F(JsonlTest, ReadsExamplesWithFieldsAndMetadata) {
  std::string p =
      Write("train.jsonl",
            "{\"question\": \"2+2?\", \"ans\": \"4\", \"id\": 17, \"level\": 3}\n"
            "\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"ans\": [1, 2],"
            " \"difficulty\": \"hard\", \"solution\": \"<answer>x</answer>\"}\r\n");
  JsonlFields f;
  f.prompt = "question";
  f.answer = "ans";
  JsonlStats st;
  auto ex = LoadExamplesJsonl(p, f, BadLinePolicy::kError, &st);
  ASSERT_TRUE(ex.ok()) << ex.status().ToString();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[0].prompt, "2+2?");
  EXPECT_EQ((*ex)[0].answer, "4");
  EXPECT_EQ((*ex)[0].id, "17");
  EXPECT_EQ((*ex)[0].metadata, nlohmann::json({{"level", 3}}));
  EXPECT_EQ((*ex)[0].source, p + ":1");
  EXPECT_TRUE((*ex)[1].prompt.empty());
  EXPECT_EQ((*ex)[1].messages[0]["content"], "hi");
  EXPECT_EQ((*ex)[1].answer, nlohmann::json({1, 2}));
  EXPECT_EQ((*ex)[1].id, p + ":3");
  EXPECT_EQ((*ex)[1].difficulty, "hard");
  EXPECT_EQ((*ex)[1].solution, "<answer>x</answer>");
  EXPECT_EQ(st.lines, 2);
  EXPECT_EQ(st.examples, 2);
  EXPECT_EQ(st.skipped, 0);
}

TEST_F(JsonlTest, BadLinesAreNamedOrSkippedAndCounted) {
  std::string p = Write("bad.jsonl",
                        "{\"prompt\": \"ok\", \"answer\": 1}\n"
                        "{\"prompt\": \"truncated\n"
                        "[1, 2]\n"
                        "{\"answer\": 3}\n"
                        "{\"prompt\": \"\"}\n"
                        "{\"prompt\": \"x\", \"id\": 1.5}\n"
                        "{\"messages\": [{\"role\": \"user\"}]}\n"
                        "{\"prompt\": \"fine\"}\n");
  auto err = LoadExamplesJsonl(p, {}, BadLinePolicy::kError);
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(err.status().message().find(p + ":2: not valid JSON"), std::string::npos)
      << err.status().message();
  JsonlStats st;
  auto ok = LoadExamplesJsonl(p, {}, BadLinePolicy::kSkip, &st);
  ASSERT_TRUE(ok.ok());
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[1].prompt, "fine");
  EXPECT_EQ(st.lines, 8);
  EXPECT_EQ(st.skipped, 6);
  ASSERT_EQ(st.first_problems.size(), 6u);
  EXPECT_EQ(st.first_problems[1], p + ":3: expected a JSON object");
  EXPECT_EQ(st.first_problems[2], p + ":4: missing field 'prompt' (or 'messages')");
  EXPECT_EQ(st.first_problems[3], p + ":5: field 'prompt' must be a non-empty string");
  EXPECT_EQ(st.first_problems[4], p + ":6: field 'id' must be a string or an integer");
  EXPECT_NE(st.first_problems[5].find(p + ":7: field 'messages'[0]"), std::string::npos);
}

TEST_F(JsonlTest, Preferences) {
  std::string p = Write("pref.jsonl",
                        "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
                        "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": [\"b\", \"c\"]}\n"
                        "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": []}\n");
  auto err = LoadPreferencesJsonl(p, {}, BadLinePolicy::kError);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find(p + ":3: field 'rejected'"), std::string::npos);
  JsonlStats st;
  auto ok = LoadPreferencesJsonl(p, {}, BadLinePolicy::kSkip, &st);
  ASSERT_TRUE(ok.ok());
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[1].rejected, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(st.skipped, 1);
}

// The same reader from bytes (ParseExamplesJsonl / ParsePreferencesJsonl): `source` stands for
// the path in messages, default ids and relative embeddings.
TEST_F(JsonlTest, ParsesTextLikeAFile) {
  const std::string text =
      "{\"prompt\": \"q\", \"embeddings\": \"e.safetensors#t\"}\n"
      "[1]\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"id\": 4}\n";
  JsonlStats st;
  auto ex = ParseExamplesJsonl(text, "data/train.jsonl", {}, BadLinePolicy::kSkip, &st);
  ASSERT_TRUE(ex.ok()) << ex.status().ToString();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[0].id, "data/train.jsonl:1");
  EXPECT_EQ((*ex)[0].embeddings, "data/e.safetensors#t");
  EXPECT_EQ((*ex)[1].id, "4");
  EXPECT_EQ(st.lines, 3);
  EXPECT_EQ(st.skipped, 1);
  ASSERT_EQ(st.first_problems.size(), 1u);
  EXPECT_EQ(st.first_problems[0], "data/train.jsonl:2: expected a JSON object");
  auto err = ParseExamplesJsonl(text, "data/train.jsonl", {}, BadLinePolicy::kError);
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().message(),
            "data/train.jsonl:2: expected a JSON object (set data.on_bad_line = \"skip\" to skip "
            "such lines)");
  auto pref =
      ParsePreferencesJsonl("{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": [\"b\"]}\n",
                            "pref.jsonl", {}, BadLinePolicy::kError);
  ASSERT_TRUE(pref.ok()) << pref.status().ToString();
  ASSERT_EQ(pref->size(), 1u);
  EXPECT_EQ((*pref)[0].rejected, std::vector<std::string>{"b"});
  EXPECT_EQ((*pref)[0].source, "pref.jsonl:1");
}

TEST_F(JsonlTest, MissingFileIsNotFound) {
  auto r = LoadExamplesJsonl((dir_ / "nope.jsonl").string(), {}, BadLinePolicy::kError);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nope.jsonl"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::data
