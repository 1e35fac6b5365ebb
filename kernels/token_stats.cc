// CPU reference for per-token logprob / entropy / log-sum-exp (see token_stats.h).
#include "kernels/token_stats.h"

#include <cmath>
#include <limits>

namespace chainrl::kernels {

void TokenStatsReference(const float* logits, int64_t rows, int64_t vocab, const int64_t* targets,
                         float temperature, float* logprob, float* entropy, float* lse) {
  const double inv_t = 1.0 / static_cast<double>(temperature);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < vocab; ++j) m = std::fmax(m, row[j] * inv_t);
    double s = 0, t = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      double z = row[j] * inv_t;
      double e = std::exp(z - m);
      s += e;
      t += e * z;
    }
    double l = m + std::log(s);
    if (lse) lse[r] = static_cast<float>(l);
    if (entropy) entropy[r] = static_cast<float>(l - t / s);
    if (logprob) {
      int64_t y = targets ? targets[r] : -1;
      logprob[r] = (y >= 0 && y < vocab) ? static_cast<float>(row[y] * inv_t - l)
                                         : std::numeric_limits<float>::quiet_NaN();
    }
  }
}

}  // namespace chainrl::kernels
