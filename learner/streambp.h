// Streaming backprop (StreamBP, arXiv 2506.03077; docs/ALGORITHMS.md §6.1–§6.4): exact gradients
// with activation memory bounded by a chunk of tokens, not the sequence.
//
// LM head and loss (ChunkedHeadBackward): The final hidden states are detached; for each
// chunk of positions, logits = H_k W^T / T, per-token logprobs (and entropy), the objective's
// chunk loss with global normalisers, and backward at once, accumulating dW and dH_k. The
// [B, T, vocab] logits never exist: peak head memory is one chunk's [B, chunk, vocab]. The caller
// then backpropagates the trunk with the returned dH. Exact: the sum over chunks of additive
// losses (SFT, GRPO family, token penalties) is the unchunked loss.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "model/decoder.h"

namespace chainrl::learner {

// The loss of positions [t0, t1) given their logprobs [B, t1 - t0] (with grad) and, when asked,
// their full-vocabulary entropy [B, t1 - t0] (with grad). Must be additive over chunks: use global
// normalisers (learner/objectives.h ComputeNormalisers, SftLoss's total_tokens).
using ChunkLossFn = std::function<torch::Tensor(
    int64_t t0, int64_t t1, const torch::Tensor& logprobs, const torch::Tensor& entropy)>;

struct ChunkedHeadOptions {
  int64_t chunk_tokens = 512;  // positions per chunk (learner.logits_chunk_tokens)
  double temperature = 1.0;    // logits / temperature, as the sampler used
  bool want_entropy = false;   // compute the entropy (entropy bonus, DMMPT)
  ChunkedHeadOptions& set_chunk_tokens(int64_t v) {
    chunk_tokens = v;
    return *this;
  }
  ChunkedHeadOptions& set_temperature(double v) {
    temperature = v;
    return *this;
  }
  ChunkedHeadOptions& set_want_entropy(bool v) {
    want_entropy = v;
    return *this;
  }
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

// Layer-wise sequence-chunked backward through the whole decoder.
//   Forward, no gradients, in chunks of query rows: each layer's input X_l is stored ([B, T, d],
//   as gradient checkpointing stores it); K/V are computed once per layer.
//   Head: the final norm and ChunkedHeadBackward give dX_L.
//   Each layer, last to first: K, V of X_l computed once; for each chunk [s, e) the layer's rows
//   s..e are recomputed with gradient from X_l[s:e] and the prefix keys/values [0, e) (leaves),
//   and backpropagated with dY[s:e]: weight gradients accumulate, dX[s:e] receives the query,
//   residual and MLP paths, and dK/dV[0:e] accumulate. Then dK/dV go back through k_proj/v_proj
//   once for the whole sequence. Attention masks are built per chunk (C x e, never T x T).
// Peak extra memory: the L+1 stored layer inputs, one layer's K, V, dK, dV, and one chunk's
// activations.
struct StreamBpOptions {
  int64_t layer_chunk_tokens = 0;  // query rows per chunk; 0 = the whole sequence in one chunk
  ChunkedHeadOptions head;         // chunking of the LM head and loss
  StreamBpOptions& set_layer_chunk_tokens(int64_t v) {
    layer_chunk_tokens = v;
    return *this;
  }
  StreamBpOptions& set_head(ChunkedHeadOptions v) {
    head = v;
    return *this;
  }
};

// Chunk sizes from an activation-memory budget (learner.layer_chunk_tokens = 0 and
// learner.logits_chunk_tokens chosen from learner.memory_budget_bytes): the largest chunks whose
// transient activations fit `budget_bytes` at sequence length `seq_len` (float32):
//   layer chunk C: attention scores and probabilities C x seq_len x heads, plus the MLP and
//   projections C x (4 intermediate + 8 hidden);
//   head chunk H: logits, log-softmax and probabilities H x vocab x 3.
// Both are clamped to [16, seq_len] (at least 1 when seq_len < 16).
struct ChunkChoice {
  int64_t layer_chunk_tokens = 0;
  int64_t head_chunk_tokens = 0;
};
ChunkChoice ChooseChunks(const model::ModelConfig& config, int64_t seq_len, int64_t budget_bytes);

// The final hidden states (after the final norm) by a chunked forward without gradients:
// old/reference logprobs and pass 1 of DPO-family losses for long sequences. `attention_mask`
// [B, T] (1 = token) may be undefined (no padding). `splice`: precomputed prompt embeddings
// replacing some positions' token embeddings (model::EmbeddingSplice; empty = none).
torch::Tensor StreamHidden(model::DecoderModel& model, const torch::Tensor& input_ids,
                           const torch::Tensor& attention_mask, int64_t chunk_tokens,
                           const model::EmbeddingSplice& splice = {});

// One streaming forward + backward: the model's parameter gradients accumulate exactly as
// loss.backward() through the ordinary forward would leave them. Returns the loss (the sum of
// loss_fn over head chunks; see ChunkedHeadBackward for its contract). `splice` as in
// StreamHidden: spliced positions give the embedding matrix no gradient.
double StreamBackward(model::DecoderModel& model, const torch::Tensor& input_ids,
                      const torch::Tensor& attention_mask, const torch::Tensor& targets,
                      const ChunkLossFn& loss_fn, const StreamBpOptions& options,
                      const model::EmbeddingSplice& splice = {});

}  // namespace chainrl::learner
