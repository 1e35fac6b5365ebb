// CUDA batch sampling (contract as SampleReference in sampling.h). A first kernel turns each row
// into probabilities (one pass with an online softmax) and keeps its log-sum-exp; when a row uses
// top-k or top-p, CUB's segmented radix sort orders every row by descending probability (stable:
// ties keep the lower id first); a second kernel per row applies top-k/top-p with block-wide
// scans and inverts the CDF at the row's uniform. Greedy rows take the argmax.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace chainrl::kernels {

// Device bytes SampleCuda needs for a batch of this shape (0 when rows or vocab ≤ 0).
size_t SampleWorkspaceBytes(int64_t rows, int64_t vocab);

// Every array is on the device: logits [rows, vocab] float32; temperature, top_p, uniform [rows]
// float32; top_k [rows] int64; token [rows] int64; logprob [rows] float32 (may be null).
// `any_filtered` must be true when some row has top-k or top-p on (false skips the sort; such
// rows would then be sampled unfiltered). cudaErrorInvalidValue for bad sizes (rows · vocab must
// fit in int32) or a workspace smaller than SampleWorkspaceBytes. Enqueued on `stream`.
cudaError_t SampleCuda(const float* logits, int64_t rows, int64_t vocab, const float* temperature,
                       const int64_t* top_k, const float* top_p, const float* uniform,
                       bool any_filtered, int64_t* token, float* logprob, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream);

}  // namespace chainrl::kernels
