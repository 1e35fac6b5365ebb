// Decode attention over ragged cached lengths, for the CPU: one new query token per sequence
// attends to exactly its own cached keys, so a batch whose sequences have different lengths pays
// for the keys it has, not for the longest sequence times the batch (the padded path). Plain C++
// on raw buffers (no LibTorch), compiled with reassociation allowed so that its dot products and
// sums vectorise; the caller (model/attention.cc) splits the work across threads.
#pragma once

#include <cstdint>

namespace chainrl::model::kernel {

// The query heads of one kv head (grouped-query attention: `rep` query rows of `dim` floats,
// contiguous) attend to `len` >= 1 keys and values (rows of `dim` elements, `row_stride` elements
// apart; float32 or bfloat16 bit patterns): out[r] = sum_j softmax_j(scale * q[r] . k[j]) v[j],
// in float32, `rep` rows of `dim` contiguous. scratch holds at least rep * len + 2 * dim floats.
void DecodeAttentionF32(const float* q, int64_t rep, int64_t dim, const float* k, const float* v,
                        int64_t row_stride, int64_t len, float scale, float* out, float* scratch);
void DecodeAttentionBF16(const float* q, int64_t rep, int64_t dim, const uint16_t* k,
                         const uint16_t* v, int64_t row_stride, int64_t len, float scale,
                         float* out, float* scratch);

}  // namespace chainrl::model::kernel
