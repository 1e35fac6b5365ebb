// CUDA per-token logprob / entropy / log-sum-exp (see token_stats_cuda.h). One block per row; each
// thread folds its strided elements into an online-softmax state (max m, sum s = Σe^{z-m},
// weighted t = Σe^{z-m}·z), then the block merges the states with warp shuffles.
#include <cuda_bf16.h>

#include <cmath>

#include "kernels/token_stats_cuda.h"

namespace chainrl::kernels {
namespace {

constexpr int kThreads = 256;

struct SoftmaxState {
  float m, s, t;
};

__device__ __forceinline__ SoftmaxState Merge(SoftmaxState a, SoftmaxState b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  float m = fmaxf(a.m, b.m);
  float ea = __expf(a.m - m), eb = __expf(b.m - m);
  return {m, a.s * ea + b.s * eb, a.t * ea + b.t * eb};
}

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const uint16_t* p) {
  return __bfloat162float(__ushort_as_bfloat16(*p));
}

template <typename T>
__global__ void TokenStatsKernel(const T* __restrict__ logits, int64_t vocab,
                                 const int64_t* __restrict__ targets, float inv_t,
                                 float* __restrict__ logprob, float* __restrict__ entropy,
                                 float* __restrict__ lse) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * vocab;
  SoftmaxState st{-INFINITY, 0.f, 0.f};
  for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
    float z = Load(x + j) * inv_t;
    if (z > st.m) {
      float e = __expf(st.m - z);  // 0 when st.m is -inf
      st.s = st.s * e + 1.f;
      st.t = st.t * e + z;
      st.m = z;
    } else {
      float e = __expf(z - st.m);
      st.s += e;
      st.t += e * z;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    SoftmaxState o{__shfl_xor_sync(0xffffffffu, st.m, off), __shfl_xor_sync(0xffffffffu, st.s, off),
                   __shfl_xor_sync(0xffffffffu, st.t, off)};
    st = Merge(st, o);
  }
  __shared__ SoftmaxState warp_states[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_states[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < kThreads / 32 ? warp_states[lane] : SoftmaxState{-INFINITY, 0.f, 0.f};
    for (int off = 16; off > 0; off >>= 1) {
      SoftmaxState o{__shfl_xor_sync(0xffffffffu, st.m, off),
                     __shfl_xor_sync(0xffffffffu, st.s, off),
                     __shfl_xor_sync(0xffffffffu, st.t, off)};
      st = Merge(st, o);
    }
    if (lane == 0) {
      float l = st.m + __logf(st.s);
      if (lse) lse[row] = l;
      if (entropy) entropy[row] = l - st.t / st.s;
      if (logprob) {
        int64_t y = targets ? targets[row] : -1;
        logprob[row] = (y >= 0 && y < vocab) ? Load(x + y) * inv_t - l : NAN;
      }
    }
  }
}

template <typename T>
cudaError_t Launch(const T* logits, int64_t rows, int64_t vocab, const int64_t* targets,
                   float temperature, float* logprob, float* entropy, float* lse,
                   cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (vocab <= 0 || !(temperature > 0.f) || rows > 0x7fffffff) return cudaErrorInvalidValue;
  TokenStatsKernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, targets, 1.f / temperature, logprob, entropy, lse);
  return cudaGetLastError();
}

}  // namespace

cudaError_t TokenStatsCudaF32(const float* logits, int64_t rows, int64_t vocab,
                              const int64_t* targets, float temperature, float* logprob,
                              float* entropy, float* lse, cudaStream_t stream) {
  return Launch(logits, rows, vocab, targets, temperature, logprob, entropy, lse, stream);
}

cudaError_t TokenStatsCudaBF16(const uint16_t* logits, int64_t rows, int64_t vocab,
                               const int64_t* targets, float temperature, float* logprob,
                               float* entropy, float* lse, cudaStream_t stream) {
  return Launch(logits, rows, vocab, targets, temperature, logprob, entropy, lse, stream);
}

}  // namespace chainrl::kernels
