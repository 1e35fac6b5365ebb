# Sourced by chainrl's scripts: build directory, parallelism, and OpenBLAS kernel selection.
# OpenBLAS 0.3.21 misdetects some virtual CPUs as generic and falls back to SSE3 kernels (3-6x
# slower); pick the kernels from the CPU flags unless the user chose already.
CHAINRL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHAINRL_BUILD_DIR="${CHAINRL_BUILD_DIR:-$CHAINRL_ROOT/build}"
CHAINRL_JOBS="${CHAINRL_JOBS:-$(nproc)}"
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi
export CCACHE_BASEDIR="$CHAINRL_ROOT"
