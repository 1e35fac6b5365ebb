// Token sampling over the vocabulary for a batch: temperature, top-k, top-p and greedy, by
// inverting the CDF at a caller-given uniform per row (so a row's draw depends on nothing else in
// the batch). The definition is rollout's SamplingDistribution/SampleTokens (rollout/sampling.h):
// an unfiltered row inverts its CDF in vocabulary order; a row with top-k or top-p inverts the CDF
// of its descending-sorted (ties: lower id first), truncated distribution. CPU reference here; the
// CUDA kernel is in sampling_cuda.h. Torch-free: raw pointers, row-major.
#pragma once

#include <cstdint>

namespace chainrl::kernels {

// Per row r of logits [rows, vocab] (float32): temperature[r] ≤ 0 is greedy (argmax, lowest id
// among ties); top_k[r] ≤ 0 or ≥ vocab is off; top_p[r] outside (0, 1) is off; uniform[r] in
// [0, 1). With p = softmax(logits / T) and (filtered rows) the sort described above, top-k keeps
// the first k, then top-p keeps position i while the top-k mass before it is below top_p times the
// top-k mass; the token is the first kept position whose cumulative mass exceeds uniform · (kept
// mass), else the last kept one. token[r] is its id; logprob[r] = log p[token] of the full
// temperature-scaled distribution (T = 1 when greedy). logprob may be null. Float64 throughout.
void SampleReference(const float* logits, int64_t rows, int64_t vocab, const float* temperature,
                     const int64_t* top_k, const float* top_p, const float* uniform, int64_t* token,
                     float* logprob);

}  // namespace chainrl::kernels
