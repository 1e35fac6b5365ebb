// safetensors files (the Hugging Face weight format): validated header parsing, memory-mapped
// zero-copy loading, sharded directories (model.safetensors.index.json), and writing single files
// or shards exactly as HF lays them out (8-byte aligned header padded with spaces).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/status.h"
#include "model/safetensors_header.h"

namespace chainrl::model {

// Tensors by name. Ordered, so files written from it are deterministic.
using TensorMap = std::map<std::string, torch::Tensor>;

// The torch dtype for a safetensors dtype name; error for names LibTorch cannot hold here.
Result<torch::ScalarType> SafetensorsDtype(const std::string& name);
// The safetensors dtype name for a torch dtype; error for dtypes safetensors cannot store.
Result<std::string> SafetensorsDtypeName(torch::ScalarType type);

// A memory-mapped safetensors file (MAP_PRIVATE: tensors are writable copy-on-write views; writes
// never reach the file). Tensors returned by Get() keep the mapping alive on their own, so the
// file object may be dropped first. Thread-safe after Open().
class SafetensorsFile {
 public:
  static Result<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  bool Contains(const std::string& name) const;

  // The tensor `name` on the CPU. Zero-copy (a view of the mapping) when its bytes are aligned
  // for its dtype; otherwise a copy. Error naming the file if `name` is absent.
  Result<torch::Tensor> Get(const std::string& name) const;
  // Every tensor of the file.
  Result<TensorMap> GetAll() const;

 private:
  SafetensorsFile() = default;
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;  // name -> position in header_.entries
};

// Loads every tensor of one file (zero-copy where possible; see SafetensorsFile::Get).
Result<TensorMap> LoadSafetensors(const std::string& path);

// Loads a model directory's weights: `model.safetensors.index.json` with its shards if present,
// else `model.safetensors`. Errors name the file: missing shard, a tensor the index maps to a
// shard that lacks it, a tensor a shard has but the index does not list, names in two shards.
Result<TensorMap> LoadSafetensorsDir(const std::string& dir);

// Writes `tensors` as one safetensors file (atomically: a temporary file renamed into place).
// Data is laid out by descending element size then name, as HF does, so every tensor is aligned.
// `metadata` goes into __metadata__ (HF writes {"format": "pt"}). Non-contiguous or non-CPU tensors
// are copied first. Error for unsupported dtypes or I/O failures, naming the file.
Status SaveSafetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes `tensors` into `dir` as `model.safetensors` if they fit in `max_shard_bytes` (or it is
// <= 0), else as `model-0000K-of-0000N.safetensors` shards of at most `max_shard_bytes` each (a
// tensor larger than that gets a shard of its own) plus `model.safetensors.index.json` with
// {"metadata": {"total_size": bytes}, "weight_map": {name: shard}}. Removes stale weight files of
// the other layout from `dir`.
Status SaveSafetensorsDir(const std::string& dir, const TensorMap& tensors,
                          int64_t max_shard_bytes);

}  // namespace chainrl::model
