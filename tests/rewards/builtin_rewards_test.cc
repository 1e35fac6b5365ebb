// Tests of the built-in rewards and the synthetic task verifiers (rewards/builtin_rewards.h).
#include "rewards/builtin_rewards.h"

#include <gtest/gtest.h>

namespace chainrl::rewards {
namespace {

std::unique_ptr<BuiltinReward> Make(const std::string& kind, const std::string& options = "") {
  auto r = MakeBuiltinReward("r", kind, options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

RewardInput In(std::string response, std::string answer_json = "null",
               std::string metadata_json = "{}") {
  RewardInput in;
  in.example_id = "ex";
  in.response = std::move(response);
  in.answer_json = std::move(answer_json);
  in.metadata_json = std::move(metadata_json);
  return in;
}

double Component(const RewardOutcome& o, const std::string& name) {
  for (const auto& c : o.components)
    if (c.first == name) return c.second;
  ADD_FAILURE() << "no component " << name;
  return -1;
}

TEST(MathReward, ScoresAndDiagnoses) {
  auto r = Make("math");
  EXPECT_EQ(r->Score(In("so \\boxed{\\frac{1}{2}}", "0.5")).score, 1.0);
  EXPECT_EQ(r->Score(In("The answer is 72.", "\"#### 72\"")).score, 1.0);
  RewardOutcome wrong = r->Score(In("\\boxed{3}", "\"4\""));
  EXPECT_EQ(wrong.score, 0.0);
  EXPECT_EQ(wrong.error, RewardError::kNone);
  EXPECT_NE(wrong.message.find("'3'"), std::string::npos) << wrong.message;
  RewardOutcome none = r->Score(In("no idea", "4"));
  EXPECT_EQ(none.score, 0.0);
  EXPECT_EQ(none.error, RewardError::kNone);
  EXPECT_EQ(none.message, "no final answer found");
  EXPECT_EQ(Component(none, "answer_found"), 0.0);
  RewardOutcome no_ref = r->Score(In("\\boxed{3}", "null"));
  EXPECT_EQ(no_ref.error, RewardError::kPluginError);
}

TEST(MathReward, Tolerance) {
  auto strict = Make("math");
  auto loose = Make("math", "relative_tolerance = 1e-3");
  EXPECT_EQ(strict->Score(In("\\boxed{0.3333}", "\"1/3\"")).score, 0.0);
  EXPECT_EQ(loose->Score(In("\\boxed{0.3333}", "\"1/3\"")).score, 1.0);
}

TEST(ExactMatchReward, Modes) {
  auto r = Make("exact_match");
  EXPECT_EQ(r->Score(In("The answer is Paris.", "\"Paris\"")).score, 1.0);
  EXPECT_EQ(r->Score(In("The answer is paris.", "\"Paris\"")).score, 0.0);
  auto ci = Make("exact_match", "case_sensitive = false");
  EXPECT_EQ(ci->Score(In("The answer is paris.", "\"Paris\"")).score, 1.0);
  auto whole = Make("exact_match", "extract = false");
  EXPECT_EQ(whole->Score(In("  hello world\n", "\"hello world\"")).score, 1.0);
  EXPECT_EQ(whole->Score(In("hello world!", "\"hello world\"")).score, 0.0);
}

TEST(RegexReward, MatchesAndRejectsBadPattern) {
  auto r = Make("regex", "pattern = '^<think>[\\s\\S]*</think>'");
  EXPECT_EQ(r->Score(In("<think>a\nb</think> 4")).score, 1.0);
  EXPECT_EQ(r->Score(In("x <think>a</think>")).score, 0.0);
  auto full = Make("regex", "pattern = '\\d+'\nfull_match = true");
  EXPECT_EQ(full->Score(In("123")).score, 1.0);
  EXPECT_EQ(full->Score(In("123a")).score, 0.0);
  auto bad = MakeBuiltinReward("myregex", "regex", "pattern = '(unclosed'");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("myregex"), std::string::npos);
  EXPECT_NE(bad.status().message().find("pattern"), std::string::npos);
  EXPECT_FALSE(MakeBuiltinReward("r", "regex", "").ok());  // pattern required
}

TEST(FormatReward, RequiredTagsInOrder) {
  auto r = Make("format", "tags = ['think', 'answer']");
  RewardOutcome ok = r->Score(In("<think>hm</think> <answer>4</answer>"));
  EXPECT_EQ(ok.score, 1.0);
  EXPECT_EQ(Component(ok, "format/think"), 1.0);
  EXPECT_EQ(Component(ok, "format/answer"), 1.0);
  RewardOutcome swapped = r->Score(In("<answer>4</answer><think>hm</think>"));
  EXPECT_EQ(swapped.score, 0.0);
  EXPECT_EQ(Component(swapped, "format/think"), 1.0);
  EXPECT_EQ(Component(swapped, "format/answer"), 0.0);
  EXPECT_EQ(r->Score(In("<think>hm <answer>4</answer>")).score, 0.0);  // unclosed think
  EXPECT_EQ(r->Score(In("<think>a</think><think>b</think><answer>4</answer>")).score, 0.0);
  auto def = Make("format");
  EXPECT_EQ(def->Score(In("pre <think></think>")).score, 1.0);
  auto strict = Make("format", "strict = true");
  EXPECT_EQ(strict->Score(In("pre <think></think>")).score, 0.0);
  EXPECT_EQ(strict->Score(In("\n <think></think> post")).score, 1.0);
  EXPECT_FALSE(MakeBuiltinReward("r", "format", "tags = []").ok());
  EXPECT_FALSE(MakeBuiltinReward("r", "format", "tags = ['a>b']").ok());
}

TEST(LengthReward, LinearBetweenTargetAndMax) {
  auto r = Make("length", "target_tokens = 10\nmax_tokens = 30");
  auto with_tokens = [](size_t n, const char* finish = "stop") {
    RewardInput in = In("x");
    in.token_ids.assign(n, 1);
    in.finish_reason = finish;
    return in;
  };
  EXPECT_EQ(r->Score(with_tokens(5)).score, 1.0);
  EXPECT_EQ(r->Score(with_tokens(10)).score, 1.0);
  EXPECT_DOUBLE_EQ(r->Score(with_tokens(15)).score, 0.75);  // (30-15)/(30-10)
  EXPECT_EQ(r->Score(with_tokens(30)).score, 0.0);
  EXPECT_EQ(r->Score(with_tokens(5, "length")).score, 0.0);
  EXPECT_EQ(Component(r->Score(with_tokens(15)), "tokens"), 15.0);
  auto keep = Make("length", "target_tokens = 10\nzero_when_truncated = false");
  EXPECT_DOUBLE_EQ(keep->Score(with_tokens(15, "length")).score, 0.5);  // max = 20
  EXPECT_FALSE(MakeBuiltinReward("r", "length", "").ok());
  EXPECT_FALSE(MakeBuiltinReward("r", "length", "target_tokens = 10\nmax_tokens = 10").ok());
}

TEST(BuiltinOptions, ErrorsNameRewardAndKey) {
  auto unknown = MakeBuiltinReward("acc", "math", "tolerance = 0.1");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("acc"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("unknown option 'tolerance'"), std::string::npos)
      << unknown.status().message();
  auto type = MakeBuiltinReward("acc", "math", "relative_tolerance = 'x'");
  ASSERT_FALSE(type.ok());
  EXPECT_NE(type.status().message().find("relative_tolerance"), std::string::npos);
  auto syntax = MakeBuiltinReward("acc", "math", "a = = 1");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.status().message().find("line 1"), std::string::npos)
      << syntax.status().message();
  auto kind = MakeBuiltinReward("acc", "maths", "");
  ASSERT_FALSE(kind.ok());
  EXPECT_NE(kind.status().message().find("unknown kind 'maths'"), std::string::npos);
  EXPECT_TRUE(IsBuiltinRewardKind("task"));
  EXPECT_FALSE(IsBuiltinRewardKind("plugin"));
}

TEST(EvaluateExpression, ExactRationals) {
  auto v = EvaluateExpression("(25 - 5) * 3 / 4");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->numerator, 15);
  EXPECT_EQ(v->denominator, 1);
  EXPECT_EQ(v->literals, (std::vector<long long>{25, 5, 3, 4}));
  auto f = EvaluateExpression("1/3 + 1/6");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->numerator, 1);
  EXPECT_EQ(f->denominator, 2);
  auto neg = EvaluateExpression("-(2*3) + 10 \\times 2");
  ASSERT_TRUE(neg.ok());
  EXPECT_EQ(neg->numerator, 14);
  EXPECT_FALSE(EvaluateExpression("1/(2-2)").ok());
  EXPECT_FALSE(EvaluateExpression("2 +").ok());
  EXPECT_FALSE(EvaluateExpression("(2 + 3").ok());
  EXPECT_FALSE(EvaluateExpression("2 ^ 3").ok());
  EXPECT_FALSE(EvaluateExpression("99999999999 * 99999999999").ok());
  EXPECT_FALSE(EvaluateExpression(std::string(500, '(') + "1" + std::string(500, ')')).ok());
}

TEST(VerifyTask, Countdown) {
  const char* meta = R"({"task":"countdown","numbers":[25,5,3,4],"target":15})";
  EXPECT_EQ(VerifyTask("countdown", "<answer>(25 - 5) * 3 / 4</answer>", "null", meta).score, 1);
  EXPECT_EQ(VerifyTask("countdown", "<answer>(25-5)*3/4 = 15</answer>", "null", meta).score, 1);
  // Wrong value, reused number, missing number, number not given.
  EXPECT_EQ(VerifyTask("countdown", "<answer>25 - 5 - 3 - 4</answer>", "null", meta).score, 0);
  EXPECT_EQ(VerifyTask("countdown", "<answer>(25-5)*3/4*5/5</answer>", "null", meta).score, 0);
  EXPECT_EQ(VerifyTask("countdown", "<answer>5*3</answer>", "null", meta).score, 0);
  EXPECT_EQ(VerifyTask("countdown", "<answer>(26-6)*3/4</answer>", "null", meta).score, 0);
  const char* some = R"({"numbers":[25,5,3,4],"target":15,"use_all":false})";
  EXPECT_EQ(VerifyTask("countdown", "<answer>5*3</answer>", "null", some).score, 1);
  TaskVerdict bad = VerifyTask("countdown", "5*3", "null", "{}");
  EXPECT_TRUE(bad.error);
}

TEST(VerifyTask, ArithmeticSortReverse) {
  EXPECT_EQ(VerifyTask("arithmetic", "12*3 = 36, so the answer is 36.", "36", "{}").score, 1);
  EXPECT_EQ(VerifyTask("arithmetic", "<answer>35</answer>", "36", "{}").score, 0);
  EXPECT_EQ(VerifyTask("sort", "<answer>[1, 2, 5]</answer>", "[1,2,5]", "{}").score, 1);
  EXPECT_EQ(VerifyTask("sort", "thinking\n1 2 5", "[1,2,5]", "{}").score, 1);
  EXPECT_EQ(VerifyTask("sort", "<answer>1, 5, 2</answer>", "[1,2,5]", "{}").score, 0);
  EXPECT_EQ(VerifyTask("sort", "<answer>1, 2</answer>", "[1,2,5]", "{}").score, 0);
  EXPECT_EQ(VerifyTask("sort", "<answer>1, two, 5</answer>", "[1,2,5]", "{}").score, 0);
  EXPECT_EQ(VerifyTask("reverse", "<answer> olleh </answer>", "\"olleh\"", "{}").score, 1);
  EXPECT_EQ(VerifyTask("reverse", "<answer>hello</answer>", "\"olleh\"", "{}").score, 0);
  EXPECT_EQ(VerifyTask("copy", "abc\nabc", "\"abc\"", "{}").score, 1);
  EXPECT_TRUE(VerifyTask("juggle", "x", "null", "{}").error);
}

TEST(TaskReward, DispatchesOnMetadata) {
  auto r = Make("task");
  EXPECT_EQ(r->Score(In("<answer>3 1</answer>", "[1,3]", R"({"task":"sort"})")).score, 0.0);
  EXPECT_EQ(r->Score(In("<answer>1 3</answer>", "[1,3]", R"({"task":"sort"})")).score, 1.0);
  EXPECT_EQ(r->Score(In("<answer>1 3</answer>", "[1,3]", "{}")).error, RewardError::kPluginError);
  auto def = Make("task", "default_task = 'sort'");
  EXPECT_EQ(def->Score(In("<answer>1 3</answer>", "[1,3]", "{}")).score, 1.0);
}

}  // namespace
}  // namespace chainrl::rewards
