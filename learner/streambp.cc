// Chunked LM head and loss with per-chunk backward (see streambp.h).
#include "learner/streambp.h"

#include <algorithm>

#include "core/check.h"
#include "model/attention.h"

namespace chainrl::learner {

namespace {

// Logits of a chunk in float32: the product runs in the hidden states' dtype (the weight cast per
// chunk, so each chunk's graph owns its cast and its gradient reaches the parameter), then the
// logits are upcast so that log_softmax and the loss are computed in float32 whatever the
// compute dtype.
torch::Tensor HeadLogits(const torch::Tensor& h, const torch::Tensor& head_weight) {
  const auto type = h.scalar_type();
  torch::Tensor logits =
      torch::linear(h, head_weight.scalar_type() == type ? head_weight : head_weight.to(type));
  return type == torch::kFloat || type == torch::kDouble ? logits : logits.to(torch::kFloat);
}

}  // namespace

ChunkedHeadResult ChunkedHeadBackward(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                      const torch::Tensor& targets, const ChunkLossFn& loss_fn,
                                      const ChunkedHeadOptions& options) {
  CHAINRL_CHECK(hidden.dim() == 3 && targets.dim() == 2 && targets.size(0) == hidden.size(0) &&
                    targets.size(1) == hidden.size(1),
                "hidden " << hidden.sizes() << " targets " << targets.sizes());
  CHAINRL_CHECK(options.chunk_tokens >= 1, "chunk_tokens " << options.chunk_tokens);
  const int64_t T = hidden.size(1);
  ChunkedHeadResult out;
  out.grad_hidden = torch::zeros_like(hidden, torch::MemoryFormat::Contiguous);
  torch::Tensor h = hidden.detach();
  const double inv_t = 1.0 / options.temperature;
  for (int64_t t0 = 0; t0 < T; t0 += options.chunk_tokens) {
    const int64_t t1 = std::min(T, t0 + options.chunk_tokens);
    // A leaf per chunk: its gradient is this chunk's slice of dH.
    torch::Tensor hk = h.narrow(1, t0, t1 - t0).detach().requires_grad_(true);
    torch::Tensor logits = HeadLogits(hk, head_weight);
    if (inv_t != 1.0) logits = logits * inv_t;
    torch::Tensor logp_all = torch::log_softmax(logits, -1);
    torch::Tensor logp =
        logp_all.gather(-1, targets.narrow(1, t0, t1 - t0).unsqueeze(-1)).squeeze(-1);
    torch::Tensor entropy;
    if (options.want_entropy) entropy = -(logp_all.exp() * logp_all).sum(-1);
    torch::Tensor loss = loss_fn(t0, t1, logp, entropy);
    loss.backward();
    out.loss += loss.item<double>();
    out.grad_hidden.narrow(1, t0, t1 - t0).copy_(hk.grad());
  }
  return out;
}

namespace {

struct Rope {
  torch::Tensor cos, sin;  // [B, 1, T, D]
};

// Positions as the model's uncached forward takes them: arange, or cumsum(mask) - 1 with padding.
Rope MakeRope(model::DecoderModel& m, int64_t B, int64_t T, const torch::Tensor& attention_mask) {
  const auto dev = m.options().device;
  torch::Tensor pos;
  if (attention_mask.defined()) {
    pos = (attention_mask.to(dev).to(torch::kLong).cumsum(1) - 1).clamp_min_(0);
  } else {
    pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(dev))
              .unsqueeze(0)
              .expand({B, T});
  }
  auto [cos, sin] = m.RopeTables(pos);
  return {cos, sin};
}

// The mask of query rows [s, e) over keys [0, e): causal (query s + i sees keys <= s + i), keys
// that are padding excluded, and rows left with no key attending everywhere (their outputs are
// padding), exactly as the model's PaddedCausalMask restricted to those rows and keys.
torch::Tensor ChunkMask(int64_t s, int64_t e, const torch::Tensor& key_valid,
                        const torch::Device& dev) {
  torch::Tensor mask = model::CausalMask(e - s, e, dev);  // [C, e], bottom-right aligned
  if (!key_valid.defined()) return mask;
  mask = mask.unsqueeze(0).logical_and(
      key_valid.narrow(1, 0, e).to(dev).to(torch::kBool).unsqueeze(1));
  mask.logical_or_(mask.any(-1, /*keepdim=*/true).logical_not());
  return mask.unsqueeze(1);  // [B, 1, C, e]
}

// X_0 .. X_L: the input of every layer and of the final norm, without gradients.
std::vector<torch::Tensor> ForwardInputs(model::DecoderModel& m, const torch::Tensor& ids,
                                         const torch::Tensor& attention_mask, const Rope& rope,
                                         int64_t chunk, const model::EmbeddingSplice& splice) {
  torch::NoGradGuard no_grad;
  const int64_t T = ids.size(1);
  const auto dev = m.options().device;
  std::vector<torch::Tensor> xs = {m.Embed(ids, splice)};
  for (int64_t l = 0; l < m.num_layers(); ++l) {
    const torch::Tensor& x = xs.back();
    auto [k, v] = m.LayerKeyValues(l, x, rope.cos, rope.sin);
    torch::Tensor y = torch::empty_like(x);
    for (int64_t s = 0; s < T; s += chunk) {
      const int64_t e = std::min(T, s + chunk);
      y.narrow(1, s, e - s)
          .copy_(m.LayerChunk(l, x.narrow(1, s, e - s), k.narrow(2, 0, e), v.narrow(2, 0, e),
                              rope.cos.narrow(2, s, e - s), rope.sin.narrow(2, s, e - s),
                              ChunkMask(s, e, attention_mask, dev)));
    }
    xs.push_back(std::move(y));
  }
  return xs;
}

}  // namespace

ChunkChoice ChooseChunks(const model::ModelConfig& c, int64_t seq_len, int64_t budget_bytes) {
  const double layer_bytes_per_row =
      4.0 *
      (2.0 * static_cast<double>(seq_len) * static_cast<double>(c.num_attention_heads) +
       4.0 * static_cast<double>(c.intermediate_size) + 8.0 * static_cast<double>(c.hidden_size));
  const double head_bytes_per_row = 4.0 * 3.0 * static_cast<double>(c.vocab_size);
  auto clamp = [&](double rows) {
    const int64_t lo = std::min<int64_t>(16, std::max<int64_t>(seq_len, 1));
    return std::clamp<int64_t>(static_cast<int64_t>(rows), lo, std::max<int64_t>(seq_len, 1));
  };
  const double budget = static_cast<double>(budget_bytes);
  return {clamp(budget / layer_bytes_per_row), clamp(budget / head_bytes_per_row)};
}

torch::Tensor StreamHidden(model::DecoderModel& m, const torch::Tensor& ids,
                           const torch::Tensor& attention_mask, int64_t chunk_tokens,
                           const model::EmbeddingSplice& splice) {
  const int64_t T = ids.size(1);
  const int64_t chunk = chunk_tokens > 0 ? chunk_tokens : T;
  Rope rope = MakeRope(m, ids.size(0), T, attention_mask);
  auto xs = ForwardInputs(m, ids, attention_mask, rope, chunk, splice);
  torch::NoGradGuard no_grad;
  return m.FinalNorm(xs.back());
}

double StreamBackward(model::DecoderModel& m, const torch::Tensor& ids,
                      const torch::Tensor& attention_mask, const torch::Tensor& targets,
                      const ChunkLossFn& loss_fn, const StreamBpOptions& options,
                      const model::EmbeddingSplice& splice) {
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t chunk = options.layer_chunk_tokens > 0 ? options.layer_chunk_tokens : T;
  const auto dev = m.options().device;
  Rope rope = MakeRope(m, B, T, attention_mask);
  std::vector<torch::Tensor> xs = ForwardInputs(m, ids, attention_mask, rope, chunk, splice);

  // Head: final norm (per token, cheap) with gradient, then the chunked LM head and loss.
  torch::Tensor x_last = xs.back().detach().requires_grad_(true);
  torch::Tensor hidden = m.ToCompute(m.FinalNorm(x_last));
  ChunkedHeadResult head =
      ChunkedHeadBackward(hidden, m.LmHeadWeight(), targets, loss_fn, options.head);
  hidden.backward(head.grad_hidden);
  torch::Tensor dy = x_last.grad();
  xs.pop_back();

  for (int64_t l = m.num_layers() - 1; l >= 0; --l) {
    torch::Tensor x = xs.back().detach();
    xs.pop_back();  // the stored input is released as soon as its layer is done
    torch::Tensor k, v;
    {
      torch::NoGradGuard no_grad;
      std::tie(k, v) = m.LayerKeyValues(l, x, rope.cos, rope.sin);
    }
    // Key/value gradients are sums over every later chunk: accumulated in float32 even when the
    // layer computes in a lower precision.
    const auto acc = k.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    torch::Tensor dk = torch::zeros(k.sizes(), k.options().dtype(acc));
    torch::Tensor dv = torch::zeros(v.sizes(), v.options().dtype(acc));
    torch::Tensor dx = torch::zeros_like(x);
    for (int64_t s = 0; s < T; s += chunk) {
      const int64_t e = std::min(T, s + chunk);
      torch::Tensor xc = x.narrow(1, s, e - s).detach().requires_grad_(true);
      torch::Tensor kp = k.narrow(2, 0, e).detach().requires_grad_(true);
      torch::Tensor vp = v.narrow(2, 0, e).detach().requires_grad_(true);
      torch::Tensor y =
          m.LayerChunk(l, xc, kp, vp, rope.cos.narrow(2, s, e - s), rope.sin.narrow(2, s, e - s),
                       ChunkMask(s, e, attention_mask, dev));
      y.backward(dy.narrow(1, s, e - s));
      dx.narrow(1, s, e - s).add_(xc.grad());
      dk.narrow(2, 0, e).add_(kp.grad());
      dv.narrow(2, 0, e).add_(vp.grad());
    }
    // The K/V paths once for the whole sequence.
    torch::Tensor xl = x.requires_grad_(true);
    auto [k2, v2] = m.LayerKeyValues(l, xl, rope.cos, rope.sin);
    torch::autograd::backward({k2, v2}, {dk.to(k2.scalar_type()), dv.to(v2.scalar_type())});
    dx.add_(xl.grad());
    dy = dx;
  }
  // A frozen embedding matrix (the base of a LoRA policy) takes no gradient.
  torch::Tensor embedded = m.Embed(ids, splice);
  if (embedded.requires_grad()) embedded.backward(dy);
  return head.loss;
}

}  // namespace chainrl::learner
