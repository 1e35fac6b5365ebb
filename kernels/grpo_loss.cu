// CUDA fused GRPO-family per-token loss (see grpo_loss_cuda.h): the reference's arithmetic in
// float32 per thread, statistics folded per block in float64.
#include <cmath>

#include "kernels/grpo_loss_cuda.h"

namespace chainrl::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float Clamp(float x, float lo, float hi) {
  return fminf(fmaxf(x, lo), hi);
}

__global__ void GrpoLossKernel(const float* __restrict__ logprob,
                               const float* __restrict__ old_logprob,
                               const float* __restrict__ ref_logprob,
                               const float* __restrict__ entropy,
                               const float* __restrict__ advantage,
                               const float* __restrict__ weight, const uint8_t* __restrict__ mask,
                               int64_t n, GrpoLossParams p, float* __restrict__ loss,
                               float* __restrict__ grad_logprob, float* __restrict__ grad_entropy,
                               double* __restrict__ stats) {
  double local[kGrpoLossStatCount] = {0, 0, 0, 0, 0, 0, 0};
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) {
    const bool m = mask[i] != 0;
    const float lp = m ? logprob[i] : 0.f, old = m ? old_logprob[i] : 0.f;
    const float a = advantage[i], w = weight[i];
    const float raw = lp - old, c = p.log_ratio_clamp;
    const float r = __expf(Clamp(raw, -c, c));
    const float dr = (raw >= -c && raw <= c) ? r : 0.f;
    const float lo = 1.f - p.clip_low, hi = 1.f + p.clip_high;
    const float rc = Clamp(r, lo, hi), drc = (r >= lo && r <= hi) ? dr : 0.f;
    const float pg1 = -a * r, pg2 = -a * rc, d1 = -a * dr, d2 = -a * drc;
    float pg = pg1, dpg = 0.5f * (d1 + d2);
    if (pg1 > pg2) {
      dpg = d1;
    } else if (pg2 > pg1) {
      pg = pg2;
      dpg = d2;
    }
    const bool clipped = pg2 > pg1;
    bool dual = false;
    if (p.dual_clip_c > 0.f && a < 0.f) {
      const float pg3 = -a * p.dual_clip_c;
      dual = pg3 < pg;
      if (pg3 < pg) {
        pg = pg3;
        dpg = 0.f;
      } else if (pg3 == pg) {
        dpg *= 0.5f;
      }
    }
    float per = pg, dper = dpg, kl = 0.f;
    if (ref_logprob != nullptr) {
      const float ref = m ? ref_logprob[i] : 0.f;
      const float y_raw = ref - lp, y = Clamp(y_raw, -20.f, 20.f);
      const float k_raw = __expf(y) - y - 1.f;
      kl = Clamp(k_raw, -p.kl_clamp, p.kl_clamp);
      if (p.kl_coef > 0.f) {
        float dk;
        if (p.kl_k3_plus) {
          dk = lp - ref;
        } else {
          const bool pass =
              y_raw >= -20.f && y_raw <= 20.f && k_raw >= -p.kl_clamp && k_raw <= p.kl_clamp;
          dk = pass ? -(__expf(y) - 1.f) : 0.f;
        }
        per += p.kl_coef * kl;
        dper += p.kl_coef * dk;
      }
    }
    float h = 0.f;
    if (entropy != nullptr) {
      h = m ? entropy[i] : 0.f;
      if (p.entropy_coef > 0.f) per -= p.entropy_coef * h;
    }
    const float mw = m ? w : 0.f;
    loss[i] = mw * per;
    if (grad_logprob) grad_logprob[i] = mw * dper;
    if (grad_entropy) grad_entropy[i] = p.entropy_coef > 0.f ? -mw * p.entropy_coef : 0.f;
    if (m) {
      local[0] = 1;
      local[1] = clipped ? 1 : 0;
      local[2] = dual ? 1 : 0;
      local[3] = r;
      local[4] = static_cast<double>(old) - lp;
      local[5] = kl;
      local[6] = h;
    }
  }
  if (stats == nullptr) return;
  // Fold the block's statistics: warp shuffles, then one warp over the warps' sums.
  __shared__ double warp_sums[kThreads / 32][kGrpoLossStatCount];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int k = 0; k < kGrpoLossStatCount; ++k) {
    double v = local[k];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) warp_sums[warp][k] = v;
  }
  __syncthreads();
  if (warp == 0) {
    for (int k = 0; k < kGrpoLossStatCount; ++k) {
      double v = lane < kThreads / 32 ? warp_sums[lane][k] : 0.0;
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0 && v != 0.0) atomicAdd(stats + k, v);
    }
  }
}

}  // namespace

cudaError_t GrpoLossCuda(const float* logprob, const float* old_logprob, const float* ref_logprob,
                         const float* entropy, const float* advantage, const float* weight,
                         const uint8_t* mask, int64_t n, const GrpoLossParams& params, float* loss,
                         float* grad_logprob, float* grad_entropy, double* stats,
                         cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (params.kl_coef > 0.f && ref_logprob == nullptr) return cudaErrorInvalidValue;
  if (params.entropy_coef > 0.f && entropy == nullptr) return cudaErrorInvalidValue;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  GrpoLossKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      logprob, old_logprob, ref_logprob, entropy, advantage, weight, mask, n, params, loss,
      grad_logprob, grad_entropy, stats);
  return cudaGetLastError();
}

}  // namespace chainrl::kernels
