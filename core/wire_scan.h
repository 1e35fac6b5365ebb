// The per-token scans behind wire validation, kept in their own translation unit so they can be
// compiled for vectorization (and AVX2 where the CPU has it) without affecting the rest.
#pragma once

#include <cstddef>
#include <cstdint>

namespace chainrl::wire::internal {

// The largest of p[0, n); 0 when n == 0.
uint32_t MaxOf(const uint32_t* p, size_t n);
// True iff every value of p[0, n) is finite and <= 0 (so -0.0 passes; NaN, +-inf, > 0 fail).
bool AllFiniteNonPositive(const float* p, size_t n);

}  // namespace chainrl::wire::internal
