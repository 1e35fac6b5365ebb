// Stop strings matched across token boundaries, with offsets into the whole response.
#include "rollout/stop_strings.h"

#include <gtest/gtest.h>

namespace chainrl::rollout {
namespace {

TEST(StopMatcherTest, SplitAcrossTokens) {
  StopMatcher m({"</answer>"});
  EXPECT_FALSE(m.Append("<answer>42"));
  EXPECT_FALSE(m.Append("</"));
  EXPECT_FALSE(m.Append("ans"));
  auto hit = m.Append("wer> trailing");
  ASSERT_TRUE(hit);
  EXPECT_EQ(*hit, 10u);  // "<answer>42" is the response
}

TEST(StopMatcherTest, ByteAtATimeAndMultibyte) {
  std::string text = "think: 多少？ then STOP here";
  StopMatcher m({"？ then", "STOP"});
  std::optional<size_t> hit;
  for (char c : text) {
    hit = m.Append(std::string_view(&c, 1));
    if (hit) break;
  }
  ASSERT_TRUE(hit);
  EXPECT_EQ(text.substr(0, *hit), "think: 多少");
}

TEST(StopMatcherTest, EarliestEndingWinsAndLongTexts) {
  StopMatcher m({"abcdef", "cd"});
  auto hit = m.Append("xxabcdefyy");
  ASSERT_TRUE(hit);
  EXPECT_EQ(*hit, 4u);  // "cd" ends first
  StopMatcher n({"\n\n"});
  std::string big(10000, 'a');
  EXPECT_FALSE(n.Append(big));
  EXPECT_FALSE(n.Append("\n"));
  auto h2 = n.Append("\nb");
  ASSERT_TRUE(h2);
  EXPECT_EQ(*h2, 10000u);
  EXPECT_EQ(n.total_bytes(), 10003u);
}

TEST(StopMatcherTest, NoStopsNeverMatch) {
  StopMatcher m({"", ""});
  EXPECT_FALSE(m.Append("anything at all"));
  EXPECT_EQ(m.total_bytes(), 15u);
}

TEST(StopMatcherTest, MatchOnlyInNewText) {
  StopMatcher m({"ab"});
  auto h = m.Append("ab");
  ASSERT_TRUE(h);
  EXPECT_EQ(*h, 0u);
}

}  // namespace
}  // namespace chainrl::rollout
