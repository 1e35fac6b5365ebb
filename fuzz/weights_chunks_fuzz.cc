// libFuzzer harness: the checksums of weight chunks (core/weights_transfer.h ChunkWeights and
// core/crc32c.h), which an actor uses to accept or refuse the bytes a learner sends. For any
// bytes and chunk size, each chunk's CRC32C and the whole snapshot's (combined from the chunks',
// as WeightsClient::Fetch does) must equal the bitwise reference.
#include "core/crc32c.h"
#include "core/weights_transfer.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return -1;
  const uint32_t chunk_bytes = 1 + (uint32_t{data[0]} | uint32_t{data[1]} << 8) % 4096;
  const std::span<const uint8_t> bytes(data + 2, size - 2);
  const auto chunked = transport::ChunkWeights(7, bytes, chunk_bytes, "fuzz");
  const uint32_t whole = crc32c::ExtendReference(0, bytes.data(), bytes.size());
  CHAINRL_FUZZ_CHECK(chunked.announce.crc32c() == whole, "whole-snapshot crc32c");
  CHAINRL_FUZZ_CHECK(chunked.announce.total_bytes() == bytes.size(), "total bytes");
  const size_t n = (bytes.size() + chunk_bytes - 1) / chunk_bytes;
  CHAINRL_FUZZ_CHECK(chunked.chunk_crcs.size() == n, "chunk count");
  uint32_t combined = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t off = i * chunk_bytes, len = std::min<size_t>(chunk_bytes, bytes.size() - off);
    const uint32_t crc = crc32c::ExtendReference(0, bytes.data() + off, len);
    CHAINRL_FUZZ_CHECK(chunked.chunk_crcs[i] == crc, "chunk " + std::to_string(i));
    CHAINRL_FUZZ_CHECK(crc32c::Value(bytes.data() + off, len) == crc, "chunk " + std::to_string(i));
    combined = i == 0 ? crc : crc32c::Combine(combined, crc, len);
  }
  CHAINRL_FUZZ_CHECK(combined == whole, "combined chunk crc32c");
  return 0;
}
