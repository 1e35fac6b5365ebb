// PromptRenderer: chat-template prompts, SFT targets and stop ids against hand-built token ids on a
// byte-level tokenizer, plus the Qwen3 tokenizer when the test assets exist.
#include "rollout/prompting.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/run_config.h"
#include "tests/rollout/byte_tokenizer_files.h"

namespace chainrl::rollout {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using chainrl::testing::WriteByteTokenizerFiles;

constexpr int32_t kEndOfText = 256, kImStart = 257, kImEnd = 258;
constexpr char kTemplate[] =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

std::string TempDir(const std::string& name) {
  auto d =
      fs::temp_directory_path() / ("chainrl_prompting_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::vector<int32_t> Bytes(std::string_view s) {
  std::vector<int32_t> v;
  for (unsigned char c : s) v.push_back(c);
  return v;
}

std::vector<int32_t> Cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> v;
  for (const auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

data::Example Prompt(std::string id, std::string prompt) {
  data::Example e;
  e.id = std::move(id);
  e.prompt = std::move(prompt);
  return e;
}

std::unique_ptr<PromptRenderer> Make(const PromptOptions& o) {
  auto r = PromptRenderer::Create(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : nullptr;
}

TEST(PromptingTest, ChatPromptIsTheTemplateWithGenerationPrompt) {
  const std::string dir = TempDir("chat");
  WriteByteTokenizerFiles(dir, {{"eos_token", "<|endoftext|>"}, {"chat_template", kTemplate}});
  PromptOptions o;
  o.tokenizer_dir = dir;
  auto r = Make(o);
  ASSERT_NE(r, nullptr);
  auto ids = r->Render(Prompt("a", "hi"));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  // <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n
  EXPECT_EQ(*ids, Cat({{kImStart},
                       Bytes("user\nhi"),
                       {kImEnd},
                       Bytes("\n"),
                       {kImStart},
                       Bytes("assistant\n")}));
  auto text = r->RenderText(Prompt("a", "hi"));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");

  // The end-of-turn token is found from the template; SFT targets end with it.
  ASSERT_TRUE(r->end_of_turn_id().has_value());
  EXPECT_EQ(*r->end_of_turn_id(), kImEnd);
  auto target = r->EncodeResponse("x = 42");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, Cat({Bytes("x = 42"), {kImEnd}}));
  // EOS first, then the end-of-turn token.
  EXPECT_EQ(r->stop_token_ids(), (std::vector<int32_t>{kEndOfText, kImEnd}));
  auto back = r->DecodeResponse(Cat({Bytes("ok"), {kImEnd}}));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "ok");
  // Ids beyond the tokenizer (padding rows of a model's embedding) stand for no text.
  auto padded = r->DecodeResponse({'o', 300, 'k', 4096});
  ASSERT_TRUE(padded.ok()) << padded.status().ToString();
  EXPECT_EQ(*padded, "ok");
}

TEST(PromptingTest, SystemPromptAndMessages) {
  const std::string dir = TempDir("system");
  WriteByteTokenizerFiles(dir, {{"eos_token", "<|endoftext|>"}, {"chat_template", kTemplate}});
  PromptOptions o;
  o.tokenizer_dir = dir;
  o.system_prompt = "be brief";
  auto r = Make(o);
  ASSERT_NE(r, nullptr);
  auto text = r->RenderText(Prompt("a", "hi"));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Messages are used as given; one that already starts with a system turn keeps its own.
  data::Example m;
  m.id = "m";
  m.messages = json::array({{{"role", "system"}, {"content", "S"}},
                            {{"role", "user"}, {"content", "q"}},
                            {{"role", "assistant"}, {"content", "a"}},
                            {{"role", "user"}, {"content", "q2"}}});
  auto mt = r->RenderText(m);
  ASSERT_TRUE(mt.ok()) << mt.status().ToString();
  EXPECT_EQ(*mt,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant"
            "\na<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n");
  auto ids = r->Render(m);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(static_cast<int>(std::count(ids->begin(), ids->end(), kImStart)), 5);

  // Malformed messages name the example.
  data::Example bad;
  bad.id = "bad-7";
  bad.messages = json::array({{{"role", "user"}}});
  auto e = r->Render(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("bad-7"), std::string::npos) << e.status().ToString();
  EXPECT_NE(e.status().message().find("messages[0]"), std::string::npos);
  EXPECT_FALSE(r->Render(Prompt("empty", "")).ok());
}

TEST(PromptingTest, PlainTextWithoutTemplate) {
  const std::string dir = TempDir("plain");
  // No chat template at all; EOS only.
  WriteByteTokenizerFiles(dir, {{"eos_token", "<|endoftext|>"}});
  PromptOptions o;
  o.tokenizer_dir = dir;
  auto missing = PromptRenderer::Create(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("tokenizer_config.json"), std::string::npos)
      << missing.status().ToString();

  o.use_chat_template = false;
  o.system_prompt = "sys";
  auto r = Make(o);
  ASSERT_NE(r, nullptr);
  auto ids = r->Render(Prompt("p", "2+2="));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, Bytes("sys\n\n2+2="));
  EXPECT_FALSE(r->end_of_turn_id().has_value());
  auto target = r->EncodeResponse("4");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, Cat({Bytes("4"), {kEndOfText}}));
  EXPECT_EQ(r->stop_token_ids(), (std::vector<int32_t>{kEndOfText}));
}

TEST(PromptingTest, TemplateOverrideAndGenerationConfig) {
  const std::string dir = TempDir("override");
  WriteByteTokenizerFiles(dir, {{"eos_token", "<|endoftext|>"}, {"chat_template", "{{ nonsense"}},
                          {{"eos_token_id", json::array({258, 256, 257})}});
  PromptOptions o;
  o.tokenizer_dir = dir;
  auto broken = PromptRenderer::Create(o);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("tokenizer_config.json"), std::string::npos)
      << broken.status().ToString();

  o.chat_template = "Q: {{ messages[-1].content }}{% if add_generation_prompt %} A:{% endif %}";
  auto r = Make(o);
  ASSERT_NE(r, nullptr);
  auto ids = r->Render(Prompt("p", "1+1"));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, Bytes("Q: 1+1 A:"));
  // This template writes nothing after a turn: SFT targets end with EOS.
  EXPECT_FALSE(r->end_of_turn_id().has_value());
  // generation_config.json adds its ids, without duplicates, after EOS.
  EXPECT_EQ(r->stop_token_ids(), (std::vector<int32_t>{kEndOfText, kImEnd, kImStart}));

  // An eos id beyond the vocabulary names the file.
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": 100000})";
  auto bad = PromptRenderer::Create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("generation_config.json"), std::string::npos);

  o.tokenizer_dir = dir + "/nope";
  auto none = PromptRenderer::Create(o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find(dir + "/nope"), std::string::npos)
      << none.status().ToString();
}

TEST(PromptingTest, OptionsFromConfig) {
  auto c = ParseConfig(
      "[model]\npath = \"models/m\"\n[tokenizer]\nuse_chat_template = false\n"
      "system_prompt = \"think\"\nchat_template = \"{{ x }}\"\n",
      "run.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  PromptOptions o = PromptOptionsFromConfig(*c);
  EXPECT_EQ(o.tokenizer_dir, "models/m");
  EXPECT_EQ(o.generation_config_dir, "models/m");
  EXPECT_FALSE(o.use_chat_template);
  EXPECT_EQ(o.system_prompt, "think");
  EXPECT_EQ(o.chat_template, "{{ x }}");
  auto c2 = c->WithOverrides({"tokenizer.path=\"tok\""});
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(PromptOptionsFromConfig(*c2).tokenizer_dir, "tok");
}

std::string AssetsDir() {
  if (const char* d = std::getenv("CHAINRL_ASSETS_DIR")) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/chainrl/assets";
}

TEST(PromptingTest, Qwen3Tokenizer) {
  const std::string dir = AssetsDir() + "/qwen3";
  if (!fs::exists(dir + "/tokenizer.json"))
    GTEST_SKIP() << "test assets missing in " << dir << " (run scripts/fetch_test_assets.sh)";
  PromptOptions o;
  o.tokenizer_dir = dir;
  auto r = Make(o);
  ASSERT_NE(r, nullptr);
  const Tokenizer& t = r->tokenizer();
  const auto im_start = t.TokenToId("<|im_start|>"), im_end = t.TokenToId("<|im_end|>");
  ASSERT_TRUE(im_start && im_end);
  EXPECT_EQ(r->end_of_turn_id(), im_end);
  EXPECT_EQ(r->stop_token_ids(), std::vector<int32_t>{*im_end});  // eos_token is <|im_end|>
  auto ids = r->Render(Prompt("q", "What is 2+3?"));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  auto expected = t.Encode("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n");
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(*ids, *expected);
  EXPECT_EQ(ids->front(), *im_start);
  auto target = r->EncodeResponse("5");
  ASSERT_TRUE(target.ok());
  ASSERT_EQ(target->size(), 2u);
  EXPECT_EQ(target->back(), *im_end);
}

}  // namespace
}  // namespace chainrl::rollout
