#!/usr/bin/env bash
# Builds chainrl on a machine without internet access, such as a GPU node whose only LibTorch is
# the one inside Python's `torch` wheel (CUDA, 2.x):
#
#   scripts/offline_prefix.sh fetch DIR
#       On a Debian 12 machine that reaches Debian's archive: downloads chainrl's library packages
#       and their dependencies (not the base system, the compiler or LibTorch), unpacks them into
#       DIR/root and writes DIR/env.sh. Copy DIR to the target machine.
#   scripts/offline_prefix.sh unpack DIR
#       On the target, when only DIR/debs was copied (about 45 MB, against about 175 MB unpacked):
#       unpacks it into DIR/root and writes DIR/env.sh (needs dpkg-deb, which Debian and Ubuntu
#       have).
#   scripts/offline_prefix.sh build DIR [--torch CMAKE_PREFIX] [--build-dir BUILD] [TARGET...]
#       On the target: configures chainrl in BUILD (default build-offline) with the libraries in
#       DIR and the LibTorch at CMAKE_PREFIX (default: the `torch` wheel's,
#       python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'), nvcc from the CUDA
#       toolkit when present, and builds TARGETs (default: everything). Nothing is downloaded.
#
# Run the programs with DIR/env.sh sourced: it puts DIR's libraries on LD_LIBRARY_PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# What the build and the programs need besides LibTorch (see scripts/setup.sh).
PACKAGES=(libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler libtomlplusplus-dev
          nlohmann-json3-dev libpcre2-dev libsentencepiece-dev prometheus-cpp-dev libgloo-dev
          libgtest-dev libgmock-dev libbenchmark-dev)
# Left to the target machine: the C library and compiler runtime, and the packaging, login and
# terminal machinery that the closure drags in. Loading Debian's copies of these over another
# distribution's would break it.
BASE='^(adduser|cdebconf|debconf|dpkg|tar|passwd|install-info|readline-common|gcc-[0-9]+-base|libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt1|libcrypt-dev|libgcc-s1|libstdc\+\+6|libpam.*|libselinux1|libsemanage.*|libsepol2|libaudit.*|libacl1|libcap-ng0|libdebian-installer4|libnewt.*|libslang2|libtextwrap1|libtinfo6|libreadline8|libdb5\.3)$'

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

fetch() {
  local dir="$1"
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    { echo "offline_prefix: fetch needs apt-get and dpkg-deb (a Debian 12 machine)" >&2; exit 1; }
  mkdir -p "$dir/debs" "$dir/root"
  dir="$(cd "$dir" && pwd)"
  local closure
  closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
              --no-replaces --no-enhances "${PACKAGES[@]}" | grep '^[a-z0-9]' | sort -u |
            grep -Ev "$BASE")
  echo "offline_prefix: $(echo "$closure" | wc -l) packages"
  (cd "$dir/debs" && apt-get download $closure >/dev/null)
  unpack "$dir"
  echo "offline_prefix: copy $dir (or only $dir/debs, then run unpack there) to the target, then:"
  echo "offline_prefix:   scripts/offline_prefix.sh build $dir"
}

unpack() {
  local dir="$1"
  command -v dpkg-deb >/dev/null || { echo "offline_prefix: unpack needs dpkg-deb" >&2; exit 1; }
  ls "$dir"/debs/*.deb >/dev/null 2>&1 ||
    { echo "offline_prefix: no packages in $dir/debs: run fetch first" >&2; exit 1; }
  dir="$(cd "$dir" && pwd)"
  mkdir -p "$dir/root"
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  local lib="$dir/root/usr/lib/x86_64-linux-gnu"
  cat > "$dir/env.sh" <<ENV
# chainrl's libraries unpacked by scripts/offline_prefix.sh: source this before building or
# running chainrl on this machine.
_p="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)/root"
export CHAINRL_OFFLINE_ROOT="\$_p"
export PATH="\$_p/usr/bin:\$PATH"
export LD_LIBRARY_PATH="\$_p/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CMAKE_PREFIX_PATH="\$_p/usr\${CMAKE_PREFIX_PATH:+;\$CMAKE_PREFIX_PATH}"
# pkg-config reads only these .pc files, their /usr paths moved under the root.
export PKG_CONFIG_LIBDIR="\$_p/usr/lib/x86_64-linux-gnu/pkgconfig:\$_p/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="\$_p"
unset _p
ENV
  # Absolute symlinks in the packages (libfoo.so -> /lib/...) must point inside the root; relative
  # ones keep DIR movable.
  find "$dir/root" -type l | while read -r l; do
    t=$(readlink "$l")
    case "$t" in
      /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$dir/root$t")" "$l" ;;
    esac
  done
  echo "offline_prefix: unpacked into $dir/root ($(du -sh "$dir/root" | cut -f1)); libraries in $lib"
}

build() {
  local dir="$1"
  shift
  local torch="" build="$ROOT/build-offline" targets=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --torch) torch="$2"; shift 2 ;;
      --build-dir) build="$2"; shift 2 ;;
      -*) usage ;;
      *) targets+=("$1"); shift ;;
    esac
  done
  [ -f "$dir/env.sh" ] || { echo "offline_prefix: $dir/env.sh is missing: run fetch first" >&2; exit 1; }
  # shellcheck disable=SC1091
  source "$dir/env.sh"
  if [ -z "$torch" ]; then
    torch=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null) ||
      { echo "offline_prefix: no --torch given and python3 has no torch module" >&2; exit 1; }
  fi
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  local cuda=()
  [ -x /usr/local/cuda/bin/nvcc ] && cuda=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  cmake -S "$ROOT" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_PREFIX_PATH=$CHAINRL_OFFLINE_ROOT/usr;$torch" "${cuda[@]}"
  local jobs
  jobs=$(nproc 2>/dev/null || echo 4)
  if [ ${#targets[@]} -gt 0 ]; then
    cmake --build "$build" -j "$jobs" --target "${targets[@]}"
  else
    cmake --build "$build" -j "$jobs"
  fi
  echo "offline_prefix: built in $build (run with $dir/env.sh sourced)"
}

[ $# -ge 2 ] || usage
case "$1" in
  fetch) fetch "$2" ;;
  unpack) unpack "$2" ;;
  build) shift; build "$@" ;;
  *) usage ;;
esac
