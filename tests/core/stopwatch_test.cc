// SecondsSince counts seconds (not milliseconds or clock ticks), negative for a later start.
#include "core/stopwatch.h"

#include <gtest/gtest.h>

namespace chainrl {
namespace {

TEST(StopwatchTest, SecondsSinceCountsSeconds) {
  const auto now = std::chrono::steady_clock::now();
  const double past = SecondsSince(now - std::chrono::milliseconds(1500));
  EXPECT_GE(past, 1.5);
  EXPECT_LT(past, 1.5 + 60);  // only the unit is checked: a loaded machine may be slow here
  const double future = SecondsSince(now + std::chrono::seconds(10));
  EXPECT_GE(future, -10.0);
  EXPECT_LT(future, 0.0);
}

}  // namespace
}  // namespace chainrl
