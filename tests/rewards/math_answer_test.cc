// Tests of final-answer extraction and numeric comparison (rewards/math_answer.h).
#include "rewards/math_answer.h"

#include <gtest/gtest.h>

namespace chainrl::rewards {
namespace {

ExtractedAnswer X(const char* s) { return ExtractFinalAnswer(s); }

TEST(ExtractFinalAnswer, BoxedTakesLastAndHandlesNesting) {
  EXPECT_EQ(X("so \\boxed{\\frac{1}{2}}.").text, "\\frac{1}{2}");
  EXPECT_EQ(X("so \\boxed{\\frac{1}{2}}.").method, "boxed");
  EXPECT_EQ(X("first \\boxed{3} then \\boxed{ 42 }").text, "42");
  EXPECT_EQ(X("\\boxed{\\sqrt{\\frac{a}{b}}}").text, "\\sqrt{\\frac{a}{b}}");
  EXPECT_EQ(X("\\boxed 7$").text, "7");
  EXPECT_EQ(X("\\fbox{9} and later \\boxed{10}").text, "10");
  EXPECT_EQ(X("\\boxed{10} and later \\fbox{9}").text, "9");
  // Unbalanced last box: falls back to the earlier balanced one.
  EXPECT_EQ(X("\\boxed{5} \\boxed{6").text, "5");
  // Boxed wins over "the answer is".
  EXPECT_EQ(X("The answer is 3. Final: \\boxed{4}").text, "4");
}

TEST(ExtractFinalAnswer, AnswerIsPhrase) {
  ExtractedAnswer a = X("Thinking... The answer is 7.");
  EXPECT_TRUE(a.found);
  EXPECT_EQ(a.text, "7");
  EXPECT_EQ(a.method, "answer_is");
  EXPECT_EQ(X("the final answer is: 3.5. Done").text, "3.5");
  EXPECT_EQ(X("THE ANSWER IS $\\frac{3}{4}$.").text, "\\frac{3}{4}");
  EXPECT_EQ(X("answer is 1 at first, but the answer is -2\nmore").text, "-2");
}

TEST(ExtractFinalAnswer, LastNumber) {
  EXPECT_EQ(X("we get 12 apples and 1,000 pears").text, "1,000");
  EXPECT_EQ(X("we get 12 apples and 1,000 pears").method, "last_number");
  EXPECT_EQ(X("total: -3").text, "-3");
  EXPECT_EQ(X("x-3").text, "3");  // a minus after a letter is subtraction, not a sign
  EXPECT_EQ(X("ratio 3/4 here").text, "3/4");
  EXPECT_EQ(X("about 2.50 dollars").text, "2.50");
  EXPECT_EQ(X("1,2345").text, "2345");  // not a thousands group: two numbers
}

TEST(ExtractFinalAnswer, NothingFound) {
  ExtractedAnswer a = X("I do not know.");
  EXPECT_FALSE(a.found);
  EXPECT_EQ(a.text, "");
  EXPECT_FALSE(X("").found);
}

TEST(ParseNumber, Forms) {
  auto v = [](const char* s) {
    auto p = ParseNumber(s);
    EXPECT_TRUE(p.has_value()) << s;
    return p ? p->value : -999.0;
  };
  EXPECT_DOUBLE_EQ(v("42"), 42);
  EXPECT_DOUBLE_EQ(v("-3"), -3);
  EXPECT_DOUBLE_EQ(v("+3"), 3);
  EXPECT_DOUBLE_EQ(v("1,000"), 1000);
  EXPECT_DOUBLE_EQ(v("1,234,567.5"), 1234567.5);
  EXPECT_DOUBLE_EQ(v("0.5"), 0.5);
  EXPECT_DOUBLE_EQ(v("3/4"), 0.75);
  EXPECT_DOUBLE_EQ(v("\\frac{1}{2}"), 0.5);
  EXPECT_DOUBLE_EQ(v("\\dfrac{3}{8}"), 0.375);
  EXPECT_DOUBLE_EQ(v("\\tfrac{-6}{4}"), -1.5);
  EXPECT_DOUBLE_EQ(v("-\\frac{1}{4}"), -0.25);
  EXPECT_DOUBLE_EQ(v("\\frac34"), 0.75);
  EXPECT_DOUBLE_EQ(v("\\frac{1,000}{8}"), 125);
  EXPECT_DOUBLE_EQ(v("$ 12 $"), 12);
  EXPECT_DOUBLE_EQ(v("{42}"), 42);
  EXPECT_DOUBLE_EQ(v("x = 5"), 5);
  EXPECT_DOUBLE_EQ(v("50\\%"), 50);
  EXPECT_DOUBLE_EQ(v("90^\\circ"), 90);
  EXPECT_DOUBLE_EQ(v("5\\text{ }"), 5);
  EXPECT_DOUBLE_EQ(v("1{,}000"), 1000);
}

TEST(ParseNumber, Rejects) {
  for (const char* s : {"", "abc", "1,00", "12,3456", "1/0", "\\frac{1}{0}", "--3", "x",
                        "\\sqrt{2}", "1.2.3", "\\frac{1}"})
    EXPECT_FALSE(ParseNumber(s).has_value()) << s;
}

TEST(ParseNumber, ExactIntegers) {
  auto p = ParseNumber("123456789012345678");
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->exact_integer);
  EXPECT_EQ(p->integer, 123456789012345678LL);
  auto f = ParseNumber("\\frac{10}{5}");
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->exact_integer);
  EXPECT_EQ(f->integer, 2);
  EXPECT_FALSE(ParseNumber("2.0")->exact_integer);
}

TEST(AnswersMatch, Numeric) {
  EXPECT_TRUE(AnswersMatch("\\frac{1}{2}", "0.5"));
  EXPECT_TRUE(AnswersMatch("\\dfrac{1}{2}", "1/2"));
  EXPECT_TRUE(AnswersMatch("1,000", "1000"));
  EXPECT_TRUE(AnswersMatch(" 42 ", "42"));
  EXPECT_TRUE(AnswersMatch("-3", "-3.0"));
  EXPECT_TRUE(AnswersMatch("2.50", "2.5"));
  EXPECT_FALSE(AnswersMatch("0.333", "1/3"));
  EXPECT_FALSE(AnswersMatch("3", "-3"));
  // Large integers compare exactly, not within a relative tolerance.
  EXPECT_FALSE(AnswersMatch("1000000000001", "1000000000000"));
  EXPECT_TRUE(AnswersMatch("0.3333333333", "1/3", 1e-6));
  // A number never equals a non-number.
  EXPECT_FALSE(AnswersMatch("7", "seven"));
}

TEST(AnswersMatch, Symbolic) {
  EXPECT_TRUE(AnswersMatch("\\sqrt{2}", "\\sqrt{2}"));
  EXPECT_TRUE(AnswersMatch("\\left( 1, 2 \\right)", "(1,2)"));
  EXPECT_TRUE(AnswersMatch("\\text{Paris}", "Paris"));
  EXPECT_FALSE(AnswersMatch("\\sqrt{3}", "\\sqrt{2}"));
  EXPECT_FALSE(AnswersMatch("", ""));
}

TEST(ReferenceAnswerFromJson, Forms) {
  EXPECT_EQ(*ReferenceAnswerFromJson("\"42\""), "42");
  EXPECT_EQ(*ReferenceAnswerFromJson("42"), "42");
  EXPECT_EQ(*ReferenceAnswerFromJson("-7"), "-7");
  EXPECT_EQ(*ReferenceAnswerFromJson("\"Natalia sold 48 clips.\\n#### 72\""), "72");
  EXPECT_TRUE(AnswersMatch(*ReferenceAnswerFromJson("0.5"), "\\frac12"));
  EXPECT_FALSE(ReferenceAnswerFromJson("null").has_value());
  EXPECT_FALSE(ReferenceAnswerFromJson("[1]").has_value());
  EXPECT_FALSE(ReferenceAnswerFromJson("not json").has_value());
}

// End to end: extraction then comparison on typical responses.
TEST(MathPipeline, TypicalResponses) {
  struct Case {
    const char* response;
    const char* reference;
    bool match;
  } cases[] = {
      {"<think>1/2 of 1 is 0.5</think> \\boxed{\\frac{1}{2}}", "0.5", true},
      {"So the total is \\boxed{1,000}.", "1000", true},
      {"The answer is 7.", "7", true},
      {"We find x = -3, hence \\boxed{-3}", "-3", true},
      {"\\boxed{ 42 }", "42", true},
      {"\\boxed{41}", "42", false},
      {"Adding gives 5 and then 12", "12", true},
  };
  for (const Case& c : cases) {
    ExtractedAnswer a = ExtractFinalAnswer(c.response);
    ASSERT_TRUE(a.found) << c.response;
    EXPECT_EQ(AnswersMatch(a.text, c.reference), c.match) << c.response;
  }
}

}  // namespace
}  // namespace chainrl::rewards
