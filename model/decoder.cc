// The qwen2 / qwen3 / llama decoder: modules named as HF's state dict, cached and uncached forward.
#include "model/decoder.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>

#include "core/check.h"
#include "model/attention.h"

namespace chainrl::model {

namespace {

// t in dtype `type` (t itself when it already is); differentiable.
torch::Tensor As(const torch::Tensor& t, torch::ScalarType type) {
  return !t.defined() || t.scalar_type() == type ? t : t.to(type);
}

}  // namespace

// The LoRA state every adapted projection of a model shares (DecoderModel::AttachLora).
struct LoraState {
  LoraOptions options;
  double scale = 0;
  bool enabled = true;
  bool merged = false;  // folded into the weights (DecoderModel::MergeLora)
};

// y = x W^T + b in x's dtype (the weights cast to it under mixed precision); parameters "weight"
// [out, in] and optionally "bias" [out]. With a LoRA adapter (not a registered parameter: the
// module's parameters stay HF's keys): y += scale * dropout(x) A^T B^T, A [r, in], B [out, r].
struct Projection : torch::nn::Module {
  Projection(int64_t in, int64_t out, bool bias, const torch::TensorOptions& o) {
    weight = register_parameter("weight", torch::empty({out, in}, o));
    if (bias) this->bias = register_parameter("bias", torch::empty({out}, o));
  }
  torch::Tensor operator()(const torch::Tensor& x) const {
    const auto type = x.scalar_type();
    torch::Tensor y = torch::linear(x, As(weight, type), As(bias, type));
    if (!lora_a.defined() || !lora->enabled || lora->merged) return y;
    const bool grad = torch::GradMode::is_enabled();
    torch::Tensor in = x;
    if (lora->options.dropout > 0 && grad && is_training())
      in = torch::dropout(x, lora->options.dropout, /*train=*/true);
    torch::Tensor delta = torch::linear(torch::linear(in, As(lora_a, type)), As(lora_b, type));
    if (grad) return y + delta * lora->scale;
    return y.add_(delta, lora->scale);
  }
  torch::Tensor weight, bias;
  torch::Tensor lora_a, lora_b;  // undefined without an adapter
  torch::Tensor base_weight;     // the unmerged weight, kept once the adapter is merged
  std::shared_ptr<LoraState> lora;
};

// HF's RMSNorm: computed in float32 (float64 stays float64), cast back to the input dtype, then
// multiplied by the weight (in the input dtype: the output keeps the input's dtype).
struct RmsNorm : torch::nn::Module {
  RmsNorm(int64_t dim, double eps, const torch::TensorOptions& o) : eps(eps) {
    weight = register_parameter("weight", torch::empty({dim}, o));
  }
  torch::Tensor operator()(const torch::Tensor& x) const {
    const auto in_type = x.scalar_type();
    torch::Tensor xf = in_type == torch::kDouble ? x : x.to(torch::kFloat);
    torch::Tensor inv_rms = xf.pow(2).mean(-1, /*keepdim=*/true).add_(eps).rsqrt_();
    torch::Tensor y = xf * inv_rms;
    return As(weight, in_type) * (in_type == xf.scalar_type() ? y : y.to(in_type));
  }
  double eps;
  torch::Tensor weight;
};

struct SelfAttention : torch::nn::Module {
  SelfAttention(const ModelConfig& c, const torch::TensorOptions& o)
      : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
    q_proj = register_module(
        "q_proj", std::make_shared<Projection>(c.hidden_size, heads * head_dim, c.qkv_bias(), o));
    k_proj = register_module("k_proj", std::make_shared<Projection>(
                                           c.hidden_size, kv_heads * head_dim, c.qkv_bias(), o));
    v_proj = register_module("v_proj", std::make_shared<Projection>(
                                           c.hidden_size, kv_heads * head_dim, c.qkv_bias(), o));
    o_proj = register_module(
        "o_proj", std::make_shared<Projection>(heads * head_dim, c.hidden_size, c.o_bias(), o));
    if (c.qk_norm()) {
      q_norm = register_module("q_norm", std::make_shared<RmsNorm>(head_dim, c.rms_norm_eps, o));
      k_norm = register_module("k_norm", std::make_shared<RmsNorm>(head_dim, c.rms_norm_eps, o));
    }
  }
  int64_t heads, kv_heads, head_dim;
  std::shared_ptr<Projection> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<RmsNorm> q_norm, k_norm;
};

struct Mlp : torch::nn::Module {
  Mlp(const ModelConfig& c, const torch::TensorOptions& o) {
    gate_proj = register_module(
        "gate_proj",
        std::make_shared<Projection>(c.hidden_size, c.intermediate_size, c.mlp_bias, o));
    up_proj = register_module(
        "up_proj", std::make_shared<Projection>(c.hidden_size, c.intermediate_size, c.mlp_bias, o));
    down_proj = register_module(
        "down_proj",
        std::make_shared<Projection>(c.intermediate_size, c.hidden_size, c.mlp_bias, o));
  }
  // down(silu(gate(x)) * up(x)); in place when no gradient is recorded.
  torch::Tensor operator()(const torch::Tensor& x) const {
    torch::Tensor gate = (*gate_proj)(x);
    if (torch::GradMode::is_enabled()) return (*down_proj)(torch::silu(gate) * (*up_proj)(x));
    return (*down_proj)(torch::silu_(gate).mul_((*up_proj)(x)));
  }
  std::shared_ptr<Projection> gate_proj, up_proj, down_proj;
};

struct DecoderLayer : torch::nn::Module {
  DecoderLayer(const ModelConfig& c, const torch::TensorOptions& o) {
    self_attn = register_module("self_attn", std::make_shared<SelfAttention>(c, o));
    mlp = register_module("mlp", std::make_shared<Mlp>(c, o));
    input_layernorm = register_module("input_layernorm",
                                      std::make_shared<RmsNorm>(c.hidden_size, c.rms_norm_eps, o));
    post_attention_layernorm = register_module(
        "post_attention_layernorm", std::make_shared<RmsNorm>(c.hidden_size, c.rms_norm_eps, o));
  }
  std::shared_ptr<SelfAttention> self_attn;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<RmsNorm> input_layernorm, post_attention_layernorm;
};

namespace {

// x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1), written as two fused
// multiply-adds on the halves instead of materialising rotate_half. x: [B, H, T, D].
torch::Tensor ApplyRope(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor out = x * cos;
  out.narrow(-1, 0, half).addcmul_(x.narrow(-1, half, half), sin.narrow(-1, 0, half), -1);
  out.narrow(-1, half, half).addcmul_(x.narrow(-1, 0, half), sin.narrow(-1, half, half));
  return out;
}

}  // namespace

torch::Tensor RopeInverseFrequencies(const ModelConfig& c) {
  // HF: 1 / theta ** (arange(0, d, 2).float() / d), in float32.
  torch::Tensor exponent = torch::arange(0, c.head_dim, 2, torch::kLong).to(torch::kFloat) /
                           static_cast<float>(c.head_dim);
  torch::Tensor inv_freq =
      1.0 / torch::pow(torch::scalar_tensor(c.rope_theta, torch::kFloat), exponent);
  if (!c.rope_scaling) return inv_freq;
  // llama3: wavelengths longer than old_len / low_freq_factor are divided by factor, shorter than
  // old_len / high_freq_factor kept, and the band between interpolated smoothly.
  const auto& s = *c.rope_scaling;
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  torch::Tensor wavelen = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  torch::Tensor smooth =
      (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return torch::where(medium, smoothed, scaled);
}

KvCache::KvCache(const ModelConfig& c, int64_t batch, int64_t max_len, torch::ScalarType dtype,
                 torch::Device device)
    : max_len_(max_len), lengths_(batch, 0) {
  CHAINRL_CHECK(batch > 0 && max_len > 0, "batch " << batch << " max_len " << max_len);
  auto o = torch::TensorOptions().dtype(dtype).device(device);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    // Zeroed so that slots never written hold finite values (masked scores times V must stay 0).
    k_.push_back(torch::zeros({batch, c.num_key_value_heads, max_len, c.head_dim}, o));
    v_.push_back(torch::zeros({batch, c.num_key_value_heads, max_len, c.head_dim}, o));
  }
}

void KvCache::SetLength(int64_t b, int64_t len) {
  CHAINRL_CHECK(b >= 0 && b < batch() && len >= 0 && len <= lengths_[b],
                "b " << b << " len " << len);
  lengths_[b] = len;
}

void KvCache::Advance(const std::vector<int64_t>& n_new) {
  CHAINRL_CHECK(static_cast<int64_t>(n_new.size()) == batch(), "n_new " << n_new.size());
  for (int64_t b = 0; b < batch(); ++b) {
    CHAINRL_CHECK(n_new[b] >= 0 && lengths_[b] + n_new[b] <= max_len_,
                  "b " << b << " length " << lengths_[b] << " + " << n_new[b] << " > " << max_len_);
    lengths_[b] += n_new[b];
  }
}

DecoderModel::DecoderModel(const ModelConfig& config, const ModelOptions& options)
    : config_(config), options_(options) {
  CHAINRL_CHECK(config.Validate().ok(), config.Validate().ToString());
  const auto o = torch::TensorOptions().dtype(options.dtype).device(options.device);
  auto inner = register_module("model", std::make_shared<torch::nn::Module>("model"));
  auto embed = inner->register_module("embed_tokens", std::make_shared<torch::nn::Module>());
  embed_ =
      embed->register_parameter("weight", torch::empty({config.vocab_size, config.hidden_size}, o));
  auto layers = inner->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.push_back(std::make_shared<DecoderLayer>(config, o));
    layers->push_back(layers_.back());
  }
  norm_ = inner->register_module(
      "norm", std::make_shared<RmsNorm>(config.hidden_size, config.rms_norm_eps, o));
  if (!config.tie_word_embeddings) {
    auto head = register_module("lm_head", std::make_shared<torch::nn::Module>());
    lm_head_ = head->register_parameter("weight",
                                        torch::empty({config.vocab_size, config.hidden_size}, o));
  }
  inv_freq_ = RopeInverseFrequencies(config).to(options.device);
}

void DecoderModel::InitWeights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor& w = p.value();
    const bool is_norm =
        name.size() >= 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0;
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (is_norm) {
      w.fill_(1.0);
    } else if (is_bias) {
      w.zero_();
    } else {
      torch::Tensor cpu = torch::empty(w.sizes(), torch::kFloat);
      cpu.normal_(0.0, config_.initializer_range, gen);
      w.copy_(cpu);
    }
  }
}

std::pair<torch::Tensor, torch::Tensor> DecoderModel::RopeTables(
    const torch::Tensor& positions) const {
  // HF: freqs = positions (float32) outer inv_freq; emb = cat(freqs, freqs); cos/sin cast.
  torch::Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, D/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);              // [B, 1, T, D]
  torch::Tensor cos = emb.cos(), sin = emb.sin();
  const auto type = options_.ComputeDtype();
  if (type != torch::kFloat) {
    cos = cos.to(type);
    sin = sin.to(type);
  }
  return {cos, sin};
}

torch::Tensor DecoderModel::ToCompute(const torch::Tensor& t) const {
  return As(t, options_.ComputeDtype());
}

torch::Tensor DecoderModel::Embed(const torch::Tensor& input_ids) {
  return torch::embedding(embed_, input_ids);
}

std::vector<int64_t> PlaceholderPositions(const std::vector<int32_t>& ids, int32_t placeholder) {
  std::vector<int64_t> out;
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] == placeholder) out.push_back(static_cast<int64_t>(t));
  return out;
}

torch::Tensor DecoderModel::Embed(const torch::Tensor& input_ids, const EmbeddingSplice& splice) {
  torch::Tensor e = Embed(input_ids);
  if (splice.empty()) return e;
  const int64_t n = splice.index.numel(), d = config_.hidden_size;
  CHAINRL_CHECK(splice.rows.defined() && splice.rows.dim() == 2 && splice.rows.size(0) == n &&
                    splice.rows.size(1) == d,
                "splice rows " << (splice.rows.defined() ? splice.rows.sizes() : c10::IntArrayRef())
                               << " for " << n << " positions, hidden " << d);
  const int64_t flat = e.numel() / d;
  torch::Tensor index = splice.index.to(options_.device, torch::kLong).reshape({n});
  CHAINRL_CHECK(index.min().item<int64_t>() >= 0 && index.max().item<int64_t>() < flat,
                "splice index outside [0, " << flat << ")");
  torch::Tensor rows = splice.rows.detach().to(options_.device, options_.dtype);
  // Out of place, so the embedding's gradient flows everywhere except the replaced rows.
  return e.reshape({flat, d}).index_copy(0, index, rows).view(e.sizes());
}

LayerContext DecoderModel::MakeContext(int64_t batch, int64_t seq_len,
                                       const torch::Tensor& positions,
                                       const torch::Tensor& attention_mask) const {
  LayerContext ctx;
  torch::Tensor pos = positions;
  if (attention_mask.defined()) {
    CHAINRL_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch &&
                      attention_mask.size(1) == seq_len,
                  "attention_mask" << attention_mask.sizes());
    ctx.mask = PaddedCausalMask(attention_mask.to(options_.device));
    if (!pos.defined()) {
      torch::Tensor m = attention_mask.to(options_.device).to(torch::kLong);
      pos = (m.cumsum(1) - 1).clamp_min_(0);
    }
  } else {
    ctx.mask = CausalMask(seq_len, seq_len, options_.device);
  }
  if (!pos.defined())
    pos = torch::arange(seq_len, torch::TensorOptions().dtype(torch::kLong).device(options_.device))
              .unsqueeze(0)
              .expand({batch, seq_len});
  CHAINRL_CHECK(pos.dim() == 2 && pos.size(0) == batch && pos.size(1) == seq_len,
                "positions" << pos.sizes());
  std::tie(ctx.cos, ctx.sin) = RopeTables(pos.to(options_.device));
  return ctx;
}

LayerContext DecoderModel::MakeCachedContext(const torch::Tensor& positions, KvCache& cache,
                                             const std::vector<int64_t>& n_new) const {
  const int64_t B = positions.size(0), T = positions.size(1);
  CHAINRL_CHECK(positions.dim() == 2 && B == cache.batch(),
                "positions" << positions.sizes() << " cache batch " << cache.batch());
  CHAINRL_CHECK(n_new.empty() || static_cast<int64_t>(n_new.size()) == B, "n_new " << n_new.size());
  LayerContext ctx;
  ctx.cache = &cache;
  const auto& start = cache.lengths();
  bool uniform = true;
  int64_t key_len = 1;
  for (int64_t b = 0; b < B; ++b) {
    CHAINRL_CHECK(start[b] + T <= cache.max_len(),
                  "sequence " << b << ": " << start[b] << " + " << T << " > " << cache.max_len());
    const int64_t n = n_new.empty() ? T : n_new[b];
    CHAINRL_CHECK(n >= 0 && n <= T, "n_new[" << b << "] = " << n);
    key_len = std::max(key_len, start[b] + n);
    uniform = uniform && start[b] == start[0];
  }
  ctx.key_len = key_len;
  const auto dev = options_.device;
  // A decode step without gradient on the CPU: each sequence attends to its own length.
  const bool ragged = options_.ragged_decode && T == 1 && !torch::GradMode::is_enabled() &&
                      cache.num_layers() > 0 && DecodeAttentionSupports(cache.k(0));
  if (ragged) {
    ctx.key_lens.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      ctx.key_lens[static_cast<size_t>(b)] = n_new.empty() || n_new[b] > 0 ? start[b] + 1 : 0;
  }
  // Where the new tokens' keys and values are written: one common slot, or each row's own.
  if (uniform) {
    ctx.uniform_start = start[0];
  } else {
    torch::Tensor slots = torch::tensor(start, torch::kLong).to(dev).view({B, 1}) +
                          torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(dev));
    ctx.slot_index =
        slots.view({B, 1, T, 1}).expand({B, config_.num_key_value_heads, T, config_.head_dim});
  }
  // The padded path's mask: row b's query t attends to slots <= start[b] + t. With a common start
  // that is one bottom-right causal mask, and none at all when it would allow everything (one new
  // token per row).
  if (!ragged) {
    if (!uniform || key_len != start[0] + T) {
      ctx.mask = CacheCausalMask(start, T, key_len, dev);
    } else if (T > 1) {
      ctx.mask = CausalMask(T, key_len, dev);
    }
  }
  std::tie(ctx.cos, ctx.sin) = RopeTables(positions.to(dev));
  return ctx;
}

// The rest of a layer after attention: out = x + attn_out, then out + mlp(norm(out)). In place when
// the dtypes agree (a projection's output is not needed by its backward); under mixed precision
// the residual stream stays in x's dtype, so the sums are out of place.
static torch::Tensor Residuals(DecoderLayer& layer, torch::Tensor attn_out,
                               const torch::Tensor& x) {
  const auto compute = attn_out.scalar_type();
  torch::Tensor out;
  if (compute == x.scalar_type()) {
    out = attn_out.add_(x);
  } else {
    out = x + attn_out;
  }
  torch::Tensor m = (*layer.mlp)(As((*layer.post_attention_layernorm)(out), compute));
  if (m.scalar_type() == out.scalar_type()) return m.add_(out);
  return out + m;
}

torch::Tensor DecoderModel::Layer(int64_t i, const torch::Tensor& x, const LayerContext& ctx) {
  CHAINRL_CHECK(i >= 0 && i < num_layers(), "layer " << i);
  DecoderLayer& layer = *layers_[i];
  SelfAttention& attn = *layer.self_attn;
  const int64_t B = x.size(0), T = x.size(1), D = attn.head_dim;

  torch::Tensor h = ToCompute((*layer.input_layernorm)(x));
  torch::Tensor q = (*attn.q_proj)(h).view({B, T, attn.heads, D});
  torch::Tensor k = (*attn.k_proj)(h).view({B, T, attn.kv_heads, D});
  torch::Tensor v = (*attn.v_proj)(h).view({B, T, attn.kv_heads, D}).transpose(1, 2);
  if (attn.q_norm) {  // qwen3: per-head RMSNorm before RoPE
    q = (*attn.q_norm)(q);
    k = (*attn.k_norm)(k);
  }
  q = ApplyRope(q.transpose(1, 2), ctx.cos, ctx.sin);  // [B, H, T, D]
  k = ApplyRope(k.transpose(1, 2), ctx.cos, ctx.sin);

  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  torch::Tensor a;
  if (ctx.cache != nullptr) {
    torch::Tensor& ck = ctx.cache->k(i);
    torch::Tensor& cv = ctx.cache->v(i);
    if (ctx.uniform_start >= 0) {
      ck.narrow(2, ctx.uniform_start, T).copy_(k);
      cv.narrow(2, ctx.uniform_start, T).copy_(v);
    } else {
      ck.scatter_(2, ctx.slot_index, k);
      cv.scatter_(2, ctx.slot_index, v);
    }
    if (!ctx.key_lens.empty()) {
      a = DecodeAttention(q, ck, cv, ctx.key_lens, scale);
    } else {
      k = ck.narrow(2, 0, ctx.key_len);
      v = cv.narrow(2, 0, ctx.key_len);
    }
  }
  if (!a.defined()) a = Attention(q, k, v, ctx.mask, scale);
  a = a.transpose(1, 2).reshape({B, T, attn.heads * D});
  return Residuals(layer, (*attn.o_proj)(a), x);
}

std::pair<torch::Tensor, torch::Tensor> DecoderModel::LayerKeyValues(int64_t i,
                                                                     const torch::Tensor& x,
                                                                     const torch::Tensor& cos,
                                                                     const torch::Tensor& sin) {
  CHAINRL_CHECK(i >= 0 && i < num_layers(), "layer " << i);
  DecoderLayer& layer = *layers_[i];
  SelfAttention& attn = *layer.self_attn;
  const int64_t B = x.size(0), T = x.size(1), D = attn.head_dim;
  torch::Tensor h = ToCompute((*layer.input_layernorm)(x));
  torch::Tensor k = (*attn.k_proj)(h).view({B, T, attn.kv_heads, D});
  torch::Tensor v = (*attn.v_proj)(h).view({B, T, attn.kv_heads, D}).transpose(1, 2);
  if (attn.k_norm) k = (*attn.k_norm)(k);
  return {ApplyRope(k.transpose(1, 2), cos, sin), v};
}

torch::Tensor DecoderModel::LayerChunk(int64_t i, const torch::Tensor& x, const torch::Tensor& k,
                                       const torch::Tensor& v, const torch::Tensor& cos,
                                       const torch::Tensor& sin, const torch::Tensor& mask) {
  CHAINRL_CHECK(i >= 0 && i < num_layers(), "layer " << i);
  DecoderLayer& layer = *layers_[i];
  SelfAttention& attn = *layer.self_attn;
  const int64_t B = x.size(0), C = x.size(1), D = attn.head_dim;
  torch::Tensor h = ToCompute((*layer.input_layernorm)(x));
  torch::Tensor q = (*attn.q_proj)(h).view({B, C, attn.heads, D});
  if (attn.q_norm) q = (*attn.q_norm)(q);
  q = ApplyRope(q.transpose(1, 2), cos, sin);
  torch::Tensor a = Attention(q, k, v, mask, 1.0 / std::sqrt(static_cast<double>(D)));
  a = a.transpose(1, 2).reshape({B, C, attn.heads * D});
  return Residuals(layer, (*attn.o_proj)(a), x);
}

torch::Tensor DecoderModel::FinalNorm(const torch::Tensor& hidden) { return (*norm_)(hidden); }

torch::Tensor DecoderModel::Forward(const torch::Tensor& input_ids, const torch::Tensor& positions,
                                    const torch::Tensor& attention_mask,
                                    const EmbeddingSplice& splice) {
  CHAINRL_CHECK(input_ids.dim() == 2, "input_ids" << input_ids.sizes());
  LayerContext ctx = MakeContext(input_ids.size(0), input_ids.size(1), positions, attention_mask);
  torch::Tensor h = Embed(input_ids, splice);
  for (int64_t i = 0; i < num_layers(); ++i) h = Layer(i, h, ctx);
  return FinalNorm(h);
}

torch::Tensor DecoderModel::ForwardCached(const torch::Tensor& input_ids,
                                          const torch::Tensor& positions, KvCache& cache,
                                          const std::vector<int64_t>& n_new,
                                          const EmbeddingSplice& splice) {
  CHAINRL_CHECK(input_ids.dim() == 2 && positions.sizes() == input_ids.sizes(),
                "input_ids" << input_ids.sizes() << " positions" << positions.sizes());
  CHAINRL_CHECK(cache.num_layers() == num_layers(), "cache layers " << cache.num_layers());
  LayerContext ctx = MakeCachedContext(positions, cache, n_new);
  torch::Tensor h = Embed(input_ids, splice);
  for (int64_t i = 0; i < num_layers(); ++i) h = Layer(i, h, ctx);
  cache.Advance(n_new.empty() ? std::vector<int64_t>(input_ids.size(0), input_ids.size(1)) : n_new);
  return FinalNorm(h);
}

torch::Tensor DecoderModel::Logits(const torch::Tensor& hidden) const {
  const auto type = options_.ComputeDtype();
  return torch::linear(As(hidden, type), As(LmHeadWeight(), type));
}

torch::Tensor DecoderModel::LmHeadWeight() const {
  return config_.tie_word_embeddings ? embed_ : lm_head_;
}

double LoraOptions::Scale() const {
  const double r = static_cast<double>(rank);
  return rslora ? alpha / std::sqrt(r) : alpha / r;
}

Status ValidateLoraOptions(const LoraOptions& o) {
  if (o.targets.empty())
    return InvalidArgument(
        "lora.targets is empty: name at least one of q_proj, k_proj, v_proj, "
        "o_proj, gate_proj, up_proj, down_proj");
  for (size_t i = 0; i < o.targets.size(); ++i) {
    const std::string& t = o.targets[i];
    if (std::find_if(std::begin(kLoraTargets), std::end(kLoraTargets),
                     [&](const char* k) { return t == k; }) == std::end(kLoraTargets))
      return InvalidArgument("lora.targets: '" + t +
                             "' is not a projection (q_proj, k_proj, v_proj, o_proj, gate_proj, "
                             "up_proj, down_proj)");
    if (std::find(o.targets.begin(), o.targets.begin() + static_cast<std::ptrdiff_t>(i), t) !=
        o.targets.begin() + static_cast<std::ptrdiff_t>(i))
      return InvalidArgument("lora.targets: '" + t + "' is named twice");
  }
  if (o.rank < 1)
    return InvalidArgument("lora.rank = " + std::to_string(o.rank) + ": must be >= 1");
  if (!(o.alpha > 0)) return InvalidArgument("lora.alpha must be > 0");
  if (!(o.dropout >= 0 && o.dropout < 1)) return InvalidArgument("lora.dropout must be in [0, 1)");
  return Status::Ok();
}

std::vector<std::pair<std::string, Projection*>> DecoderModel::AdaptedProjections() {
  std::vector<std::pair<std::string, Projection*>> out;
  for (int64_t i = 0; i < num_layers(); ++i) {
    DecoderLayer& l = *layers_[i];
    const std::string layer = "model.layers." + std::to_string(i) + ".";
    const std::pair<const char*, Projection*> all[] = {
        {"self_attn.q_proj", l.self_attn->q_proj.get()},
        {"self_attn.k_proj", l.self_attn->k_proj.get()},
        {"self_attn.v_proj", l.self_attn->v_proj.get()},
        {"self_attn.o_proj", l.self_attn->o_proj.get()},
        {"mlp.gate_proj", l.mlp->gate_proj.get()},
        {"mlp.up_proj", l.mlp->up_proj.get()},
        {"mlp.down_proj", l.mlp->down_proj.get()}};
    for (const auto& [name, proj] : all) {
      const std::string_view leaf =
          std::string_view(name).substr(std::string_view(name).find('.') + 1);
      const bool target = lora_ != nullptr &&
                          std::find(lora_->options.targets.begin(), lora_->options.targets.end(),
                                    leaf) != lora_->options.targets.end();
      if (target) out.emplace_back(layer + name, proj);
    }
  }
  return out;
}

Status DecoderModel::AttachLora(const LoraOptions& options, uint64_t seed,
                                torch::ScalarType dtype) {
  CHAINRL_CHECK(lora_ == nullptr, "AttachLora twice");
  CHAINRL_RETURN_IF_ERROR(ValidateLoraOptions(options));
  lora_ = std::make_shared<LoraState>();
  lora_->options = options;
  lora_->scale = options.Scale();
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto o = torch::TensorOptions().dtype(dtype).device(options_.device);
  for (auto& [name, proj] : AdaptedProjections()) {
    const int64_t in = proj->weight.size(1), out = proj->weight.size(0);
    // PEFT: kaiming_uniform_(A, a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::Tensor a = torch::empty({options.rank, in}, torch::kFloat);
    a.uniform_(-bound, bound, gen);
    proj->lora_a = a.to(o).set_requires_grad(true);
    proj->lora_b = torch::zeros({out, options.rank}, o).set_requires_grad(true);
    proj->lora = lora_;
  }
  return Status::Ok();
}

const LoraOptions& DecoderModel::lora_options() const {
  CHAINRL_CHECK(lora_ != nullptr, "no LoRA adapters");
  return lora_->options;
}

std::vector<std::pair<std::string, torch::Tensor>> DecoderModel::LoraParameters() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (lora_ == nullptr) return out;
  for (auto& [name, proj] : AdaptedProjections()) {
    out.emplace_back("base_model.model." + name + ".lora_A.weight", proj->lora_a);
    out.emplace_back("base_model.model." + name + ".lora_B.weight", proj->lora_b);
  }
  return out;
}

void DecoderModel::set_lora_enabled(bool on) {
  CHAINRL_CHECK(lora_ != nullptr, "no LoRA adapters");
  CHAINRL_CHECK(!lora_->merged, "merged LoRA adapters cannot be switched off");
  lora_->enabled = on;
}

void DecoderModel::MergeLora() {
  CHAINRL_CHECK(lora_ != nullptr, "no LoRA adapters");
  torch::NoGradGuard no_grad;
  for (auto& [name, proj] : AdaptedProjections()) {
    if (!proj->base_weight.defined()) proj->base_weight = proj->weight.detach().clone();
    torch::Tensor merged =
        proj->base_weight.to(torch::kFloat) +
        torch::matmul(proj->lora_b.to(torch::kFloat), proj->lora_a.to(torch::kFloat)) *
            lora_->scale;
    proj->weight.copy_(merged);
  }
  lora_->merged = true;
}

bool DecoderModel::lora_merged() const { return lora_ != nullptr && lora_->merged; }

bool DecoderModel::lora_enabled() const { return lora_ != nullptr && lora_->enabled; }

std::vector<std::pair<std::string, torch::Tensor>> DecoderModel::TrainableParameters() {
  if (lora_ != nullptr) return LoraParameters();
  return named_parameters().pairs();
}

std::vector<std::pair<std::string, torch::Tensor>> DecoderModel::MergedParameters(
    std::optional<torch::ScalarType> as) {
  CHAINRL_CHECK(!lora_merged(), "MergedParameters of a model whose adapters are merged already");
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> delta;  // HF weight key -> s B A in float32
  if (lora_ != nullptr) {
    for (auto& [name, proj] : AdaptedProjections())
      delta[name + ".weight"] =
          torch::matmul(proj->lora_b.to(torch::kFloat), proj->lora_a.to(torch::kFloat)) *
          lora_->scale;
  }
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : named_parameters()) {
    const auto type = as.value_or(p.value().scalar_type());
    auto d = delta.find(p.key());
    if (d == delta.end()) {
      out.emplace_back(p.key(), p.value().to(type, /*non_blocking=*/false, /*copy=*/true));
    } else {
      out.emplace_back(p.key(), (p.value().to(torch::kFloat) + d->second).to(type));
    }
  }
  return out;
}

}  // namespace chainrl::model
