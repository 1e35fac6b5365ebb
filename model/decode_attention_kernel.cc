// Decode attention over ragged lengths (see the header). Numerics: scores, softmax and the
// weighted sum of values in float32 whatever the cache dtype.
#include "model/decode_attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

// With GCC on x86-64 the entry points also get an x86-64-v3 (AVX2/FMA) clone, chosen at load time
// on CPUs that have it (about 1.4x here); the build itself targets the baseline ISA. Everything
// they call is forced inline so that it is compiled into each clone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CHAINRL_ISA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CHAINRL_ISA_CLONES
#endif
#define CHAINRL_INLINE __attribute__((always_inline)) inline

namespace chainrl::model::kernel {
namespace {

// bfloat16 is the high half of a float32.
CHAINRL_INLINE void WidenRow(const uint16_t* src, int64_t dim, float* dst) {
  for (int64_t d = 0; d < dim; ++d) {
    const uint32_t bits = static_cast<uint32_t>(src[d]) << 16;
    std::memcpy(&dst[d], &bits, sizeof(float));
  }
}

CHAINRL_INLINE float Dot(const float* a, const float* b, int64_t dim) {
  float s = 0.f;
  for (int64_t d = 0; d < dim; ++d) s += a[d] * b[d];
  return s;
}

CHAINRL_INLINE void Axpy(float alpha, const float* x, int64_t dim, float* y) {
  for (int64_t d = 0; d < dim; ++d) y[d] += alpha * x[d];
}

// Row j of k or v as float32: the row itself, or widened into buf.
CHAINRL_INLINE const float* Row(const float* base, int64_t j, int64_t stride, int64_t, float*) {
  return base + j * stride;
}
CHAINRL_INLINE const float* Row(const uint16_t* base, int64_t j, int64_t stride, int64_t dim,
                                float* buf) {
  WidenRow(base + j * stride, dim, buf);
  return buf;
}

// exp(x) for x <= 0 (the softmax's shifted scores), to about 1e-6 relative (this file's
// reassociation may fold the two-part ln2): x = n ln2 + r with |r| <= ln2 / 2, e^r by Cephes'
// expf polynomial, 2^n built in the exponent bits. Unlike the C library's expf it is inlined and
// vectorises. Below -87 it returns e^-87 (~1.6e-38), not 0.
CHAINRL_INLINE float ExpNonPositive(float x) {
  x = std::max(x, -87.f);
  const int32_t n = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);  // round(x / ln2)
  const float fn = static_cast<float>(n);
  const float r = (x - fn * 0.693359375f) + fn * 2.12194440e-4f;  // Cody-Waite: ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return er * scale;
}

// kDim: the head dim as a compile-time constant (the common sizes, so that the row loops unroll
// without remainders), or 0 for `dim` at run time.
template <int64_t kDim, typename T>
CHAINRL_INLINE void Run(const float* q, int64_t rep, int64_t runtime_dim, const T* k, const T* v,
                        int64_t row_stride, int64_t len, float scale, float* out, float* scratch) {
  const int64_t dim = kDim > 0 ? kDim : runtime_dim;
  float* scores = scratch;           // [rep, len]
  float* row = scratch + rep * len;  // one widened key or value row
  for (int64_t j = 0; j < len; ++j) {
    const float* kj = Row(k, j, row_stride, dim, row);
    for (int64_t r = 0; r < rep; ++r) scores[r * len + j] = scale * Dot(q + r * dim, kj, dim);
  }
  for (int64_t r = 0; r < rep; ++r) {
    float* s = scores + r * len;
    const float m = *std::max_element(s, s + len);
    float sum = 0.f;
    for (int64_t j = 0; j < len; ++j) {
      s[j] = ExpNonPositive(s[j] - m);
      sum += s[j];
    }
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < len; ++j) s[j] *= inv;
  }
  std::fill(out, out + rep * dim, 0.f);
  for (int64_t j = 0; j < len; ++j) {
    const float* vj = Row(v, j, row_stride, dim, row);
    for (int64_t r = 0; r < rep; ++r) Axpy(scores[r * len + j], vj, dim, out + r * dim);
  }
}

template <typename T>
CHAINRL_INLINE void Dispatch(const float* q, int64_t rep, int64_t dim, const T* k, const T* v,
                             int64_t row_stride, int64_t len, float scale, float* out,
                             float* scratch) {
  switch (dim) {
    case 64:
      return Run<64>(q, rep, dim, k, v, row_stride, len, scale, out, scratch);
    case 128:
      return Run<128>(q, rep, dim, k, v, row_stride, len, scale, out, scratch);
    case 32:
      return Run<32>(q, rep, dim, k, v, row_stride, len, scale, out, scratch);
    default:
      return Run<0>(q, rep, dim, k, v, row_stride, len, scale, out, scratch);
  }
}

}  // namespace

CHAINRL_ISA_CLONES
void DecodeAttentionF32(const float* q, int64_t rep, int64_t dim, const float* k, const float* v,
                        int64_t row_stride, int64_t len, float scale, float* out, float* scratch) {
  Dispatch(q, rep, dim, k, v, row_stride, len, scale, out, scratch);
}

CHAINRL_ISA_CLONES
void DecodeAttentionBF16(const float* q, int64_t rep, int64_t dim, const uint16_t* k,
                         const uint16_t* v, int64_t row_stride, int64_t len, float scale,
                         float* out, float* scratch) {
  Dispatch(q, rep, dim, k, v, row_stride, len, scale, out, scratch);
}

}  // namespace chainrl::model::kernel
