// CRC32C (Castagnoli), used to checksum weight chunks and whole weight snapshots.
// Hardware (SSE4.2) when the CPU has it, else a slicing-by-8 table; both match the bitwise
// reference.
#pragma once

#include <cstddef>
#include <cstdint>

namespace chainrl::crc32c {

// Extends `crc` (the value returned for the preceding bytes; 0 to start) over data[0, size).
// Thread-safe. Extend(Extend(0, a), b) == Value(a ++ b).
uint32_t Extend(uint32_t crc, const void* data, size_t size);
inline uint32_t Value(const void* data, size_t size) { return Extend(0, data, size); }

// The CRC of A ++ B from crc_a = Value(A), crc_b = Value(B) and |B|, in O(log |B|).
uint32_t Combine(uint32_t crc_a, uint32_t crc_b, uint64_t size_b);

// Bit-at-a-time reference, slow and obviously correct; for tests.
uint32_t ExtendReference(uint32_t crc, const void* data, size_t size);
// The portable table path regardless of the CPU; for tests and benchmarks.
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t size);
// Whether Extend uses the SSE4.2 instruction on this machine.
bool HardwareAccelerated();

}  // namespace chainrl::crc32c
