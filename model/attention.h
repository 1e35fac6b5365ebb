// Scaled dot-product attention behind one function: SDPA on LibTorch 2.x, an explicit math path
// on 1.13; grouped-query attention; explicit boolean masks (causal, padding, per-sequence cache).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace chainrl::model {

// out = softmax(q k^T * scale + mask) v, per head.
//   q: [B, Hq, Tq, D]; k, v: [B, Hkv, Tk, D] with Hq % Hkv == 0 (grouped-query attention: query
//   head h uses kv head h / (Hq / Hkv), as HF's repeat_kv). k and v may be strided views (e.g. a
//   slice of a preallocated cache); they are never copied: the query heads of one group are folded
//   into the query-length axis instead of repeating kv heads.
//   mask: bool, true = may attend, broadcastable to [B, 1, Tq, Tk]; undefined = attend to all.
//   REQUIRES every query row of the mask to allow at least one key (the mask builders below
//   guarantee it), otherwise that row is NaN.
// Returns [B, Hq, Tq, D] in q's dtype. Softmax runs in float32 for half-precision inputs.
torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double scale);

// One decode step over a KV cache on the CPU, each sequence attending to its own length:
//   q: [B, Hq, 1, D]; k, v: [B, Hkv, >= max(lengths), D] with equal strides and contiguous rows
//   (the cache buffers themselves), float32 or bfloat16; lengths[b] keys of sequence b (0: the
//   row's output is zeros). The same result as Attention over the padded keys with a length mask,
//   for the keys each sequence has (scores and softmax in float32).
// Returns [B, Hq, 1, D] in q's dtype.
bool DecodeAttentionSupports(const torch::Tensor& k);  // a CPU tensor of float32 or bfloat16
torch::Tensor DecodeAttention(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const std::vector<int64_t>& lengths,
                              double scale);

// Causal mask for q_len queries over k_len keys, bottom-right aligned: query i (the
// (k_len - q_len + i)-th token) attends to keys j <= i + k_len - q_len. Bool [q_len, k_len].
torch::Tensor CausalMask(int64_t q_len, int64_t k_len, torch::Device device);

// Causal mask with key padding for a batch without cache: key_valid is bool/int [B, T] (HF's
// attention_mask: 1 = real token, 0 = padding; left or right padding). Query rows that would
// attend to nothing (padding queries) attend to all keys instead, keeping them finite.
// Returns bool [B, 1, T, T].
torch::Tensor PaddedCausalMask(const torch::Tensor& key_valid);

// Mask for a cached forward: sequence b's new token t sits in cache slot start[b] + t and attends
// to slots j <= start[b] + t, j < key_len. Bool [B, 1, T, key_len].
torch::Tensor CacheCausalMask(const std::vector<int64_t>& start, int64_t new_tokens,
                              int64_t key_len, torch::Device device);

}  // namespace chainrl::model
