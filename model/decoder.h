// The decoder-only transformer for qwen2 / qwen3 / llama with Hugging Face's exact semantics
// (RMSNorm in float32, rotate_half RoPE with llama3 scaling, GQA, SwiGLU, tied embeddings), a
// preallocated per-sequence KV cache, and per-layer entry points for streaming engines.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/status.h"
#include "model/hf_config.h"

namespace chainrl::model {

// Where and in which dtype parameters live and compute runs.
//
// Mixed precision (compute_dtype set and different from dtype, e.g. float32 master weights with
// bfloat16 compute, what autocast does for a training step): every matrix product (the q/k/v/o
// and MLP projections, attention, the LM head) runs in compute_dtype on casts of the weights
// (differentiable: gradients reach the dtype parameters); the embeddings, the residual stream and
// the RMSNorms stay in dtype (norms are computed in float32 in any case), and the KV cache and
// RoPE tables are in compute_dtype. Logits come out in compute_dtype; every consumer (sampler,
// learner) upcasts them to float32 before log_softmax. Without compute_dtype, or equal to dtype,
// everything runs in dtype exactly as before.
struct ModelOptions {
  torch::ScalarType dtype = torch::kFloat32;  // parameter dtype
  torch::Device device = torch::kCPU;
  std::optional<torch::ScalarType> compute_dtype;  // unset = dtype
  // Cached decode steps (one new token per sequence, no gradient) on the CPU attend over each
  // sequence's own cached length (model/decode_attention_kernel.h) instead of over the longest
  // sequence with a mask. Off: the padded path (kept for comparison and for tests).
  bool ragged_decode = true;
  ModelOptions& set_dtype(torch::ScalarType d) {
    dtype = d;
    return *this;
  }
  ModelOptions& set_compute_dtype(torch::ScalarType d) {
    compute_dtype = d;
    return *this;
  }
  torch::ScalarType ComputeDtype() const { return compute_dtype.value_or(dtype); }
  bool Mixed() const { return ComputeDtype() != dtype; }
  ModelOptions& set_device(torch::Device d) {
    device = d;
    return *this;
  }
};

// The inverse RoPE frequencies of `config` ([head_dim / 2], float32, computed in float32 as HF
// does): theta^(-2i/d), with llama3 rope_scaling applied when configured.
torch::Tensor RopeInverseFrequencies(const ModelConfig& config);

// Per-layer key/value cache, preallocated: k(l), v(l) are [batch, kv_heads, max_len, head_dim]
// (zero-initialised). Sequence b occupies slots [0, length(b)); new tokens are appended at
// length(b). Not thread-safe; one forward at a time.
class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t batch, int64_t max_len, torch::ScalarType dtype,
          torch::Device device);

  int64_t batch() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t max_len() const { return max_len_; }
  int64_t num_layers() const { return static_cast<int64_t>(k_.size()); }
  const std::vector<int64_t>& lengths() const { return lengths_; }
  int64_t length(int64_t b) const { return lengths_[b]; }
  // Truncates (or, with 0, resets) sequence b. REQUIRES 0 <= len <= length(b).
  void SetLength(int64_t b, int64_t len);
  // Adds n_new[b] to each length. REQUIRES lengths stay <= max_len.
  void Advance(const std::vector<int64_t>& n_new);

  torch::Tensor& k(int64_t layer) { return k_[layer]; }
  torch::Tensor& v(int64_t layer) { return v_[layer]; }

 private:
  int64_t max_len_;
  std::vector<int64_t> lengths_;
  std::vector<torch::Tensor> k_, v_;
};

// Everything a layer needs besides its hidden-state input; built once per forward and shared by
// all layers (so RoPE tables and masks are computed once, not per layer).
struct LayerContext {
  torch::Tensor cos, sin;  // [B, 1, T, head_dim], compute dtype
  torch::Tensor mask;      // bool, broadcastable to [B, 1, T, key_len]; undefined = attend to all
  // Cached forward only:
  KvCache* cache = nullptr;
  int64_t uniform_start = -1;  // the common first slot when all sequences start there, else -1
  torch::Tensor slot_index;    // otherwise: [B, kv_heads, T, head_dim] int64 slot of each new token
  int64_t key_len = 0;         // attend over cache slots [0, key_len)
  // A ragged decode step (ModelOptions::ragged_decode): sequence b attends to its first
  // key_lens[b] cache slots (0: an idle row, whose output is zeros); mask unused. Empty otherwise.
  std::vector<int64_t> key_lens;
};

// Precomputed input embeddings spliced into a [B, T] input (a placeholder token's embedding row
// replaced by an encoder's output, as for images or video): flat position index[i] = b * T + t of
// the input takes rows[i] instead of the token's embedding. rows carry no gradient into the model;
// the embedding matrix gets none at spliced positions. Empty (index undefined) = no splice.
struct EmbeddingSplice {
  torch::Tensor index;  // int64 [N], distinct, in [0, B * T)
  torch::Tensor rows;   // [N, hidden_size], any floating dtype and device (converted)
  bool empty() const { return !index.defined() || index.numel() == 0; }
};

// Positions of every occurrence of `placeholder` in `ids`, in order (the rows of a splice go to
// them one by one).
std::vector<int64_t> PlaceholderPositions(const std::vector<int32_t>& ids, int32_t placeholder);

// Low-rank adapters (LoRA) on the attention and MLP projections, docs/ALGORITHMS.md §10: a target
// projection computes x W^T + b + s * dropout(x) A^T B^T with A [rank, in] and B [out, rank],
// s = alpha / rank, or alpha / sqrt(rank) with rsLoRA. B starts at zero, so an adapted model
// starts as its base.
struct LoraOptions {
  std::vector<std::string> targets;  // names among kLoraTargets
  int64_t rank = 16;
  double alpha = 32;
  double dropout = 0;  // on the adapter's input, in training forwards with gradients only
  bool rslora = false;
  double Scale() const;
  bool operator==(const LoraOptions& o) const {
    return targets == o.targets && rank == o.rank && alpha == o.alpha && dropout == o.dropout &&
           rslora == o.rslora;
  }
};
// The projections LoRA may adapt, by their Hugging Face (and PEFT target_modules) names.
inline constexpr const char* kLoraTargets[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};
// InvalidArgument naming the field: unknown or repeated targets, none, rank < 1, alpha <= 0,
// dropout outside [0, 1).
Status ValidateLoraOptions(const LoraOptions& options);

struct DecoderLayer;
struct RmsNorm;
struct LoraState;
struct Projection;

// A qwen2 / qwen3 / llama decoder. named_parameters() are exactly HF's state-dict keys
// ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", ..., "model.norm.weight",
// "lm_head.weight" unless tie_word_embeddings). Not thread-safe for concurrent forwards.
//
// Shapes: input_ids, positions are int64 [B, T]; hidden states [B, T, hidden_size].
class DecoderModel : public torch::nn::Module {
 public:
  // REQUIRES config.Validate().ok(). Parameters are uninitialised until InitWeights or a load.
  DecoderModel(const ModelConfig& config, const ModelOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  // Switches the decode attention path (ModelOptions::ragged_decode) of this model.
  void set_ragged_decode(bool on) { options_.ragged_decode = on; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // HF initialisation: linear and embedding weights ~ N(0, initializer_range), biases 0, norm
  // weights 1. Deterministic for a seed (drawn on the CPU in float32, then converted).
  void InitWeights(uint64_t seed);

  // Hidden states after the final norm (no LM head). Without a cache.
  //   positions: undefined = arange(T), or with attention_mask, cumsum(mask) - 1 (HF generate's
  //     convention for padded batches).
  //   attention_mask: undefined = no padding, else [B, T] 1 = token, 0 = padding (any side).
  //   splice: precomputed embeddings replacing those of some input positions (see EmbeddingSplice).
  torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& positions = {},
                        const torch::Tensor& attention_mask = {},
                        const EmbeddingSplice& splice = {});

  // Forward over new tokens with the KV cache: row b's first n_new[b] tokens are real (the rest
  // of the row is padding and ignored) and are appended at cache.length(b); their keys/values are
  // written into the cache and lengths advance by n_new. n_new empty = T for every row.
  // positions are explicit (usually length(b) + t). REQUIRES length(b) + T <= cache.max_len().
  // Returns hidden states after the final norm, [B, T, hidden]; padding rows are garbage.
  // splice: as in Forward, with flat indices into this call's [B, T] input.
  torch::Tensor ForwardCached(const torch::Tensor& input_ids, const torch::Tensor& positions,
                              KvCache& cache, const std::vector<int64_t>& n_new = {},
                              const EmbeddingSplice& splice = {});

  // Per-layer access for engines that drive layers one at a time (streaming backprop):
  // Forward == FinalNorm(Layer(L-1, ... Layer(0, Embed(ids), ctx) ..., ctx)).
  torch::Tensor Embed(const torch::Tensor& input_ids);
  // Embed(input_ids) with the splice's rows at its positions ([B, T, hidden]). Differentiable in
  // the embedding matrix (zero gradient at spliced positions). REQUIRES rows [N, hidden_size] with
  // N == index.numel() and indices within [0, B * T) (checked).
  torch::Tensor Embed(const torch::Tensor& input_ids, const EmbeddingSplice& splice);
  LayerContext MakeContext(int64_t batch, int64_t seq_len, const torch::Tensor& positions,
                           const torch::Tensor& attention_mask) const;
  // Context for a cached forward (does not advance the cache; ForwardCached does).
  LayerContext MakeCachedContext(const torch::Tensor& positions, KvCache& cache,
                                 const std::vector<int64_t>& n_new) const;
  torch::Tensor Layer(int64_t i, const torch::Tensor& hidden, const LayerContext& ctx);

  // Layer i split for sequence-chunked engines (streaming backprop): keys and values of the whole
  // input once, then the rest of the layer for a chunk of query rows against a prefix of them.
  // Layer(i, x) == LayerChunk(i, x, LayerKeyValues(i, x, cos, sin)..., cos, sin, mask).
  //   LayerKeyValues: x [B, T, d], cos/sin [B, 1, T, head_dim] -> k, v [B, kv_heads, T, head_dim]
  //   (k after k_norm and RoPE).
  //   LayerChunk: x_chunk [B, C, d] (query rows), k/v [B, kv_heads, Tk, head_dim] (the keys the
  //   chunk may attend to), cos/sin of the chunk's rows, mask broadcastable to [B, 1, C, Tk]
  //   (true = attend). Returns the layer output of the chunk's rows, [B, C, d].
  std::pair<torch::Tensor, torch::Tensor> LayerKeyValues(int64_t i, const torch::Tensor& x,
                                                         const torch::Tensor& cos,
                                                         const torch::Tensor& sin);
  torch::Tensor LayerChunk(int64_t i, const torch::Tensor& x_chunk, const torch::Tensor& k,
                           const torch::Tensor& v, const torch::Tensor& cos,
                           const torch::Tensor& sin, const torch::Tensor& mask);
  torch::Tensor FinalNorm(const torch::Tensor& hidden);

  // `t` in the compute dtype (itself when it already is).
  torch::Tensor ToCompute(const torch::Tensor& t) const;

  // RoPE tables for positions [B, T]: cos, sin [B, 1, T, head_dim] in the compute dtype.
  std::pair<torch::Tensor, torch::Tensor> RopeTables(const torch::Tensor& positions) const;

  // LM head: logits = hidden @ W^T, [.., vocab], in the compute dtype (both operands cast to it).
  // LmHeadWeight() is [vocab, hidden] in the parameter dtype; the embedding matrix when
  // tie_word_embeddings.
  torch::Tensor Logits(const torch::Tensor& hidden) const;
  torch::Tensor LmHeadWeight() const;

  // LoRA. AttachLora gives every target projection of every layer an adapter in `dtype` on the
  // model's device (A as PEFT initialises it, Kaiming-uniform with bound 1/sqrt(in) drawn from
  // `seed`; B zero), requiring gradients; the base parameters are left as they are (the caller
  // freezes them). REQUIRES: no adapters yet. InvalidArgument on bad options.
  Status AttachLora(const LoraOptions& options, uint64_t seed,
                    torch::ScalarType dtype = torch::kFloat32);
  bool has_lora() const { return lora_ != nullptr; }
  const LoraOptions& lora_options() const;  // REQUIRES has_lora()
  // The adapters under PEFT's names in adapter_model.safetensors
  // ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", ...), in layer order, A
  // before B; the live tensors. Empty without adapters.
  std::vector<std::pair<std::string, torch::Tensor>> LoraParameters();
  // Forwards with the adapters (true, the default) or as the base model (false): the KL and DPO
  // reference of a LoRA policy is its base, with no second copy of the weights.
  void set_lora_enabled(bool on);
  bool lora_enabled() const;
  // Folds the adapters into the projections' weights, W = W0 + s B A computed in float32 from a
  // copy of the unmerged W0 kept at the first call and cast to the weight's dtype, so forwards
  // pay no adapter products (what actors do after each update); call again whenever the adapters
  // change. The model's parameters then hold merged weights and set_lora_enabled(false) is
  // refused. REQUIRES has_lora().
  void MergeLora();
  bool lora_merged() const;
  // What training updates and what actors receive: the adapters when attached, else every
  // parameter (named_parameters(), tied ones once).
  std::vector<std::pair<std::string, torch::Tensor>> TrainableParameters();
  // The base parameters with the adapters merged, W + s B A, computed in float32 and cast to
  // `as` (unset: each parameter's dtype), by HF key; without adapters, copies of the parameters.
  std::vector<std::pair<std::string, torch::Tensor>> MergedParameters(
      std::optional<torch::ScalarType> as = {});

 private:
  std::vector<std::pair<std::string, Projection*>> AdaptedProjections();

  ModelConfig config_;
  ModelOptions options_;
  torch::Tensor inv_freq_;  // [head_dim / 2] float32 on the device
  torch::Tensor embed_;     // model.embed_tokens.weight
  std::vector<std::shared_ptr<DecoderLayer>> layers_;
  std::shared_ptr<RmsNorm> norm_;
  torch::Tensor lm_head_;  // undefined when tied
  std::shared_ptr<LoraState> lora_;  // null without adapters
};

// Switches a model's adapters off for a scope (no-op without adapters): its reference forwards.
class LoraDisabled {
 public:
  explicit LoraDisabled(DecoderModel& model)
      : model_(model), was_(model.has_lora() && model.lora_enabled()) {
    if (was_) model_.set_lora_enabled(false);
  }
  ~LoraDisabled() {
    if (was_) model_.set_lora_enabled(true);
  }
  LoraDisabled(const LoraDisabled&) = delete;
  LoraDisabled& operator=(const LoraDisabled&) = delete;

 private:
  DecoderModel& model_;
  bool was_;
};

}  // namespace chainrl::model
