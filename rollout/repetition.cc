// Loop detection (see repetition.h).
#include "rollout/repetition.h"

#include <algorithm>

namespace chainrl::rollout {
namespace {

// Length of the longest suffix of `t` that has period p (t[i] == t[i + p] throughout).
int64_t PeriodicSuffix(const std::vector<int32_t>& t, int64_t p) {
  const int64_t n = static_cast<int64_t>(t.size());
  if (n < p) return 0;
  int64_t i = n - 1 - p;
  while (i >= 0 && t[i] == t[i + p]) --i;
  return n - 1 - i;  // span length: positions (i, n) all follow the period
}

}  // namespace

std::optional<Repetition> DetectRepetition(const std::vector<int32_t>& tokens,
                                           const RepetitionOptions& o) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int64_t p = 1; p <= o.max_period && 2 * p <= n; ++p) {
    int64_t span = PeriodicSuffix(tokens, p);
    int64_t repeats = span / p;
    if (repeats >= o.min_repeats && span >= o.min_span) return Repetition{p, repeats, n - span};
  }
  return std::nullopt;
}

double LoopRatio(const std::vector<int32_t>& tokens, int64_t max_period) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return 0;
  int64_t best_start = n;
  for (int64_t p = std::min(max_period, n / 2); p >= 1; --p) {
    int64_t span = PeriodicSuffix(tokens, p);
    if (span / p >= 2) {
      best_start = n - span;
      break;  // the longest qualifying period
    }
  }
  return static_cast<double>(n - best_start) / static_cast<double>(n);
}

}  // namespace chainrl::rollout
