// Streaming backprop, part 1: the LM head and the loss in chunks of tokens (StreamBP, arXiv
// 2506.03077, ALGORITHMS.md section 3, "LM head"). The final hidden states are detached; for each
// chunk of positions, logits = H_k W^T / T, per-token logprobs (and entropy), the objective's
// chunk loss with global normalisers, and backward at once, accumulating dW and dH_k. The
// [B, T, vocab] logits never exist: peak head memory is one chunk's [B, chunk, vocab]. The caller
// then backpropagates the trunk with the returned dH. Exact: the sum over chunks of additive
// losses (SFT, GRPO family, token penalties) is the unchunked loss.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

namespace chainrl::learner {

// The loss of positions [t0, t1) given their logprobs [B, t1 - t0] (with grad) and, when asked,
// their full-vocabulary entropy [B, t1 - t0] (with grad). Must be additive over chunks: use global
// normalisers (learner/objectives.h ComputeNormalisers, SftLoss's total_tokens).
using ChunkLossFn = std::function<torch::Tensor(int64_t t0, int64_t t1, const torch::Tensor& logprobs,
                                                const torch::Tensor& entropy)>;

struct ChunkedHeadOptions {
  int64_t chunk_tokens = 512;  // positions per chunk (learner.logits_chunk_tokens)
  double temperature = 1.0;    // logits / temperature, as the sampler used
  bool want_entropy = false;   // compute the entropy (entropy bonus, DMMPT)
  ChunkedHeadOptions& set_chunk_tokens(int64_t v) { chunk_tokens = v; return *this; }
  ChunkedHeadOptions& set_temperature(double v) { temperature = v; return *this; }
  ChunkedHeadOptions& set_want_entropy(bool v) { want_entropy = v; return *this; }
};

struct ChunkedHeadResult {
  double loss = 0;            // Σ over chunks of the chunk losses
  torch::Tensor grad_hidden;  // [B, T, d]: dLoss/dH, to backpropagate through the trunk
};

// `hidden` [B, T, d] (its autograd history is not used), `head_weight` [V, d] (a parameter: its
// .grad accumulates), `targets` [B, T] int64 in [0, V). REQUIRES chunk_tokens >= 1.
ChunkedHeadResult ChunkedHeadBackward(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                      const torch::Tensor& targets, const ChunkLossFn& loss_fn,
                                      const ChunkedHeadOptions& options);

// Pass 1 of the two-pass scheme for losses that are not additive over tokens (DPO family: a
// sigmoid of a sum): per-sequence Σ_t mask·ℓ_t [B] float64, chunk by chunk, without gradients.
// Pass 2 is ChunkedHeadBackward with the chunk loss Σ_b g_b Σ_{t in chunk} mask·ℓ_t, where g comes
// from PreferenceSequenceGrads (learner/preference.h); the LM head thus runs twice.
torch::Tensor ChunkedSequenceLogprobs(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                      const torch::Tensor& targets, const torch::Tensor& mask,
                                      const ChunkedHeadOptions& options);

}  // namespace chainrl::learner
