// CPU reference of batch sampling (see sampling.h).
#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace chainrl::kernels {

void SampleReference(const float* logits, int64_t rows, int64_t vocab, const float* temperature,
                     const int64_t* top_k, const float* top_p, const float* uniform, int64_t* token,
                     float* logprob) {
  std::vector<double> z(static_cast<size_t>(vocab)), p(z.size());
  std::vector<int64_t> order(z.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * vocab;
    const bool greedy = !(temperature[r] > 0.f);
    const double inv_t = greedy ? 1.0 : 1.0 / temperature[r];
    double m = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j) m = std::max(m, z[j] = x[j] * inv_t);
    double s = 0;
    for (int64_t j = 0; j < vocab; ++j) s += (p[j] = std::exp(z[j] - m));
    for (double& q : p) q /= s;
    const double lse = m + std::log(s);
    int64_t pick = 0;
    if (greedy) {
      for (int64_t j = 1; j < vocab; ++j)
        if (x[j] > x[pick]) pick = j;
    } else {
      const int64_t k = top_k[r] > 0 && top_k[r] < vocab ? top_k[r] : vocab;
      const double tp = top_p[r] > 0.f && top_p[r] < 1.f ? top_p[r] : 1.0;
      std::iota(order.begin(), order.end(), 0);
      const bool filtered = k < vocab || tp < 1.0;
      if (filtered)
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return p[a] > p[b]; });
      int64_t kept = k;
      if (tp < 1.0) {
        double mass_k = 0;
        for (int64_t i = 0; i < k; ++i) mass_k += p[order[i]];
        double before = 0;
        kept = 0;
        while (kept < k && before < tp * mass_k) before += p[order[kept++]];
      }
      double kept_mass = 0;
      for (int64_t i = 0; i < kept; ++i) kept_mass += p[order[i]];
      const double target = uniform[r] * kept_mass;
      double cum = 0;
      pick = order[kept - 1];
      for (int64_t i = 0; i < kept; ++i) {
        cum += p[order[i]];
        if (cum > target) {
          pick = order[i];
          break;
        }
      }
    }
    token[r] = pick;
    if (logprob) logprob[r] = static_cast<float>(z[pick] - lse);
  }
}

}  // namespace chainrl::kernels
