// Inputs that fuzz/chat_template_fuzz and fuzz/tokenizer_json_fuzz found crashing, hanging or
// producing out-of-vocabulary ids (scripts/fuzz.sh), each now a clear error naming the template
// position or the JSON path and the bound; or, where Python has an answer, that answer.
#include <gtest/gtest.h>

#include <string>

#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace chainrl {
namespace {

using ojson = nlohmann::ordered_json;

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string ParseError(const std::string& src) {
  auto t = ChatTemplate::Parse(src, "t.jinja");
  return t.ok() ? "parsed" : t.status().message();
}

std::string Render(const std::string& src) {
  auto t = ChatTemplate::Parse(src, "t.jinja");
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  auto r = t->Render(ojson::object());
  return r.ok() ? *r : "RENDER ERROR: " + r.status().message();
}

// std::stoll threw std::out_of_range through Parse (the process terminated).
TEST(ChatTemplateFuzzRegressions, IntegerLiteralOutOfRangeIsAnError) {
  EXPECT_EQ(ParseError("{{ xs[:77777777777777777777:-1] }}"),
            "t.jinja:1:8: integer literal 77777777777777777777 does not fit in 64 bits");
  EXPECT_EQ(Render("{{ 9223372036854775807 }}"), "9223372036854775807");
}

// std::stod threw on overflow and underflow; Python's float() gives inf and 0.0.
TEST(ChatTemplateFuzzRegressions, FloatLiteralsOverflowLikePython) {
  EXPECT_EQ(Render("{{ 1" + Repeat("0", 400) + ".0 > 1 }} {{ 0." + Repeat("0", 400) + "1 == 0 }}"),
            "True True");
}

// Each nesting level is a recursion of the parser and renderer: 100,000 levels overflowed the
// stack.
TEST(ChatTemplateFuzzRegressions, DeepExpressionsAreRefusedAtTheBound) {
  EXPECT_EQ(Render("{{ " + Repeat("(", 200) + "1" + Repeat(")", 200) + " }}"), "1");
  EXPECT_EQ(
      ParseError("{{ " + Repeat("(", 100000) + "1" + Repeat(")", 100000) + " }}"),
      "t.jinja:1:" + std::to_string(4 + 2 * 128) + ": expression nested deeper than 256 levels");
  EXPECT_EQ(
      ParseError("{{ " + Repeat("not ", 100000) + "x }}"),
      "t.jinja:1:" + std::to_string(4 + 4 * 255) + ": expression nested deeper than 256 levels");
  EXPECT_EQ(ParseError("{{ " + Repeat("-", 100000) + "1 }}"),
            "t.jinja:1:" + std::to_string(4 + 255) + ": expression nested deeper than 256 levels");
}

// A left-associative chain is a tree as deep as it is long (rendered and freed recursively).
TEST(ChatTemplateFuzzRegressions, LongOperatorChainsAreRefusedAtTheBound) {
  EXPECT_EQ(Render("{{ 1" + Repeat(" + 1", 200) + " }}"), "201");
  const std::string err = ParseError("{{ 1" + Repeat("+1", 100000) + " }}");
  EXPECT_NE(err.find(": expressions and blocks nested deeper than 256 levels"), std::string::npos)
      << err;
  EXPECT_EQ(err.rfind("t.jinja:1:", 0), 0u) << err;
}

TEST(ChatTemplateFuzzRegressions, DeepBlocksAreRefusedAtTheBound) {
  EXPECT_EQ(Render(Repeat("{% if true %}", 100) + "x" + Repeat("{% endif %}", 100)), "x");
  EXPECT_EQ(ParseError(Repeat("{% if true %}", 100000)),
            "t.jinja:1:" + std::to_string(4 + 13 * 256) + ": block nested deeper than 256 levels");
}

// A macro calling itself recursed until the stack overflowed.
TEST(ChatTemplateFuzzRegressions, RecursiveMacrosStopAtTheBound) {
  EXPECT_EQ(
      Render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}0{% endif %}{% endmacro %}"
             "{{ f(100) }}"),
      "0");
  EXPECT_EQ(Render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
            "RENDER ERROR: t.jinja:1:20: macro calls nested deeper than 256 levels");
}

// A list wrapped in a list in a loop, or a namespace holding itself, overflowed the stack of the
// code that printed or freed it.
TEST(ChatTemplateFuzzRegressions, DeepValuesAndNamespaceCyclesAreErrors) {
  EXPECT_EQ(Render("{% set ns = namespace(x=[]) %}{% for i in range(200000) %}"
                   "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|length }}"),
            "RENDER ERROR: t.jinja:1:62: values nested deeper than 256 levels");
  EXPECT_EQ(Render("{% set ns = namespace(x=[]) %}{% for i in range(100) %}"
                   "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|length }}"),
            "1");
  EXPECT_EQ(
      Render("{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns.a.a.a }}"),
      "RENDER ERROR: t.jinja:1:33: cannot set attribute 'a' to a namespace or a value holding "
      "one");
  EXPECT_EQ(
      Render("{% set ns = namespace(a=1) %}{% set ns.a = [{'x': ns}] %}"),
      "RENDER ERROR: t.jinja:1:33: cannot set attribute 'a' to a namespace or a value holding "
      "one");
}

// Signed overflow was undefined behaviour; `2 ** 10**12` looped 10^12 times.
TEST(ChatTemplateFuzzRegressions, IntegerOverflowIsAnError) {
  EXPECT_EQ(Render("{{ 9223372036854775807 + 1 }}"),
            "RENDER ERROR: t.jinja:1:24: integer overflow: 9223372036854775807 + 1 does not fit "
            "in 64 bits");
  EXPECT_EQ(Render("{{ 2 ** (10**12) }}"),
            "RENDER ERROR: t.jinja:1:6: integer overflow: 2 ** 1000000000000 does not fit in 64 "
            "bits");
  EXPECT_EQ(Render("{{ 2 ** 62 }} {{ (-1) ** (10**12) }} {{ 0 ** 0 }}"), "4611686018427387904 1 1");
  EXPECT_EQ(Render("{{ -(-9223372036854775807 - 1) }}"),
            "RENDER ERROR: t.jinja:1:4: integer overflow: -(-9223372036854775808)");
  EXPECT_EQ(Render("{{ (-9223372036854775807 - 1) // -1 }}"),
            "RENDER ERROR: t.jinja:1:31: integer overflow: -9223372036854775808 // -1 does not "
            "fit in 64 bits");
  EXPECT_EQ(Render("{{ [9223372036854775807, 1]|sum }}"),
            "RENDER ERROR: t.jinja:1:28: integer overflow in sum");
  EXPECT_EQ(Render("{{ 1" + Repeat("0", 300) + ".0|int }}"),
            "RENDER ERROR: t.jinja:1:307: int of 1e+300: out of the 64-bit range");
  EXPECT_EQ(Render("{{ range(9223372036854775806, 9223372036854775807, 10)|list }}"),
            "[9223372036854775806]");
  EXPECT_EQ(Render("{{ [1, 2, 3][1::9223372036854775807] }}"), "[2]");
}

// A TemplateProcessing post-processor's ids were added by Encode() as they were, outside the
// vocabulary (a model's embedding lookup then reads out of bounds).
TEST(TokenizerFuzzRegressions, PostProcessorIdsMustNameTokens) {
  const std::string tok = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [IDS]}}}})";
  auto with_ids = [&](const std::string& ids) {
    std::string t = tok;
    t.replace(t.find("IDS"), 3, ids);
    auto r = Tokenizer::FromJsonText(t, "", "x/tokenizer.json");
    return r.ok() ? "loaded" : r.status().message();
  };
  EXPECT_EQ(with_ids("1"), "loaded");
  EXPECT_EQ(with_ids("128000"),
            "x/tokenizer.json: post_processor.special_tokens[\"<s>\"].ids: id 128000 is "
            "not in the vocabulary");
  EXPECT_EQ(with_ids("\"x\""),
            "x/tokenizer.json: post_processor.special_tokens[\"<s>\"].ids: id \"x\" is "
            "not in the vocabulary");
}

// A vocabulary id of 2^31 - 1 sized the id tables at 2^31 entries (tens of GB).
TEST(TokenizerFuzzRegressions, HugeIdsAreRefused) {
  auto r = Tokenizer::FromJsonText(
      R"({"model": {"type": "BPE", "vocab": {"a": 2147483647}, "merges": []}})", "",
      "x/tokenizer.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "x/tokenizer.json: model.vocab[\"a\"]: id 2147483647 is over the limit of 16777215");
  r = Tokenizer::FromJsonText(
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "added_tokens": [{"id": 4294967296, "content": "<x>"}]})",
      "", "x/tokenizer.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "x/tokenizer.json: added_tokens[0]: id 4294967296 is outside [0, 16777215]");
}

}  // namespace
}  // namespace chainrl
