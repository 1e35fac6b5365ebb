// Loop detection for rollout: a sample whose tail is one block of tokens repeated many times is
// ending in a loop (a common failure of long chains of thought); it can be stopped early and
// flagged for the repetition penalty (docs/ALGORITHMS.md §4.4: CAMPO, from MiroMind-M1, arXiv
// 2507.14683).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace chainrl::rollout {

struct RepetitionOptions {
  int64_t max_period = 64;  // longest block considered, in tokens
  int64_t min_repeats = 8;  // the block must occur at least this many times in a row at the end
  int64_t min_span = 32;    // and the repeated span must cover at least this many tokens
};

struct Repetition {
  int64_t period = 0;      // block length
  int64_t repeats = 0;     // whole repeats at the end
  int64_t loop_start = 0;  // index of the first token of the repeated span
};

// Finds the shortest period whose block repeats at the end of `tokens` per `options`; the span is
// extended backwards as far as the periodicity holds (partial leading block included).
// O(max_period * span).
std::optional<Repetition> DetectRepetition(const std::vector<int32_t>& tokens,
                                           const RepetitionOptions& options);

// CAMPO's ratio: (n - loop_start) / n for the longest period p whose block repeats contiguously at
// least twice at the end of the sequence, 0 when none. Used by the repetition penalty on responses
// that hit the length limit.
double LoopRatio(const std::vector<int32_t>& tokens, int64_t max_period);

}  // namespace chainrl::rollout
