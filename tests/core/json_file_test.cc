// Tests for core/json_file.h: files are read whole only up to their bound, and JSON nested past
// the depth bound is refused naming the file and the bound, before anything deep is built, at any
// depth (100,000 and 1,000,000 levels, where a recursive walk would overflow the stack). Also the
// readers that use it: a JSONL example and a model's config.json nested that deep.
#include "core/json_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/jsonl.h"
#include "model/hf_config.h"

namespace chainrl {
namespace {

namespace fs = std::filesystem;

std::string Nested(int depth, const std::string& inner = "1") {
  return std::string(static_cast<size_t>(depth), '[') + inner +
         std::string(static_cast<size_t>(depth), ']');
}

std::string Write(const std::string& name, const std::string& text) {
  const fs::path d = fs::temp_directory_path() / ("chainrl_json_file_" + std::to_string(getpid()));
  fs::create_directories(d);
  const std::string p = (d / name).string();
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

TEST(JsonFileTest, DepthUpToTheBoundParsesAndDeeperIsRefused) {
  auto ok = ParseJson(Nested(kMaxJsonDepth), "a.json");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  const nlohmann::json* v = &*ok;
  for (int i = 0; i < kMaxJsonDepth; ++i) v = &(*v)[0];
  EXPECT_EQ(*v, 1);
  for (int depth : {kMaxJsonDepth + 1, 100000, 1000000}) {
    auto deep = ParseJson(Nested(depth), "a.json");
    ASSERT_FALSE(deep.ok()) << depth;
    EXPECT_EQ(deep.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(deep.status().message(), "a.json: JSON nested deeper than 512 levels");
  }
  // Objects count as arrays do; the caller's bound and code are used.
  auto objects = ParseJson(R"({"a": {"b": {"c": 1}}})", "o.json", 2, StatusCode::kCorrupt);
  ASSERT_FALSE(objects.ok());
  EXPECT_EQ(objects.status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(objects.status().message(), "o.json: JSON nested deeper than 2 levels");
  EXPECT_TRUE(ParseJson(R"({"a": {"b": 1}})", "o.json", 2).ok());
}

TEST(JsonFileTest, InvalidJsonIsNamed) {
  for (const char* bad : {"{\"a\": ", "[1, 2", "", "1 2", "{\"a\" 1}"}) {
    auto r = ParseJson(bad, "x.json");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().message().rfind("x.json: not valid JSON (", 0), 0u)
        << r.status().message();
  }
  EXPECT_TRUE(CheckJson("{\"a\": [1, {\"b\": null}]}", "x.json").ok());
}

TEST(JsonFileTest, FilesAreReadUpToTheirBound) {
  const std::string p = Write("f.json", R"({"k": [1, 2, 3]})");
  auto j = ReadJsonFile(p, 1024);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["k"][2], 3);
  auto big = ReadFileBounded(p, 10);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(big.status().message(), p + ": 16 bytes, over the limit of 10 for this file");
  auto exact = ReadFileBounded(p, 16);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->size(), 16u);
  auto missing = ReadFileBounded(p + ".missing", 10);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), p + ".missing: cannot open (No such file or directory)");
  auto deep = ReadJsonFile(Write("deep.json", Nested(200000)), 1 << 20);
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("deep.json: JSON nested deeper than 512"),
            std::string::npos);
}

// A JSONL example whose meta nests 100,000 deep: one clear error naming the line, or skipped and
// counted, never a crash.
TEST(JsonFileTest, DeeplyNestedJsonlLineIsNamedOrSkipped) {
  const std::string p = Write("deep.jsonl",
                              "{\"prompt\": \"a\", \"answer\": 1}\n"
                              "{\"prompt\": \"b\", \"meta\": " +
                                  Nested(100000) +
                                  "}\n"
                                  "{\"prompt\": \"c\"}\n");
  auto err = data::LoadExamplesJsonl(p, {}, data::BadLinePolicy::kError);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find(p + ":2: JSON nested deeper than 512 levels"),
            std::string::npos)
      << err.status().message().substr(0, 300);
  data::JsonlStats st;
  auto skipped = data::LoadExamplesJsonl(p, {}, data::BadLinePolicy::kSkip, &st);
  ASSERT_TRUE(skipped.ok()) << skipped.status().ToString();
  ASSERT_EQ(skipped->size(), 2u);
  EXPECT_EQ((*skipped)[1].prompt, "c");
  EXPECT_EQ(st.skipped, 1);
}

// A model's config.json with a key nested 200,000 deep.
TEST(JsonFileTest, DeeplyNestedModelConfigIsRefused) {
  const std::string p =
      Write("config.json", "{\"model_type\": \"qwen2\", \"x\": " + Nested(200000) + "}");
  auto c = model::LoadModelConfig(p);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(), p + ": JSON nested deeper than 512 levels");
}

}  // namespace
}  // namespace chainrl
