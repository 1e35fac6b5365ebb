// CPU reference of the fused GRPO-family per-token loss (see grpo_loss.h).
#include "kernels/grpo_loss.h"

#include <algorithm>
#include <cmath>

namespace chainrl::kernels {

void GrpoLossReference(const float* logprob, const float* old_logprob, const float* ref_logprob,
                       const float* entropy, const float* advantage, const float* weight,
                       const uint8_t* mask, int64_t n, const GrpoLossParams& p, float* loss,
                       float* grad_logprob, float* grad_entropy, GrpoLossStats* stats) {
  GrpoLossStats s;
  for (int64_t i = 0; i < n; ++i) {
    const bool m = mask[i] != 0;
    const double lp = m ? logprob[i] : 0.0, old = m ? old_logprob[i] : 0.0;
    const double a = advantage[i], w = weight[i];
    // Ratio and its derivative with respect to ℓ (the clamp passes the gradient at its bounds).
    const double raw = lp - old, c = p.log_ratio_clamp;
    const double x = std::clamp(raw, -c, c);
    const double r = std::exp(x), dr = (raw >= -c && raw <= c) ? r : 0.0;
    const double lo = 1.0 - p.clip_low, hi = 1.0 + p.clip_high;
    const double rc = std::clamp(r, lo, hi), drc = (r >= lo && r <= hi) ? dr : 0.0;
    const double pg1 = -a * r, pg2 = -a * rc;
    const double d1 = -a * dr, d2 = -a * drc;
    double pg, dpg;
    if (pg1 > pg2) {
      pg = pg1, dpg = d1;
    } else if (pg2 > pg1) {
      pg = pg2, dpg = d2;
    } else {
      pg = pg1, dpg = 0.5 * (d1 + d2);
    }
    const bool clipped = pg2 > pg1;
    bool dual = false;
    if (p.dual_clip_c > 0 && a < 0) {
      const double pg3 = -a * p.dual_clip_c;
      dual = pg3 < pg;
      if (pg3 < pg) {
        pg = pg3, dpg = 0.0;
      } else if (pg3 == pg) {
        dpg *= 0.5;
      }
    }
    double per = pg, dper = dpg, kl = 0;
    if (ref_logprob != nullptr) {
      const double ref = m ? ref_logprob[i] : 0.0;
      const double y_raw = ref - lp, y = std::clamp(y_raw, -20.0, 20.0);
      const double k_raw = std::exp(y) - y - 1.0;
      kl = std::clamp(k_raw, -static_cast<double>(p.kl_clamp), static_cast<double>(p.kl_clamp));
      if (p.kl_coef > 0) {
        double dk;
        if (p.kl_k3_plus) {
          dk = lp - ref;
        } else {
          const bool pass =
              y_raw >= -20.0 && y_raw <= 20.0 && k_raw >= -p.kl_clamp && k_raw <= p.kl_clamp;
          dk = pass ? -(std::exp(y) - 1.0) : 0.0;
        }
        per += p.kl_coef * kl;
        dper += p.kl_coef * dk;
      }
    }
    double h = 0;
    if (entropy != nullptr) {
      h = m ? entropy[i] : 0.0;
      if (p.entropy_coef > 0) per -= p.entropy_coef * h;
    }
    const double mw = m ? w : 0.0;
    loss[i] = static_cast<float>(mw * per);
    if (grad_logprob) grad_logprob[i] = static_cast<float>(mw * dper);
    if (grad_entropy)
      grad_entropy[i] = static_cast<float>(p.entropy_coef > 0 ? -mw * p.entropy_coef : 0.0);
    if (m) {
      s.tokens += 1;
      s.clipped += clipped ? 1 : 0;
      s.dual_clipped += dual ? 1 : 0;
      s.ratio_sum += r;
      s.approx_kl_sum += old - lp;
      s.ref_kl_sum += kl;
      s.entropy_sum += h;
    }
  }
  if (stats) *stats = s;
}

}  // namespace chainrl::kernels
