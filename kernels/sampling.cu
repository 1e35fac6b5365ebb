// CUDA batch sampling (see sampling_cuda.h).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <cmath>

#include "kernels/sampling_cuda.h"

namespace chainrl::kernels {
namespace {

constexpr int kThreads = 256;

size_t Align(size_t n) { return (n + 255) & ~size_t{255}; }

struct Layout {
  float *probs, *sorted_probs, *lse;
  int *ids, *sorted_ids, *offsets;
  void* sort_temp;
  size_t sort_temp_bytes;
};

size_t SortTempBytes(int64_t rows, int64_t vocab) {
  size_t bytes = 0;
  const int n = static_cast<int>(rows * vocab);
  cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), n, static_cast<int>(rows),
      static_cast<const int*>(nullptr), static_cast<const int*>(nullptr));
  return bytes;
}

Layout Carve(void* ws, int64_t rows, int64_t vocab) {
  const size_t n = static_cast<size_t>(rows * vocab);
  char* p = static_cast<char*>(ws);
  Layout l;
  l.probs = reinterpret_cast<float*>(p);
  p += Align(n * sizeof(float));
  l.sorted_probs = reinterpret_cast<float*>(p);
  p += Align(n * sizeof(float));
  l.ids = reinterpret_cast<int*>(p);
  p += Align(n * sizeof(int));
  l.sorted_ids = reinterpret_cast<int*>(p);
  p += Align(n * sizeof(int));
  l.lse = reinterpret_cast<float*>(p);
  p += Align(static_cast<size_t>(rows) * sizeof(float));
  l.offsets = reinterpret_cast<int*>(p);
  p += Align(static_cast<size_t>(rows + 1) * sizeof(int));
  l.sort_temp = p;
  l.sort_temp_bytes = SortTempBytes(rows, vocab);
  return l;
}

struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinOp {
  __device__ __forceinline__ int64_t operator()(int64_t a, int64_t b) const {
    return a < b ? a : b;
  }
};

__device__ __forceinline__ float InvTemp(float t) { return t > 0.f ? 1.f / t : 1.f; }

// One block per row: log-sum-exp of logits / T, then p_j = exp(z_j − lse) and j.
__global__ void ProbsKernel(const float* __restrict__ logits, int64_t vocab,
                            const float* __restrict__ temperature, float* __restrict__ probs,
                            int* __restrict__ ids, float* __restrict__ lse, int* offsets,
                            int64_t rows) {
  const int64_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  const float inv_t = InvTemp(temperature[row]);
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
    const float z = x[j] * inv_t;
    if (z > m) {
      s = s * __expf(m - z) + 1.f;
      m = z;
    } else {
      s += __expf(z - m);
    }
  }
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float row_max, row_lse;
  const float bm = Reduce(tmp).Reduce(m, MaxOp());
  if (threadIdx.x == 0) row_max = bm;
  __syncthreads();
  const float scaled = m == -INFINITY ? 0.f : s * __expf(m - row_max);
  const float bs = Reduce(tmp).Sum(scaled);
  if (threadIdx.x == 0) {
    row_lse = row_max + __logf(bs);
    lse[row] = row_lse;
    offsets[row] = static_cast<int>(row * vocab);
    if (row == rows - 1) offsets[rows] = static_cast<int>(rows * vocab);
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
    probs[row * vocab + j] = __expf(x[j] * inv_t - row_lse);
    ids[row * vocab + j] = static_cast<int>(j);
  }
}

struct ArgMax {
  float v;
  int i;
};
struct ArgMaxOp {
  __device__ __forceinline__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};

// One block per row: top-k, top-p and the CDF inversion over the row's (sorted) probabilities.
// Thread t owns the contiguous positions [t·span, (t + 1)·span), so block scans of the threads'
// sums give every position's cumulative mass.
__global__ void PickKernel(const float* __restrict__ logits, int64_t vocab,
                           const float* __restrict__ temperature, const int64_t* __restrict__ top_k,
                           const float* __restrict__ top_p, const float* __restrict__ uniform,
                           bool any_filtered, const float* __restrict__ probs,
                           const float* __restrict__ sorted_probs,
                           const int* __restrict__ sorted_ids, const float* __restrict__ lse,
                           int64_t* __restrict__ token, float* __restrict__ logprob) {
  const int64_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  using Scan = cub::BlockScan<float, kThreads>;
  using ReduceF = cub::BlockReduce<float, kThreads>;
  using ReduceI = cub::BlockReduce<int64_t, kThreads>;
  using ReduceA = cub::BlockReduce<ArgMax, kThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename ReduceF::TempStorage rf;
    typename ReduceI::TempStorage ri;
    typename ReduceA::TempStorage ra;
  } tmp;
  __shared__ int64_t shared_i;
  __shared__ float shared_f;
  const float t = temperature[row];
  if (!(t > 0.f)) {  // greedy: the first maximal logit
    ArgMax best{-INFINITY, 0x7fffffff};
    for (int64_t j = threadIdx.x; j < vocab; j += kThreads)
      best = ArgMaxOp()(best, ArgMax{x[j], static_cast<int>(j)});
    best = ReduceA(tmp.ra).Reduce(best, ArgMaxOp());
    if (threadIdx.x == 0) {
      const int pick = best.i == 0x7fffffff ? 0 : best.i;
      token[row] = pick;
      if (logprob) logprob[row] = x[pick] - lse[row];
    }
    return;
  }
  const int64_t k = top_k[row] > 0 && top_k[row] < vocab ? top_k[row] : vocab;
  const float tp = top_p[row] > 0.f && top_p[row] < 1.f ? top_p[row] : 1.f;
  const bool filtered = any_filtered && (k < vocab || tp < 1.f);
  const float* p = (filtered ? sorted_probs : probs) + row * vocab;
  const int64_t span = (vocab + kThreads - 1) / kThreads;
  const int64_t lo = threadIdx.x * span, hi = min(vocab, lo + span);
  // Cumulative top-k mass before each thread's range.
  float local = 0.f;
  for (int64_t i = lo; i < hi && i < k; ++i) local += p[i];
  float prefix = 0.f, mass_k = 0.f;
  Scan(tmp.scan).ExclusiveSum(local, prefix, mass_k);
  __syncthreads();
  // top-p: position i stays while the mass before it is below tp · mass_k (a prefix).
  int64_t kept = k;
  if (tp < 1.f) {
    int64_t count = 0;
    float before = prefix;
    for (int64_t i = lo; i < hi && i < k; ++i) {
      if (before < tp * mass_k) ++count;
      before += p[i];
    }
    const int64_t total = ReduceI(tmp.ri).Sum(count);
    if (threadIdx.x == 0) shared_i = total;
    __syncthreads();
    kept = shared_i;
  }
  // Kept mass, then the first kept position whose cumulative mass exceeds uniform · kept mass.
  float kept_local = 0.f;
  for (int64_t i = lo; i < hi && i < kept; ++i) kept_local += p[i];
  const float kept_mass = ReduceF(tmp.rf).Sum(kept_local);
  if (threadIdx.x == 0) shared_f = kept_mass;
  __syncthreads();
  const float target = uniform[row] * shared_f;
  int64_t first = vocab;
  float cum = prefix;
  for (int64_t i = lo; i < hi && i < kept; ++i) {
    cum += p[i];
    if (cum > target) {
      first = i;
      break;
    }
  }
  const int64_t pos = ReduceI(tmp.ri).Reduce(first, MinOp());
  if (threadIdx.x == 0) {
    const int64_t at = pos < kept ? pos : kept - 1;
    const int pick = filtered ? sorted_ids[row * vocab + at] : static_cast<int>(at);
    token[row] = pick;
    if (logprob) logprob[row] = x[pick] / t - lse[row];
  }
}

}  // namespace

size_t SampleWorkspaceBytes(int64_t rows, int64_t vocab) {
  if (rows <= 0 || vocab <= 0 || rows * vocab > 0x7fffffff) return 0;
  const size_t n = static_cast<size_t>(rows * vocab);
  return 2 * Align(n * sizeof(float)) + 2 * Align(n * sizeof(int)) +
         Align(static_cast<size_t>(rows) * sizeof(float)) +
         Align(static_cast<size_t>(rows + 1) * sizeof(int)) + SortTempBytes(rows, vocab);
}

cudaError_t SampleCuda(const float* logits, int64_t rows, int64_t vocab, const float* temperature,
                       const int64_t* top_k, const float* top_p, const float* uniform,
                       bool any_filtered, int64_t* token, float* logprob, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const size_t need = SampleWorkspaceBytes(rows, vocab);
  if (need == 0 || workspace == nullptr || workspace_bytes < need || logits == nullptr ||
      token == nullptr)
    return cudaErrorInvalidValue;
  Layout l = Carve(workspace, rows, vocab);
  ProbsKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, temperature, l.probs, l.ids, l.lse, l.offsets, rows);
  if (any_filtered) {
    size_t bytes = l.sort_temp_bytes;
    if (cub::DeviceSegmentedRadixSort::SortPairsDescending(
            l.sort_temp, bytes, l.probs, l.sorted_probs, l.ids, l.sorted_ids,
            static_cast<int>(rows * vocab), static_cast<int>(rows), l.offsets, l.offsets + 1, 0,
            static_cast<int>(sizeof(float) * 8), stream) != cudaSuccess)
      return cudaGetLastError();
  }
  PickKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, temperature, top_k, top_p, uniform, any_filtered, l.probs, l.sorted_probs,
      l.sorted_ids, l.lse, token, logprob);
  return cudaGetLastError();
}

}  // namespace chainrl::kernels
