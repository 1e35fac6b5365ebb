// Vectorizable per-token scans for wire validation; see wire_scan.h.
#include "core/wire_scan.h"

#include <cstring>

namespace chainrl::wire::internal {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CHAINRL_SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CHAINRL_SCAN_CLONES
#endif

CHAINRL_SCAN_CLONES uint32_t MaxOf(const uint32_t* p, size_t n) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) m = p[i] > m ? p[i] : m;
  return m;
}

// On IEEE-754 bits u: +0.0 is 0; negative finite values (and -0.0) are 0x80000000..0xFF7FFFFF;
// everything else (positive, +-inf, NaN) lies outside. Integer-only, so it vectorizes.
CHAINRL_SCAN_CLONES bool AllFiniteNonPositive(const float* p, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    bad |= static_cast<uint32_t>(u != 0) & static_cast<uint32_t>(u - 0x80000000u >= 0x7F800000u);
  }
  return bad == 0;
}

}  // namespace chainrl::wire::internal
