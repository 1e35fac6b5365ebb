// The prompt-embedding cache: precomputed input embeddings of a prompt (an encoder's output, e.g.
// of a long video) referenced as `file.safetensors#tensor`, loaded once and held in a byte-bounded
// LRU so that the G samples of a group, later segments and the learner's prefill reuse them.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <torch/types.h>

#include "core/config.h"
#include "core/status.h"

namespace chainrl::metrics {
class MetricsRegistry;
}  // namespace chainrl::metrics

namespace chainrl::rollout {

// Which embeddings: a tensor in a safetensors file. `file` is the path as resolved by
// ParseEmbeddingRef (the cache keys on it verbatim, so one file named two ways is two entries).
struct EmbeddingRef {
  std::string file;
  std::string tensor;
  std::string ToString() const { return file + "#" + tensor; }
  bool operator==(const EmbeddingRef& o) const { return file == o.file && tensor == o.tensor; }
  bool operator<(const EmbeddingRef& o) const {
    return file != o.file ? file < o.file : tensor < o.tensor;
  }
};

// Parses "path/to/file.safetensors#tensor_name" (the last '#' separates the name, so paths may
// contain '#'). A relative path is resolved against `base_dir` (as given; "" = the working
// directory); the path is normalised lexically. InvalidArgument naming the spec for a missing '#',
// an empty path or an empty tensor name. Does not touch the file system.
Result<EmbeddingRef> ParseEmbeddingRef(std::string_view spec, const std::string& base_dir = "");

struct EmbeddingCacheOptions {
  int64_t max_bytes = int64_t{1} << 30;       // bound on the bytes of held tensors (> 0)
  int64_t hidden_size = 0;                    // REQUIRED > 0: the model's hidden size (row width)
  torch::ScalarType dtype = torch::kFloat32;  // tensors are held in this dtype (converted)
  // Optional export: chainrl_cache_hits_total / chainrl_cache_misses_total{cache=metrics_label}
  // and chainrl_cache_bytes{cache=metrics_label}. Not owned; must outlive the cache.
  metrics::MetricsRegistry* metrics = nullptr;
  std::string metrics_label = "prompt_embeddings";
  EmbeddingCacheOptions& set_max_bytes(int64_t v) {
    max_bytes = v;
    return *this;
  }
  EmbeddingCacheOptions& set_hidden_size(int64_t v) {
    hidden_size = v;
    return *this;
  }
  EmbeddingCacheOptions& set_dtype(torch::ScalarType v) {
    dtype = v;
    return *this;
  }
  EmbeddingCacheOptions& set_metrics(metrics::MetricsRegistry* v) {
    metrics = v;
    return *this;
  }
  EmbeddingCacheOptions& set_metrics_label(std::string v) {
    metrics_label = std::move(v);
    return *this;
  }
};

struct EmbeddingCacheStats {
  int64_t hits = 0;       // lookups served from the cache
  int64_t misses = 0;     // lookups that loaded or computed (successfully or not)
  int64_t evictions = 0;  // entries dropped to respect max_bytes
  int64_t bytes = 0;      // bytes of the tensors held now
  int64_t entries = 0;    // tensors held now
};

// Thread-safe. A tensor handed out stays valid after its entry is evicted (it is shared). Lookups
// of one key that race a load wait for that load instead of loading twice (they count as hits).
class EmbeddingCache {
 public:
  // REQUIRES options.hidden_size > 0 and options.max_bytes > 0 (checked).
  explicit EmbeddingCache(EmbeddingCacheOptions options);
  ~EmbeddingCache();
  EmbeddingCache(const EmbeddingCache&) = delete;
  EmbeddingCache& operator=(const EmbeddingCache&) = delete;

  // The tensor [n, hidden_size] (n >= 1, options.dtype, CPU, contiguous, not requiring grad) of
  // `ref`, loaded from its safetensors file on a miss and made most recently used. Errors, each
  // naming the file and tensor: the file cannot be opened or is malformed (IoError / Corrupt),
  // the tensor is absent (NotFound), not of rank 2 or has no rows, not a floating dtype, a row
  // width other than hidden_size (InvalidArgument), or larger than max_bytes on its own
  // (InvalidArgument). A failed load caches nothing.
  Result<torch::Tensor> Get(const EmbeddingRef& ref);

  // As Get, but a miss calls `compute` (an encoder) instead of reading the file; its result is
  // checked and held exactly like a loaded tensor.
  using ComputeFn = std::function<Result<torch::Tensor>()>;
  Result<torch::Tensor> GetOrCompute(const EmbeddingRef& key, const ComputeFn& compute);

  bool Contains(const EmbeddingRef& ref) const;
  EmbeddingCacheStats stats() const;
  const EmbeddingCacheOptions& options() const { return options_; }
  // Drops every entry (statistics other than bytes/entries are kept).
  void Clear();

 private:
  struct Entry;
  struct InFlight;
  Result<torch::Tensor> Lookup(const EmbeddingRef& key, const ComputeFn& compute);
  void EvictUntilFits(int64_t incoming);  // REQUIRES mu_ held
  void ExportBytes();                     // REQUIRES mu_ held

  EmbeddingCacheOptions options_;
  mutable std::mutex mu_;
  std::list<EmbeddingRef> lru_;  // most recently used first
  std::map<EmbeddingRef, std::unique_ptr<Entry>> entries_;
  std::map<EmbeddingRef, std::shared_ptr<InFlight>> loading_;
  EmbeddingCacheStats stats_;
};

// Loads `ref` from its file with the checks of EmbeddingCache::Get, without caching.
Result<torch::Tensor> LoadEmbeddings(const EmbeddingRef& ref, int64_t hidden_size,
                                     torch::ScalarType dtype = torch::kFloat32);

// A run's cache: rollout.embedding_cache_bytes, rows of `hidden_size`, metrics exported to
// `metrics` when given.
std::shared_ptr<EmbeddingCache> MakeEmbeddingCache(const Config& config, int64_t hidden_size,
                                                   metrics::MetricsRegistry* metrics = nullptr);

}  // namespace chainrl::rollout
