// Chunked LM head and loss with per-chunk backward (see streambp.h).
#include "learner/streambp.h"

#include "core/check.h"

namespace chainrl::learner {

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
    torch::Tensor logits = torch::linear(hk, head_weight);
    if (inv_t != 1.0) logits = logits * inv_t;
    torch::Tensor logp_all = torch::log_softmax(logits, -1);
    torch::Tensor logp = logp_all.gather(-1, targets.narrow(1, t0, t1 - t0).unsqueeze(-1)).squeeze(-1);
    torch::Tensor entropy;
    if (options.want_entropy) entropy = -(logp_all.exp() * logp_all).sum(-1);
    torch::Tensor loss = loss_fn(t0, t1, logp, entropy);
    loss.backward();
    out.loss += loss.item<double>();
    out.grad_hidden.narrow(1, t0, t1 - t0).copy_(hk.grad());
  }
  return out;
}

torch::Tensor ChunkedSequenceLogprobs(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                      const torch::Tensor& targets, const torch::Tensor& mask,
                                      const ChunkedHeadOptions& options) {
  CHAINRL_CHECK(options.chunk_tokens >= 1, "chunk_tokens " << options.chunk_tokens);
  torch::NoGradGuard no_grad;
  const int64_t T = hidden.size(1);
  torch::Tensor sums = torch::zeros({hidden.size(0)}, torch::kFloat64);
  for (int64_t t0 = 0; t0 < T; t0 += options.chunk_tokens) {
    const int64_t t1 = std::min(T, t0 + options.chunk_tokens);
    torch::Tensor logits = torch::linear(hidden.narrow(1, t0, t1 - t0), head_weight);
    if (options.temperature != 1.0) logits = logits / options.temperature;
    torch::Tensor logp = torch::log_softmax(logits, -1)
                             .gather(-1, targets.narrow(1, t0, t1 - t0).unsqueeze(-1))
                             .squeeze(-1);
    sums += (logp.to(torch::kFloat64) * mask.narrow(1, t0, t1 - t0).to(torch::kFloat64)).sum(1).cpu();
  }
  return sums;
}

}  // namespace chainrl::learner
