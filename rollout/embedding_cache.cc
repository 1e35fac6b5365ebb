// The byte-bounded LRU of prompt embeddings (see embedding_cache.h).
#include "rollout/embedding_cache.h"

#include <condition_variable>
#include <filesystem>

#include "core/check.h"
#include "core/metrics.h"
#include "model/safetensors.h"

namespace chainrl::rollout {

namespace {

std::string Where(const EmbeddingRef& ref) {
  return "embeddings '" + ref.tensor + "' in " + ref.file;
}

std::string Shape(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// The checks every held tensor passes; returns an owned CPU copy in `dtype`.
Result<torch::Tensor> Validated(const EmbeddingRef& ref, const torch::Tensor& t,
                                int64_t hidden_size, torch::ScalarType dtype) {
  if (!t.defined()) return InvalidArgument(Where(ref) + ": no tensor");
  if (t.dim() != 2)
    return InvalidArgument(Where(ref) + ": rank " + std::to_string(t.dim()) + " (shape " +
                           Shape(t) + "), want [rows, " + std::to_string(hidden_size) + "]");
  if (t.size(0) < 1) return InvalidArgument(Where(ref) + ": no rows (shape " + Shape(t) + ")");
  if (!c10::isFloatingType(t.scalar_type()))
    return InvalidArgument(Where(ref) + ": dtype " + std::string(c10::toString(t.scalar_type())) +
                           " is not a floating type");
  if (t.size(1) != hidden_size)
    return InvalidArgument(Where(ref) + ": rows of width " + std::to_string(t.size(1)) +
                           " do not match the model's hidden size " + std::to_string(hidden_size));
  // A copy the cache owns (not a view of a file mapping or of the caller's storage), so that the
  // bytes it counts are the bytes it holds.
  return t.detach().to(torch::kCPU, dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

}  // namespace

Result<EmbeddingRef> ParseEmbeddingRef(std::string_view spec, const std::string& base_dir) {
  const std::string quoted = "embeddings reference '" + std::string(spec) + "'";
  const size_t hash = spec.rfind('#');
  if (hash == std::string_view::npos)
    return InvalidArgument(quoted + ": want 'file.safetensors#tensor_name' (no '#')");
  std::string file(spec.substr(0, hash)), tensor(spec.substr(hash + 1));
  if (file.empty()) return InvalidArgument(quoted + ": empty file path");
  if (tensor.empty()) return InvalidArgument(quoted + ": empty tensor name after '#'");
  std::filesystem::path p(file);
  if (p.is_relative() && !base_dir.empty()) p = std::filesystem::path(base_dir) / p;
  return EmbeddingRef{p.lexically_normal().string(), std::move(tensor)};
}

Result<torch::Tensor> LoadEmbeddings(const EmbeddingRef& ref, int64_t hidden_size,
                                     torch::ScalarType dtype) {
  std::error_code ec;
  if (!std::filesystem::exists(ref.file, ec))
    return NotFound(Where(ref) + ": no such file " + ref.file);
  auto file = model::SafetensorsFile::Open(ref.file);
  if (!file.ok()) return Status(file.status().code(), Where(ref) + ": " + file.status().message());
  if (!(*file)->Contains(ref.tensor))
    return NotFound(Where(ref) + ": the file has no tensor named '" + ref.tensor + "'");
  auto t = (*file)->Get(ref.tensor);
  if (!t.ok()) return Status(t.status().code(), Where(ref) + ": " + t.status().message());
  return Validated(ref, *t, hidden_size, dtype);
}

struct EmbeddingCache::Entry {
  torch::Tensor tensor;
  int64_t bytes = 0;
  std::list<EmbeddingRef>::iterator lru;
};

// A load in progress: later lookups of the same key wait for it.
struct EmbeddingCache::InFlight {
  bool done = false;
  Status status;
  torch::Tensor tensor;
  std::condition_variable cv;
};

EmbeddingCache::EmbeddingCache(EmbeddingCacheOptions options) : options_(std::move(options)) {
  CHAINRL_CHECK(options_.hidden_size > 0 && options_.max_bytes > 0,
                "embedding cache: hidden_size " << options_.hidden_size << " max_bytes "
                                                << options_.max_bytes);
  std::lock_guard<std::mutex> lock(mu_);
  ExportBytes();
}

EmbeddingCache::~EmbeddingCache() = default;

Result<torch::Tensor> EmbeddingCache::Get(const EmbeddingRef& ref) {
  return Lookup(ref, [&]() { return LoadEmbeddings(ref, options_.hidden_size, options_.dtype); });
}

Result<torch::Tensor> EmbeddingCache::GetOrCompute(const EmbeddingRef& key,
                                                   const ComputeFn& compute) {
  return Lookup(key, [&]() -> Result<torch::Tensor> {
    CHAINRL_ASSIGN_OR_RETURN(torch::Tensor t, compute());
    return Validated(key, t, options_.hidden_size, options_.dtype);
  });
}

Result<torch::Tensor> EmbeddingCache::Lookup(const EmbeddingRef& key, const ComputeFn& load) {
  std::unique_lock<std::mutex> lock(mu_);
  auto count = [&](bool hit) {
    ++(hit ? stats_.hits : stats_.misses);
    if (options_.metrics != nullptr)
      options_.metrics
          ->counter(hit ? metrics::CounterId::kCacheHits : metrics::CounterId::kCacheMisses,
                    {{"cache", options_.metrics_label}})
          .Increment();
  };
  if (auto it = entries_.find(key); it != entries_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second->lru);
    count(true);
    return it->second->tensor;
  }
  if (auto it = loading_.find(key); it != loading_.end()) {
    std::shared_ptr<InFlight> f = it->second;
    count(true);
    f->cv.wait(lock, [&] { return f->done; });
    if (!f->status.ok()) return f->status;
    return f->tensor;
  }
  count(false);
  auto flight = std::make_shared<InFlight>();
  loading_[key] = flight;
  lock.unlock();
  Result<torch::Tensor> loaded = load();
  if (loaded.ok()) {
    const int64_t bytes =
        static_cast<int64_t>(loaded->numel()) * static_cast<int64_t>(loaded->element_size());
    if (bytes > options_.max_bytes)
      loaded = InvalidArgument(Where(key) + ": " + std::to_string(bytes) + " bytes (shape " +
                               Shape(*loaded) + ") exceed the whole cache budget of " +
                               std::to_string(options_.max_bytes) + " bytes");
  }
  lock.lock();
  loading_.erase(key);
  flight->done = true;
  if (!loaded.ok()) {
    flight->status = loaded.status();
    flight->cv.notify_all();
    return loaded.status();
  }
  const int64_t bytes =
      static_cast<int64_t>(loaded->numel()) * static_cast<int64_t>(loaded->element_size());
  EvictUntilFits(bytes);
  auto entry = std::make_unique<Entry>();
  entry->tensor = *loaded;
  entry->bytes = bytes;
  lru_.push_front(key);
  entry->lru = lru_.begin();
  entries_[key] = std::move(entry);
  stats_.bytes += bytes;
  stats_.entries = static_cast<int64_t>(entries_.size());
  ExportBytes();
  flight->tensor = *loaded;
  flight->cv.notify_all();
  return loaded;
}

void EmbeddingCache::EvictUntilFits(int64_t incoming) {
  while (!lru_.empty() && stats_.bytes + incoming > options_.max_bytes) {
    auto it = entries_.find(lru_.back());
    CHAINRL_CHECK(it != entries_.end(), "LRU list and map disagree on " << lru_.back().ToString());
    stats_.bytes -= it->second->bytes;
    entries_.erase(it);
    lru_.pop_back();
    ++stats_.evictions;
  }
  stats_.entries = static_cast<int64_t>(entries_.size());
}

void EmbeddingCache::ExportBytes() {
  if (options_.metrics != nullptr)
    options_.metrics->gauge(metrics::GaugeId::kCacheBytes, {{"cache", options_.metrics_label}})
        .Set(static_cast<double>(stats_.bytes));
}

bool EmbeddingCache::Contains(const EmbeddingRef& ref) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.count(ref) > 0;
}

EmbeddingCacheStats EmbeddingCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void EmbeddingCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
  lru_.clear();
  stats_.bytes = 0;
  stats_.entries = 0;
  ExportBytes();
}

std::shared_ptr<EmbeddingCache> MakeEmbeddingCache(const Config& config, int64_t hidden_size,
                                                   metrics::MetricsRegistry* metrics) {
  EmbeddingCacheOptions o;
  o.set_max_bytes(config.GetInt("rollout.embedding_cache_bytes"))
      .set_hidden_size(hidden_size)
      .set_metrics(metrics);
  return std::make_shared<EmbeddingCache>(std::move(o));
}

}  // namespace chainrl::rollout
