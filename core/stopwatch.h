// Wall time measured on the monotonic clock, for durations in logs, summaries and benchmarks.
#pragma once

#include <chrono>

namespace chainrl {

// Seconds elapsed on std::chrono::steady_clock since `start` (negative if `start` is later than
// now). Thread-safe.
inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace chainrl
