// Token sampling for rollout: temperature, top-k, top-p, greedy, with per-sample seeds that make a
// sample's tokens reproducible whatever its batch neighbours, and the behaviour logprob of every
// sampled token from exactly the distribution the learner recomputes.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace chainrl::rollout {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off; in (0, 1]
  uint64_t seed = 0;         // the sample's own random stream
};

struct SampledTokens {
  torch::Tensor tokens;    // [B] int64
  torch::Tensor logprobs;  // [B] float32: log softmax(logits / T)[token] (T = 1 when greedy)
  torch::Tensor entropy;   // [B] float32 entropy of softmax(logits / T); undefined unless asked
};

// The distribution a row is sampled from: softmax(logits / T), restricted to the top_k most likely
// tokens and then to the smallest prefix (by descending probability) whose mass reaches top_p,
// renormalised. Ties at the boundary are broken by token id (lower first). Greedy rows put all mass
// on argmax (lowest id among ties). [B, V] float32. The slow, obviously-correct reference that
// SampleTokens is tested against.
torch::Tensor SamplingDistribution(const torch::Tensor& logits,
                                   const std::vector<SamplingParams>& params);

// Samples one token per row of `logits` [B, V] (any float dtype). Row b draws its uniform variate
// from a counter-based hash of (params[b].seed, counters[b]) — usually the token's position in
// its sample — so the draw depends on nothing else in the batch, and inverts the CDF of
// SamplingDistribution's row. The logprob recorded is from the full temperature-scaled
// distribution (what the learner's importance ratios use), not the truncated one.
// REQUIRES params.size() == counters.size() == B.
SampledTokens SampleTokens(const torch::Tensor& logits, const std::vector<SamplingParams>& params,
                           const std::vector<int64_t>& counters, bool want_entropy = false);

// The uniform variate in [0, 1) SampleTokens uses for (seed, counter).
double SampleUniform(uint64_t seed, int64_t counter);

}  // namespace chainrl::rollout
