// Tests of model/chat_template.h: the Jinja subset on hand-written templates with hand-derived
// output, errors with positions, the Qwen2.5 template (scripts/chat_template_qwen2_5.jinja), and,
// when the test assets exist, byte equality with Hugging Face's Jinja renderer for the Qwen3,
// Llama 3 and Qwen2.5 templates.
#include "model/chat_template.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace chainrl {
namespace {

using ojson = nlohmann::ordered_json;

std::string Render(const std::string& src, const ojson& ctx = ojson::object()) {
  auto t = ChatTemplate::Parse(src, "t");
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  auto r = t->Render(ctx);
  if (!r.ok()) return "RENDER ERROR: " + r.status().message();
  return *r;
}

TEST(ChatTemplate, TextAndExpressions) {
  EXPECT_EQ(Render("hello"), "hello");
  EXPECT_EQ(Render("a{{ 1 + 2 * 3 }}b"), "a7b");
  EXPECT_EQ(Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
            "3 -4 1 3.5 1024");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none ~ true }}"), "a1NoneTrue");
  EXPECT_EQ(Render("{{ x }}|{{ x.y is defined }}", {{"x", {{"z", 1}}}}), "{'z': 1}|False");
  EXPECT_EQ(
      Render("{{ 'yes' if a else 'no' }}{{ 'yes' if b else 'no' }}", {{"a", true}, {"b", ""}}),
      "yesno");
  EXPECT_EQ(Render("{{ 'ab' in 'cabd' }}{{ 3 not in [1, 2] }}{{ 'k' in {'k': 1} }}"),
            "TrueTrueTrue");
  EXPECT_EQ(Render("{{ [1, 2, 3][::-1] }}{{ 'hello'[1:3] }}{{ [1, 2, 3][-1] }}"), "[3, 2, 1]el3");
  EXPECT_EQ(Render("{{ 1 == 1.0 and not (2 < 1) or x }}"), "True");
}

TEST(ChatTemplate, WhitespaceControlAndBlockTrimming) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(Render("{% if true %}\n  a\n  {% endif %}\nb"), "  a\nb");
  EXPECT_EQ(Render("x  {%- if true -%}  y  {%- endif -%}  z"), "xyz");
  EXPECT_EQ(Render("a\n  {{- 'b' -}}\n  c"), "abc");
  EXPECT_EQ(Render("{# comment #}\nA"), "A");
  // One trailing newline of the template is dropped.
  EXPECT_EQ(Render("a\n"), "a");
  EXPECT_EQ(Render("a\n\n"), "a\n");
}

TEST(ChatTemplate, LoopsSetNamespaceMacros) {
  ojson ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(
      Render(
          "{% for x in xs %}{{ loop.index0 }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}",
          ctx),
      "0a,1b,2c");
  EXPECT_EQ(Render("{% for x in xs if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}", ctx),
            "1a2c");
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(
      Render("{% for x in xs %}{% if x == 'b' %}{% break %}{% endif %}{{ x }}{% endfor %}", ctx),
      "a");
  EXPECT_EQ(Render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                   {{"d", {{"z", 1}, {"a", 2}}}}),
            "z=1;a=2;");
  // A plain set inside a loop does not leak out; a namespace attribute does.
  EXPECT_EQ(
      Render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in xs %}{% set n = n + 1 %}"
             "{% set ns.n = ns.n + 1 %}{% endfor %}{{ n }}{{ ns.n }}",
             ctx),
      "03");
  EXPECT_EQ(Render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('A') }} {{ greet('B', punct='?') }}"),
            "Hi A! Hi B?");
  EXPECT_EQ(Render("{% set s %}in{{ 1 }}{% endset %}[{{ s }}]"), "[in1]");
}

TEST(ChatTemplate, FiltersMethodsTests) {
  EXPECT_EQ(
      Render("{{ '  x  '|trim }}|{{ xs|length }}|{{ xs|join('-') }}|{{ xs|first }}{{ xs|last }}",
             {{"xs", {"a", "b"}}}),
      "x|2|a-b|ab");
  EXPECT_EQ(Render("{{ d|tojson }}", {{"d", {{"b", {1, 2.5, nullptr}}, {"a", "\"q\" é\n"}}}}),
            R"({"b": [1, 2.5, null], "a": "\"q\" é\n"})");
  EXPECT_EQ(Render("{{ d|tojson(indent=2) }}", {{"d", {{"a", {1}}, {"e", ojson::object()}}}}),
            "{\n  \"a\": [\n    1\n  ],\n  \"e\": {}\n}");
  EXPECT_EQ(
      Render(
          "{{ 'a<b>c'.split('<')[-1].split('>')[0] }}|{{ 'xxhixx'.strip('x') }}|"
          "{{ '\\n\\nhi\\n'.lstrip('\\n') }}|{{ 'Hi'.startswith('H') }}{{ 'Hi'.endswith('x') }}"),
      "b|hi|hi\n|TrueFalse");
  EXPECT_EQ(Render("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }}",
                   {{"ms",
                     {{{"role", "user"}, {"c", "1"}},
                      {{"role", "sys"}, {"c", "2"}},
                      {{"role", "user"}, {"c", "3"}}}}}),
            "13");
  EXPECT_EQ(Render("{{ x is none }}{{ y is not defined }}{{ 3 is odd }}{{ 's' is string }}{{ {} is "
                   "mapping }}",
                   {{"x", nullptr}}),
            "TrueTrueTrueTrueTrue");
  EXPECT_EQ(Render("{{ x|default('d') }}{{ ''|default('e', true) }}"), "de");
}

TEST(ChatTemplate, ErrorsNamePositionAndConstruct) {
  auto t =
      ChatTemplate::Parse("line1\n{% for x in xs %}{{ x|frobnicate }}{% endfor %}", "cfg.json");
  ASSERT_TRUE(t.ok());
  auto r = t->Render({{"xs", {1}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cfg.json:2:"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("unsupported filter 'frobnicate'"), std::string::npos);

  auto p = ChatTemplate::Parse("ab\n  {% include 'x' %}", "cfg.json");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("cfg.json:2:6: unsupported statement '{% include %}'"),
            std::string::npos)
      << p.status().message();

  auto q = ChatTemplate::Parse("{% if x %}never closed", "t");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("missing {% endif %}"), std::string::npos)
      << q.status().message();

  auto e = ChatTemplate::Parse("{{ raise_exception('Only user and assistant roles') }}", "t");
  ASSERT_TRUE(e.ok());
  auto er = e->Render(ojson::object());
  ASSERT_FALSE(er.ok());
  EXPECT_NE(er.status().message().find("raise_exception: Only user and assistant roles"),
            std::string::npos);

  EXPECT_NE(Render("{{ range(10**12)|length }}").find("RENDER ERROR"), std::string::npos);
  EXPECT_NE(Render("{{ 'ab' * 10**12 }}").find("RENDER ERROR"), std::string::npos);

  auto u = ChatTemplate::Parse("{{ missing.attr }}", "t");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->Render(ojson::object()).ok());
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ChatTemplate, Qwen25HandDerived) {
  std::string src =
      ReadText(std::string(CHAINRL_SOURCE_DIR) + "/scripts/chat_template_qwen2_5.jinja");
  ASSERT_FALSE(src.empty());
  auto t = ChatTemplate::Parse(src, "qwen2_5");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto r = RenderChat(*t, {{"user", "Hi", nullptr}}, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  r = RenderChat(
      *t, {{"system", "S", nullptr}, {"user", "U", nullptr}, {"assistant", "A", nullptr}}, false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>"
            "assistant\nA<|im_end|>\n");
}

// ---- Reference renderings (assets fetched by scripts/fetch_test_assets.sh) -------------------

std::string AssetsDir() {
  if (const char* d = std::getenv("CHAINRL_ASSETS_DIR")) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/chainrl/assets";
}

class ChatReference : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatReference, ByteIdenticalToHuggingFaceJinja) {
  const std::string dir = AssetsDir() + "/" + GetParam();
  if (!std::filesystem::exists(dir + "/reference_chat.json"))
    GTEST_SKIP() << "test assets missing in " << dir << " (run scripts/fetch_test_assets.sh)";
  // The model's own template, read from tokenizer_config.json as a user would.
  auto own = ChatTemplate::FromTokenizerConfig(dir + "/tokenizer_config.json");
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  std::ifstream in(dir + "/reference_chat.json");
  ojson ref = ojson::parse(in);
  int checked = 0;
  for (auto it = ref["templates"].begin(); it != ref["templates"].end(); ++it) {
    const std::string tname = it.key();
    ChatTemplate tmpl = *own;
    if (tname != "own") {
      auto t = ChatTemplate::Parse(it.value()["template"].get<std::string>(), tname);
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      tmpl = *t;
      tmpl.bos_token = own->bos_token;
      tmpl.eos_token = own->eos_token;
    } else {
      ASSERT_EQ(own->source(), it.value()["template"].get<std::string>());
    }
    for (const ojson& c : it.value()["cases"]) {
      std::vector<ChatMessage> msgs;
      for (const ojson& m : c["messages"]) {
        ChatMessage cm{m["role"], m["content"], ojson::object()};
        for (auto f = m.begin(); f != m.end(); ++f)
          if (f.key() != "role" && f.key() != "content") cm.extra[f.key()] = f.value();
        msgs.push_back(std::move(cm));
      }
      auto r = RenderChat(tmpl, msgs, c["add_generation_prompt"].get<bool>(), c["extra_context"]);
      std::string label = GetParam() + "/" + tname + "/" + c["name"].get<std::string>() +
                          (c["add_generation_prompt"].get<bool>() ? "+gen" : "") + " " +
                          c["extra_context"].dump();
      if (c["rendered"].is_null()) {
        EXPECT_FALSE(r.ok()) << label << " should fail like the reference: " << c["error"];
      } else {
        ASSERT_TRUE(r.ok()) << label << ": " << r.status().ToString();
        EXPECT_EQ(*r, c["rendered"].get<std::string>()) << label;
      }
      ++checked;
    }
  }
  std::printf("[ %s ] %d chat renderings compared\n", GetParam().c_str(), checked);
  EXPECT_GT(checked, 10);
}

INSTANTIATE_TEST_SUITE_P(Models, ChatReference, ::testing::Values("qwen3", "llama3", "llama3_1"));

}  // namespace
}  // namespace chainrl
