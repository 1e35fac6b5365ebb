// CUDA LM head statistics (see lm_head_cuda.h).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "kernels/lm_head_cuda.h"

namespace chainrl::kernels {
namespace {

constexpr int kThreads = 256;

struct State {
  float m, s, t;  // running max, Σ e^{z−m}, Σ e^{z−m}·z
};

__device__ __forceinline__ State Merge(State a, State b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  const float m = fmaxf(a.m, b.m), ea = __expf(a.m - m), eb = __expf(b.m - m);
  return {m, a.s * ea + b.s * eb, a.t * ea + b.t * eb};
}

__device__ __forceinline__ State WarpMerge(State st) {
  for (int off = 16; off > 0; off >>= 1) {
    State o{__shfl_xor_sync(0xffffffffu, st.m, off), __shfl_xor_sync(0xffffffffu, st.s, off),
            __shfl_xor_sync(0xffffffffu, st.t, off)};
    st = Merge(st, o);
  }
  return st;
}

// Workspace layout: logits chunk [rows, chunk] f32 | dlogits chunk [rows, chunk] bf16 |
// state [rows] | target logit [rows].
struct Layout {
  float* logits;
  __nv_bfloat16* dlogits_bf16;
  State* state;
  float* target_z;
};

size_t Align(size_t n) { return (n + 255) & ~size_t{255}; }

Layout Carve(void* ws, int64_t rows, int64_t chunk) {
  char* p = static_cast<char*>(ws);
  Layout l;
  l.logits = reinterpret_cast<float*>(p);
  p += Align(static_cast<size_t>(rows * chunk) * sizeof(float));
  l.dlogits_bf16 = reinterpret_cast<__nv_bfloat16*>(p);
  p += Align(static_cast<size_t>(rows * chunk) * sizeof(__nv_bfloat16));
  l.state = reinterpret_cast<State*>(p);
  p += Align(static_cast<size_t>(rows) * sizeof(State));
  l.target_z = reinterpret_cast<float*>(p);
  return l;
}

__global__ void InitKernel(State* state, float* target_z, int64_t rows) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (r < rows) {
    state[r] = {-INFINITY, 0.f, 0.f};
    target_z[r] = NAN;
  }
}

// One block per row: folds the chunk's scaled logits into the row's state.
__global__ void FoldKernel(const float* __restrict__ logits, int64_t width, int64_t c0,
                           const int64_t* __restrict__ targets, float inv_t, State* state,
                           float* target_z) {
  const int64_t row = blockIdx.x;
  const float* x = logits + row * width;
  State st{-INFINITY, 0.f, 0.f};
  for (int64_t j = threadIdx.x; j < width; j += kThreads) {
    const float z = x[j] * inv_t;
    st = Merge(st, State{z, 1.f, z});
  }
  st = WarpMerge(st);
  __shared__ State warp_states[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_states[warp] = st;
  __syncthreads();
  if (warp != 0) return;
  st = lane < kThreads / 32 ? warp_states[lane] : State{-INFINITY, 0.f, 0.f};
  st = WarpMerge(st);
  if (lane == 0) {
    state[row] = Merge(state[row], st);
    const int64_t y = targets ? targets[row] : -1;
    if (y >= c0 && y < c0 + width) target_z[row] = x[y - c0] * inv_t;
  }
}

__global__ void FinishKernel(const State* state, const float* target_z, int64_t rows,
                             float* logprob, float* entropy, float* lse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= rows) return;
  const State st = state[r];
  const float l = st.m + __logf(st.s);
  if (lse) lse[r] = l;
  if (entropy) entropy[r] = l - st.t / st.s;
  if (logprob) logprob[r] = target_z[r] - l;  // NaN when the target is outside the vocabulary
}

// ∂L/∂logits of a chunk, in place (float32) and as bfloat16 when the GEMMs need it.
__global__ void DlogitsKernel(float* __restrict__ logits, __nv_bfloat16* __restrict__ out_bf16,
                              int64_t rows, int64_t width, int64_t c0, int64_t vocab,
                              const int64_t* __restrict__ targets, float inv_t,
                              const float* __restrict__ lse, const float* __restrict__ entropy,
                              const float* __restrict__ grad_logprob,
                              const float* __restrict__ grad_entropy) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= rows * width) return;
  const int64_t r = i / width, j = c0 + i % width;
  const int64_t y = targets ? targets[r] : -1;
  const float g_lp = (y >= 0 && y < vocab) ? grad_logprob[r] : 0.f;
  const float g_h = grad_entropy ? grad_entropy[r] : 0.f;
  const float z = logits[i] * inv_t;
  const float p = __expf(z - lse[r]);
  const float dz = g_lp * ((j == y ? 1.f : 0.f) - p) - g_h * p * (z - (lse[r] - entropy[r]));
  const float d = dz * inv_t;
  logits[i] = d;
  if (out_bf16) out_bf16[i] = __float2bfloat16(d);
}

cudaDataType_t CudaType(LmHeadDtype t) {
  return t == LmHeadDtype::kBFloat16 ? CUDA_R_16BF : CUDA_R_32F;
}
size_t Elem(LmHeadDtype t) { return t == LmHeadDtype::kBFloat16 ? 2 : 4; }

cudaError_t Check(const LmHeadArgs& a) {
  if (a.rows <= 0 || a.dim <= 0 || a.vocab <= 0 || a.chunk <= 0 || !(a.temperature > 0.f) ||
      a.rows > 0x7fffffff || a.dim > 0x7fffffff || a.chunk > 0x7fffffff || a.hidden == nullptr ||
      a.weight == nullptr || a.workspace == nullptr ||
      a.workspace_bytes < LmHeadWorkspaceBytes(a.rows, a.chunk))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

// logits [rows, width] = hidden [rows, dim] · weight[c0 : c0 + width]ᵀ (row-major throughout;
// cuBLAS sees the transposes in column-major).
cublasStatus_t ChunkLogits(const LmHeadArgs& a, int64_t c0, int64_t width, float* logits) {
  const float one = 1.f, zero = 0.f;
  const char* w = static_cast<const char*>(a.weight) + c0 * a.dim * Elem(a.dtype);
  return cublasGemmEx(a.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(width),
                      static_cast<int>(a.rows), static_cast<int>(a.dim), &one, w, CudaType(a.dtype),
                      static_cast<int>(a.dim), a.hidden, CudaType(a.dtype), static_cast<int>(a.dim),
                      &zero, logits, CUDA_R_32F, static_cast<int>(width), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

}  // namespace

size_t LmHeadWorkspaceBytes(int64_t rows, int64_t chunk) {
  if (rows <= 0 || chunk <= 0) return 0;
  return Align(static_cast<size_t>(rows * chunk) * sizeof(float)) +
         Align(static_cast<size_t>(rows * chunk) * sizeof(__nv_bfloat16)) +
         Align(static_cast<size_t>(rows) * sizeof(State)) +
         static_cast<size_t>(rows) * sizeof(float);
}

cudaError_t LmHeadForwardCuda(const LmHeadArgs& a, float* logprob, float* entropy, float* lse) {
  if (cudaError_t e = Check(a); e != cudaSuccess) return e;
  if (cublasSetStream(a.cublas, a.stream) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
  const Layout l = Carve(a.workspace, a.rows, a.chunk);
  const unsigned row_blocks = static_cast<unsigned>((a.rows + kThreads - 1) / kThreads);
  InitKernel<<<row_blocks, kThreads, 0, a.stream>>>(l.state, l.target_z, a.rows);
  const float inv_t = 1.f / a.temperature;
  for (int64_t c0 = 0; c0 < a.vocab; c0 += a.chunk) {
    const int64_t width = std::min(a.chunk, a.vocab - c0);
    if (ChunkLogits(a, c0, width, l.logits) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
    FoldKernel<<<static_cast<unsigned>(a.rows), kThreads, 0, a.stream>>>(
        l.logits, width, c0, a.targets, inv_t, l.state, l.target_z);
  }
  FinishKernel<<<row_blocks, kThreads, 0, a.stream>>>(l.state, l.target_z, a.rows, logprob, entropy,
                                                      lse);
  return cudaGetLastError();
}

cudaError_t LmHeadBackwardCuda(const LmHeadArgs& a, const float* lse, const float* entropy,
                               const float* grad_logprob, const float* grad_entropy,
                               float* grad_hidden, float* grad_weight) {
  if (cudaError_t e = Check(a); e != cudaSuccess) return e;
  if (lse == nullptr || entropy == nullptr || grad_logprob == nullptr || grad_hidden == nullptr ||
      grad_weight == nullptr)
    return cudaErrorInvalidValue;
  if (cublasSetStream(a.cublas, a.stream) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
  const Layout l = Carve(a.workspace, a.rows, a.chunk);
  const bool bf16 = a.dtype == LmHeadDtype::kBFloat16;
  const float inv_t = 1.f / a.temperature, one = 1.f;
  const int dim = static_cast<int>(a.dim), rows = static_cast<int>(a.rows);
  for (int64_t c0 = 0; c0 < a.vocab; c0 += a.chunk) {
    const int64_t width = std::min(a.chunk, a.vocab - c0);
    if (ChunkLogits(a, c0, width, l.logits) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
    const int64_t n = a.rows * width;
    DlogitsKernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, a.stream>>>(
        l.logits, bf16 ? l.dlogits_bf16 : nullptr, a.rows, width, c0, a.vocab, a.targets, inv_t,
        lse, entropy, grad_logprob, grad_entropy);
    const void* d = bf16 ? static_cast<const void*>(l.dlogits_bf16) : l.logits;
    const cudaDataType_t t = CudaType(a.dtype);
    const char* w = static_cast<const char*>(a.weight) + c0 * a.dim * Elem(a.dtype);
    // grad_hidden [rows, dim] += dlogits [rows, width] · weight_chunk [width, dim]
    if (cublasGemmEx(a.cublas, CUBLAS_OP_N, CUBLAS_OP_N, dim, rows, static_cast<int>(width), &one,
                     w, t, dim, d, t, static_cast<int>(width), &one, grad_hidden, CUDA_R_32F, dim,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
      return cudaErrorUnknown;
    // grad_weight_chunk [width, dim] += dlogitsᵀ [width, rows] · hidden [rows, dim]
    if (cublasGemmEx(a.cublas, CUBLAS_OP_N, CUBLAS_OP_T, dim, static_cast<int>(width), rows, &one,
                     a.hidden, t, dim, d, t, static_cast<int>(width), &one,
                     grad_weight + c0 * a.dim, CUDA_R_32F, dim, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
      return cudaErrorUnknown;
  }
  return cudaGetLastError();
}

}  // namespace chainrl::kernels
