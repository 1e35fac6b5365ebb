// The header of a safetensors file (the Hugging Face weight format): an 8-byte little-endian
// length, then a JSON table of tensors (dtype, shape, byte offsets) and __metadata__. Parsed and
// validated here without LibTorch, so that the format's decoder is fuzzed on its own
// (fuzz/safetensors_header_fuzz.cc); model/safetensors.h maps and loads the tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace chainrl::model {

// One entry of a safetensors header. `begin`/`end` are byte offsets into the data section.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "BF16", ... as written in the file
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// A parsed, validated header: entries sorted by `begin`, plus the __metadata__ strings.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section (8 + header length)
};

// Largest header accepted (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u * 1000u * 1000u;

// Parses and validates the header of a safetensors image of `size` bytes at `data` (the whole
// file). Every malformation (truncation, header length past the end or over 100 MB, non-JSON,
// duplicate names, unknown dtype, negative/overflowing shape, byte count != numel * element size,
// offsets out of range or overlapping) is a kCorrupt error naming `file` and the tensor.
// Never reads outside [data, data + size). Thread-safe.
Result<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* data, size_t size,
                                                 const std::string& file);

// Bytes per element of a dtype the safetensors format defines ("F32" -> 4, "F8_E4M3" -> 1), or 0
// for a name it does not define.
uint64_t SafetensorsElementSize(const std::string& dtype);

}  // namespace chainrl::model
