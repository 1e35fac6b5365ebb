// CPU reference of the LM head statistics (see lm_head.h).
#include "kernels/lm_head.h"

#include <cmath>
#include <limits>
#include <vector>

namespace chainrl::kernels {
namespace {

// z_j = hidden_r · weight_j / T for every j, in float64.
void RowLogits(const float* h, const float* weight, int64_t dim, int64_t vocab, double inv_t,
               std::vector<double>* z) {
  z->resize(static_cast<size_t>(vocab));
  for (int64_t j = 0; j < vocab; ++j) {
    const float* w = weight + j * dim;
    double acc = 0;
    for (int64_t k = 0; k < dim; ++k) acc += static_cast<double>(h[k]) * w[k];
    (*z)[static_cast<size_t>(j)] = acc * inv_t;
  }
}

}  // namespace

void LmHeadForwardReference(const float* hidden, const float* weight, int64_t rows, int64_t dim,
                            int64_t vocab, const int64_t* targets, float temperature,
                            float* logprob, float* entropy, float* lse) {
  std::vector<double> z;
  const double inv_t = 1.0 / temperature;
  for (int64_t r = 0; r < rows; ++r) {
    RowLogits(hidden + r * dim, weight, dim, vocab, inv_t, &z);
    double m = -std::numeric_limits<double>::infinity();
    for (double x : z) m = std::max(m, x);
    double s = 0, t = 0;
    for (double x : z) {
      const double e = std::exp(x - m);
      s += e;
      t += e * x;
    }
    const double l = m + std::log(s);
    if (lse) lse[r] = static_cast<float>(l);
    if (entropy) entropy[r] = static_cast<float>(l - t / s);
    if (logprob) {
      const int64_t y = targets ? targets[r] : -1;
      logprob[r] = y >= 0 && y < vocab ? static_cast<float>(z[static_cast<size_t>(y)] - l)
                                       : std::numeric_limits<float>::quiet_NaN();
    }
  }
}

void LmHeadBackwardReference(const float* hidden, const float* weight, int64_t rows, int64_t dim,
                             int64_t vocab, const int64_t* targets, float temperature,
                             const float* lse, const float* entropy, const float* grad_logprob,
                             const float* grad_entropy, float* grad_hidden, float* grad_weight) {
  std::vector<double> z, gh(static_cast<size_t>(dim));
  const double inv_t = 1.0 / temperature;
  for (int64_t r = 0; r < rows; ++r) {
    const float* h = hidden + r * dim;
    RowLogits(h, weight, dim, vocab, inv_t, &z);
    const int64_t y = targets ? targets[r] : -1;
    const double g_lp = y >= 0 && y < vocab ? grad_logprob[r] : 0.0;
    const double g_h = grad_entropy ? grad_entropy[r] : 0.0;
    const double mean_z = static_cast<double>(lse[r]) - entropy[r];
    std::fill(gh.begin(), gh.end(), 0.0);
    for (int64_t j = 0; j < vocab; ++j) {
      const double zj = z[static_cast<size_t>(j)];
      const double p = std::exp(zj - lse[r]);
      const double dz = g_lp * ((j == y ? 1.0 : 0.0) - p) - g_h * p * (zj - mean_z);
      const double dlogit = dz * inv_t;
      if (dlogit == 0) continue;
      const float* w = weight + j * dim;
      float* gw = grad_weight + j * dim;
      for (int64_t k = 0; k < dim; ++k) {
        gh[static_cast<size_t>(k)] += dlogit * w[k];
        gw[k] += static_cast<float>(dlogit * h[k]);
      }
    }
    for (int64_t k = 0; k < dim; ++k) grad_hidden[r * dim + k] += static_cast<float>(gh[k]);
  }
}

}  // namespace chainrl::kernels
