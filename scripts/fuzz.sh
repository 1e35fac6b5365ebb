#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, a clang build with ASan and UBSan in build-fuzz/) and runs
# each for a bounded time, then prints per harness the executions, executions per second, the
# coverage libFuzzer reached (cov: edges, ft: features) and the crashes. Exits non-zero on any
# crash, leak, timeout or sanitizer report, naming the file that reproduces it
# (`build-fuzz/fuzz/NAME build-fuzz/fuzz-crashes/NAME-crash-...`).
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--build-only] [NAME ...]
#     --seconds N   fuzzing time per harness (default 15; the long run is --seconds 600)
#     --jobs J      harnesses run side by side (default 1)
#     --build-only  configure and build, run nothing
#     NAME ...      only these harnesses (default: every one, build-fuzz/fuzz/fuzzers.txt)
# The corpus each harness grows is kept in build-fuzz/fuzz-corpus/NAME between runs; the seeds are
# fuzz/corpus/NAME (committed), build-fuzz/fuzz-seeds/NAME (generated: wire frames, reward worker
# frames, rank messages, checkpoint files, SentencePiece models, tokenizers and chat templates cut
# from the test assets) and configs/ for run configs.
# Without clang or libFuzzer the script says so and exits 77 (ctest: skipped), or 1 under CI=true.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

seconds=15
jobs=1
build_only=0
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) only+=("$1"); shift ;;
  esac
done

FUZZ_BUILD_DIR="${CHAINRL_FUZZ_BUILD_DIR:-$CHAINRL_ROOT/build-fuzz}"
CLANGXX="${CHAINRL_FUZZ_CXX:-clang++}"
CLANG="${CHAINRL_FUZZ_CC:-clang}"

# Missing tools skip outside CI and fail in it: CI must not lose the fuzzing step silently.
missing_tool() {
  if [ "${CI:-}" = "true" ]; then
    echo "fuzz: FAILED: $1 (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
    exit 1
  fi
  echo "fuzz: SKIPPED: $1 (install clang and libclang-rt-14-dev, e.g. scripts/setup.sh --no-build)"
  exit 77
}
command -v "$CLANGXX" >/dev/null 2>&1 || missing_tool "$CLANGXX not found"
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  > "$probe_dir/probe.cc"
"$CLANGXX" -fsanitize=fuzzer "$probe_dir/probe.cc" -o "$probe_dir/probe" >/dev/null 2>&1 ||
  missing_tool "$CLANGXX cannot link -fsanitize=fuzzer (libFuzzer)"

# ---- build (incremental) -------------------------------------------------------------------------
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$FUZZ_BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S "$CHAINRL_ROOT" -B "$FUZZ_BUILD_DIR" "${generator[@]}" -DCHAINRL_FUZZ=ON \
    -DCMAKE_CXX_COMPILER="$CLANGXX" -DCMAKE_C_COMPILER="$CLANG" >/dev/null
fi
cmake --build "$FUZZ_BUILD_DIR" -j "$CHAINRL_JOBS"
[ "$build_only" = 1 ] && exit 0

# ---- seeds -------------------------------------------------------------------------------------
seeds="$FUZZ_BUILD_DIR/fuzz-seeds"
mkdir -p "$seeds/wire_fuzz" "$seeds/sentencepiece_fuzz" "$seeds/chat_template_fuzz" \
  "$seeds/reward_wire_fuzz" "$seeds/rank_messages_fuzz" "$seeds/checkpoint_fuzz"
"$FUZZ_BUILD_DIR/fuzz/fuzz_wire_seeds" "$seeds/wire_fuzz"
"$FUZZ_BUILD_DIR/fuzz/fuzz_reward_wire_seeds" "$seeds/reward_wire_fuzz"
"$FUZZ_BUILD_DIR/fuzz/fuzz_rank_messages_seeds" "$seeds/rank_messages_fuzz"
"$FUZZ_BUILD_DIR/fuzz/fuzz_checkpoint_seeds" "$seeds/checkpoint_fuzz"
if [ -x "$FUZZ_BUILD_DIR/fuzz/fuzz_sentencepiece_seed" ]; then
  [ -f "$seeds/sentencepiece_fuzz/llama2.model" ] ||
    "$FUZZ_BUILD_DIR/fuzz/fuzz_sentencepiece_seed" "$seeds/sentencepiece_fuzz" > /dev/null 2>&1 ||
    echo "fuzz: SentencePiece seed models could not be trained; sentencepiece_fuzz starts bare"
fi
python3 "$CHAINRL_ROOT/fuzz/make_seeds.py" "$seeds" "${CHAINRL_ASSETS_DIR:-$HOME/.cache/chainrl/assets}"
cp "$CHAINRL_ROOT/scripts/chat_template_qwen2_5.jinja" "$seeds/chat_template_fuzz/"

# ---- run -----------------------------------------------------------------------------------------
# Longest input per harness: room for the largest seed (cut-down tokenizers ~9 KB, the Qwen3 chat
# template ~4 KB, the shipped configs ~4 KB, SentencePiece models ~6 KB), small enough to stay fast.
max_len_of() {
  case "$1" in
    tokenizer_json_fuzz) echo 65536 ;;
    sentencepiece_fuzz) echo 32768 ;;
    run_config_fuzz|chat_template_fuzz|wire_fuzz|weights_chunks_fuzz|safetensors_header_fuzz)
      echo 16384 ;;
    reward_wire_fuzz|rank_messages_fuzz|checkpoint_fuzz) echo 16384 ;;
    endpoints_fuzz) echo 1024 ;;
    *) echo 8192 ;;
  esac
}
# Seed folders besides the committed and generated ones.
extra_seeds_of() {
  case "$1" in
    run_config_fuzz) echo "$CHAINRL_ROOT/configs" ;;
  esac
}

if [ ${#only[@]} -gt 0 ]; then
  names=("${only[@]}")
else
  mapfile -t names < <(grep -v '^$' "$FUZZ_BUILD_DIR/fuzz/fuzzers.txt")
fi
logs="$FUZZ_BUILD_DIR/fuzz-logs"
crashes="$FUZZ_BUILD_DIR/fuzz-crashes"
mkdir -p "$logs" "$crashes"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
  local name="$1" bin="$FUZZ_BUILD_DIR/fuzz/$1"
  local corpus="$FUZZ_BUILD_DIR/fuzz-corpus/$name"
  mkdir -p "$corpus"
  local dirs=("$corpus")
  for d in "$CHAINRL_ROOT/fuzz/corpus/$name" "$seeds/$name" $(extra_seeds_of "$name"); do
    [ -d "$d" ] && dirs+=("$d")
  done
  local rc=0
  "$bin" -max_total_time="$seconds" -max_len="$(max_len_of "$name")" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes/$name-" "${dirs[@]}" \
    > "$logs/$name.log" 2>&1 || rc=$?
  echo "$rc" > "$logs/$name.rc"
}

for name in "${names[@]}"; do
  [ -x "$FUZZ_BUILD_DIR/fuzz/$name" ] || { echo "fuzz: no harness $name" >&2; exit 2; }
  rm -f "$logs/$name.rc"
done
echo "fuzz: ${#names[@]} harnesses, $seconds s each, $jobs at a time (logs in $logs)"
t0=$(date +%s)
running=0
for name in "${names[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$name" &
  running=$((running + 1))
done
wait || true
t1=$(date +%s)

# ---- report --------------------------------------------------------------------------------------
status=0
printf '%-24s %12s %9s %7s %8s %7s  %s\n' harness executions exec/s cov ft corpus crashes
for name in "${names[@]}"; do
  log="$logs/$name.log"
  rc=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")
  found="0"
  if [ "$rc" != 0 ]; then
    status=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    kind=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer): [a-z-]+|runtime error: .*|fuzz check failed.*' "$log" | cut -c1-100 || true)
    found="1: ${kind:-exit $rc} -> ${artifact:-no artifact, see $log}"
  fi
  printf '%-24s %12s %9s %7s %8s %7s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$found"
done
echo "fuzz: $((t1 - t0)) s"
if [ "$status" != 0 ]; then
  echo "fuzz: FAILED: reproduce with build-fuzz/fuzz/NAME CRASH_FILE (logs in $logs)" >&2
fi
exit $status
