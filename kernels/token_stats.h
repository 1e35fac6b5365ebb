// Per-token statistics of a chunk of logits: log-sum-exp, logprob of the target token and entropy
// of the temperature-scaled distribution, without materialising log_softmax. CPU reference here;
// the CUDA kernel is in token_stats_cuda.h. Torch-free: raw pointers, row-major.
#pragma once

#include <cstdint>

namespace chainrl::kernels {

// For each row r of `logits` [rows, vocab] (float32, row stride `vocab`), with z = logits[r] / T:
//   lse[r]     = log sum_j exp(z_j)
//   logprob[r] = z[targets[r]] - lse[r]          (NaN when targets[r] is outside [0, vocab))
//   entropy[r] = lse[r] - sum_j softmax(z)_j z_j
// REQUIRES: temperature > 0; output pointers may be null to skip that output. Single-threaded,
// accumulates in double: the slow, obviously-correct reference the kernels are tested against.
void TokenStatsReference(const float* logits, int64_t rows, int64_t vocab, const int64_t* targets,
                         float temperature, float* logprob, float* entropy, float* lse);

}  // namespace chainrl::kernels
