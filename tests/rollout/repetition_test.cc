// Loop detection and CAMPO's loop ratio on hand-built sequences.
#include "rollout/repetition.h"

#include <gtest/gtest.h>

namespace chainrl::rollout {
namespace {

TEST(RepetitionTest, DetectsShortestRepeatingBlock) {
  std::vector<int32_t> t = {9, 8, 7};
  for (int i = 0; i < 12; ++i) t.insert(t.end(), {1, 2, 3});
  RepetitionOptions o;
  o.min_repeats = 8;
  o.min_span = 24;
  auto r = DetectRepetition(t, o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->period, 3);
  EXPECT_EQ(r->repeats, 12);
  EXPECT_EQ(r->loop_start, 3);
  o.min_repeats = 13;
  EXPECT_FALSE(DetectRepetition(t, o));
}

TEST(RepetitionTest, PartialLeadingBlockCountsInSpan) {
  std::vector<int32_t> t = {5, 3};  // "3" continues the period (… 2 3 | 1 2 3)
  for (int i = 0; i < 10; ++i) t.insert(t.end(), {1, 2, 3});
  auto r = DetectRepetition(t, {64, 8, 24});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->period, 3);
  EXPECT_EQ(r->loop_start, 1);
}

TEST(RepetitionTest, NoFalsePositives) {
  std::vector<int32_t> t;
  for (int i = 0; i < 500; ++i) t.push_back((i * 7919) % 1013);
  EXPECT_FALSE(DetectRepetition(t, {}));
  std::vector<int32_t> zeros(20, 0);  // a short run is not a loop (min_span)
  EXPECT_FALSE(DetectRepetition(zeros, {64, 8, 32}));
  EXPECT_FALSE(DetectRepetition({}, {}));
}

TEST(RepetitionTest, LoopRatio) {
  // 10 distinct tokens then "4 5" three times: the longest period repeating twice is 2... but a
  // period of 4 ("4 5 4 5") repeats only 1.5 times, so p = 2, span 6, ratio 6/16.
  std::vector<int32_t> t = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 4, 5, 4, 5, 4, 5};
  EXPECT_DOUBLE_EQ(LoopRatio(t, 64), 6.0 / 16.0);
  std::vector<int32_t> none = {1, 2, 3, 4, 5};
  EXPECT_DOUBLE_EQ(LoopRatio(none, 64), 0.0);
  std::vector<int32_t> whole = {7, 8, 9, 7, 8, 9};
  EXPECT_DOUBLE_EQ(LoopRatio(whole, 64), 1.0);
  EXPECT_DOUBLE_EQ(LoopRatio({}, 64), 0.0);
}

}  // namespace
}  // namespace chainrl::rollout
