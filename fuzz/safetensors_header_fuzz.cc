// libFuzzer harness: a safetensors file's header (model/safetensors_header.h
// ParseSafetensorsHeader, as SafetensorsFile::Open reads a mapped file): the input is the whole
// file. What parses must describe tensors that lie inside the data section without overlapping,
// each with as many bytes as its shape and dtype need.
#include <algorithm>

#include "fuzz/fuzz_input.h"
#include "model/safetensors_header.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto header = model::ParseSafetensorsHeader(data, size, "fuzz/model.safetensors");
  if (!header.ok()) {
    CHAINRL_FUZZ_CHECK(header.status().message().rfind("fuzz/model.safetensors: ", 0) == 0,
                       header.status().message());
    return 0;
  }
  CHAINRL_FUZZ_CHECK(header->data_start >= 8 && header->data_start <= size, "data_start");
  const uint64_t data_bytes = size - header->data_start;
  uint64_t max_end = 0;
  for (const auto& e : header->entries) {
    CHAINRL_FUZZ_CHECK(e.begin <= e.end && e.end <= data_bytes, e.name);
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      CHAINRL_FUZZ_CHECK(d >= 0, e.name);
      numel *= static_cast<uint64_t>(d);
    }
    CHAINRL_FUZZ_CHECK(numel * model::SafetensorsElementSize(e.dtype) == e.end - e.begin, e.name);
    if (e.end > e.begin) {
      CHAINRL_FUZZ_CHECK(e.begin >= max_end, "overlapping tensors at " + e.name);
      max_end = e.end;
    }
  }
  return 0;
}
