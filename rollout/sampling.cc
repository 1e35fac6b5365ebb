// Token sampling (see sampling.h). Sorting-based top-k/top-p with per-row parameters, inverse-CDF
// sampling with counter-based uniforms.
#include "rollout/sampling.h"

#include <tuple>

#include "core/check.h"
#include "kernels/torch_ops.h"

namespace chainrl::rollout {
namespace {

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct RowTensors {
  torch::Tensor inv_temp;  // [B, 1]
  torch::Tensor top_k;     // [B, 1] int64, V when off
  torch::Tensor top_p;     // [B, 1]
  std::vector<bool> greedy;
  std::vector<bool> filtered;  // the row uses top-k or top-p
  bool any_filter = false;
};

RowTensors MakeRows(const std::vector<SamplingParams>& params, int64_t vocab,
                    const torch::Device& device) {
  const int64_t b = static_cast<int64_t>(params.size());
  RowTensors r;
  std::vector<float> inv_t(b), top_p(b);
  std::vector<int64_t> top_k(b);
  r.greedy.resize(b);
  r.filtered.resize(b);
  for (int64_t i = 0; i < b; ++i) {
    const auto& p = params[i];
    r.greedy[i] = p.temperature <= 0;
    inv_t[i] = r.greedy[i] ? 1.f : static_cast<float>(1.0 / p.temperature);
    top_k[i] = (p.top_k > 0 && p.top_k < vocab) ? p.top_k : vocab;
    top_p[i] = static_cast<float>(p.top_p > 0 && p.top_p < 1 ? p.top_p : 1.0);
    r.filtered[i] = top_k[i] < vocab || top_p[i] < 1.f;
    r.any_filter = r.any_filter || r.filtered[i];
  }
  auto f = torch::TensorOptions().dtype(torch::kFloat32);
  r.inv_temp = torch::from_blob(inv_t.data(), {b, 1}, f).clone().to(device);
  r.top_p = torch::from_blob(top_p.data(), {b, 1}, f).clone().to(device);
  r.top_k = torch::from_blob(top_k.data(), {b, 1}, torch::kInt64).clone().to(device);
  return r;
}

// Sorted (descending, ties by id) probabilities with top-k/top-p applied and renormalised, plus
// the sort order.
std::pair<torch::Tensor, torch::Tensor> FilteredSorted(const torch::Tensor& probs,
                                                       const RowTensors& rows) {
  // A stable sort on descending probability keeps ties in ascending token-id order.
  auto sorted = torch::sort(probs, /*stable=*/true, /*dim=*/-1, /*descending=*/true);
  torch::Tensor p = std::get<0>(sorted), idx = std::get<1>(sorted);
  if (!rows.any_filter) return {p, idx};
  const int64_t v = probs.size(-1);
  auto rank = torch::arange(v, torch::TensorOptions().dtype(torch::kInt64).device(probs.device()))
                  .unsqueeze(0);
  auto keep = rank < rows.top_k;
  p = p * keep;
  // top-p after top-k, on the renormalised top-k mass: keep token i while the mass before it is
  // below top_p (so the first token is always kept).
  auto mass = p.sum(-1, true);
  auto before = (p.cumsum(-1) - p) / mass;
  keep = keep & (before < rows.top_p);
  p = p * keep;
  return {p / p.sum(-1, true), idx};
}

}  // namespace

double SampleUniform(uint64_t seed, int64_t counter) {
  uint64_t h = Mix(Mix(seed) ^ Mix(static_cast<uint64_t>(counter) + 0x632BE59BD9B4E019ull));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

torch::Tensor SamplingDistribution(const torch::Tensor& logits,
                                   const std::vector<SamplingParams>& params) {
  CHAINRL_CHECK(logits.dim() == 2 && logits.size(0) == static_cast<int64_t>(params.size()),
                "logits " << logits.sizes() << " vs " << params.size() << " params");
  auto x = logits.to(torch::kFloat32);
  RowTensors rows = MakeRows(params, x.size(1), x.device());
  auto probs = torch::softmax(x * rows.inv_temp, -1);
  auto [p, idx] = FilteredSorted(probs, rows);
  auto out = torch::zeros_like(probs).scatter(-1, idx, p);
  for (size_t b = 0; b < params.size(); ++b) {
    if (!rows.greedy[b]) continue;
    auto row = out[static_cast<int64_t>(b)];
    row.zero_();
    row[x[static_cast<int64_t>(b)].argmax().item<int64_t>()] = 1.f;
  }
  return out;
}

SampledTokens SampleTokens(const torch::Tensor& logits, const std::vector<SamplingParams>& params,
                           const std::vector<int64_t>& counters, bool want_entropy) {
  const int64_t b = logits.size(0);
  CHAINRL_CHECK(logits.dim() == 2 && static_cast<int64_t>(params.size()) == b &&
                    static_cast<int64_t>(counters.size()) == b,
                "logits " << logits.sizes() << ", " << params.size() << " params, "
                          << counters.size() << " counters");
  torch::NoGradGuard no_grad;
  if (kernels::CudaKernelsServe(logits) && !want_entropy) {
    // On a GPU: the fused sampling kernel, the same definition at the same uniforms.
    std::vector<float> temperature(b), top_p(b), uniform(b);
    std::vector<int64_t> top_k(b);
    for (int64_t i = 0; i < b; ++i) {
      temperature[i] = static_cast<float>(params[i].temperature);
      top_k[i] = params[i].top_k;
      top_p[i] = static_cast<float>(params[i].top_p);
      uniform[i] = static_cast<float>(SampleUniform(params[i].seed, counters[i]));
    }
    auto [tokens, logprobs] = kernels::CudaSample(logits, temperature, top_k, top_p, uniform);
    SampledTokens out;
    out.tokens = tokens;
    out.logprobs = logprobs;
    return out;
  }
  auto x = logits.to(torch::kFloat32);
  RowTensors rows = MakeRows(params, x.size(1), x.device());
  auto scaled = x * rows.inv_temp;
  auto logp = torch::log_softmax(scaled, -1);
  auto probs = logp.exp();
  std::vector<float> u(b);
  for (int64_t i = 0; i < b; ++i)
    u[i] = static_cast<float>(SampleUniform(params[i].seed, counters[i]));
  auto ut = torch::from_blob(u.data(), {b, 1}, torch::kFloat32).clone().to(x.device());
  // A row without top-k/top-p inverts its CDF in vocabulary order (no sort); a filtered row
  // inverts the CDF of its sorted, truncated distribution. Which one a row uses depends only on
  // its own parameters, so its draw does not depend on the batch.
  auto invert = [&](const torch::Tensor& p) {
    // The first position whose cumulative mass exceeds u * total: scaling by the row's own total
    // (not 1) means rounding can never push the draw past the last token with positive mass.
    auto cdf = p.cumsum(-1);
    return (cdf <= ut * cdf.narrow(-1, x.size(1) - 1, 1)).sum(-1, true).clamp_max(x.size(1) - 1);
  };
  auto tokens = invert(probs).squeeze(-1);
  if (rows.any_filter) {
    auto [p, idx] = FilteredSorted(probs, rows);
    auto sorted_tokens = idx.gather(-1, invert(p)).squeeze(-1);
    std::vector<uint8_t> f(b);
    for (int64_t i = 0; i < b; ++i) f[i] = rows.filtered[i];
    auto ft =
        torch::from_blob(f.data(), {b}, torch::kUInt8).clone().to(torch::kBool).to(x.device());
    tokens = torch::where(ft, sorted_tokens, tokens);
  }
  bool any_greedy = false;
  for (bool g : rows.greedy) any_greedy = any_greedy || g;
  if (any_greedy) {
    std::vector<uint8_t> g(b);
    for (int64_t i = 0; i < b; ++i) g[i] = rows.greedy[i];
    auto gt =
        torch::from_blob(g.data(), {b}, torch::kUInt8).clone().to(torch::kBool).to(x.device());
    tokens = torch::where(gt, x.argmax(-1), tokens);
  }
  SampledTokens out;
  out.tokens = tokens;
  out.logprobs = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1);
  if (want_entropy) out.entropy = -(probs * logp).nan_to_num(0.0).sum(-1);
  return out;
}

}  // namespace chainrl::rollout
