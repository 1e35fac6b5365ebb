#!/usr/bin/env bash
# Installs chainrl's Debian packages (only those missing; sudo only when not root) and builds
# chainrl in ./build. Idempotent: a second run only rebuilds what changed.
#   scripts/setup.sh            install + build everything
#   scripts/setup.sh --no-build install only
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp
  libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler
  libtomlplusplus-dev nlohmann-json3-dev libpcre2-dev libsentencepiece-dev
  prometheus-cpp-dev prometheus prometheus-pushgateway libgloo-dev python3
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev  # the libFuzzer harnesses (scripts/fuzz.sh)
  slurm-wlm munge  # tests/slurm: a real Slurm cluster runs scripts/slurm/chainrl.sbatch
  python3-yaml  # tests/deploy: the Kubernetes manifests checked offline
  chromium-headless-shell  # tests/apps/report_render_test.sh: the run report in a real browser
)
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "chainrl setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's LibTorch runs ~10x slower on the reference BLAS: make sure OpenBLAS (OpenMP) is the one.
if [ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]; then
  current=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
  case "$current" in
    *openblas*) ;;
    *) echo "chainrl setup: warning: libblas.so.3 is $current, not OpenBLAS; LibTorch will be slow" ;;
  esac
fi

[ "${1:-}" = "--no-build" ] && exit 0

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$CHAINRL_BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S "$CHAINRL_ROOT" -B "$CHAINRL_BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$CHAINRL_BUILD_DIR" -j "$CHAINRL_JOBS"
