#!/usr/bin/env bash
# The GPU machine's check, in one go: build chainrl against the LibTorch of Python's `torch` wheel
# (CUDA) with every core, run the CUDA tests, try the GPU quickstart, and take the anchors the GPU
# figures are compared with (HBM bandwidth, `transformers` decode). Every figure is one JSON line
# in OUTDIR/figures.jsonl, each step's output in OUTDIR/STEP.log.
#
#   scripts/gpu_check.sh OUTDIR [--cpu] [--only STEP[,STEP...]] [--budget SECONDS]
#
#   --cpu      the rehearsal: Debian's LibTorch (CPU) and the CPU device, every step the same.
#   --only     run only these steps (machine, prefix, build, cuda_tests, quickstart, bandwidth,
#              decode_transformers, peft_adapter), in that order.
#   --budget   seconds for the whole check (default 540); a step that would start with less than
#              its own limit left is skipped and says so.
#
# Needs the Debian library packages in $GPU_CHECK_PREFIX/debs (default .offline/debs; made on a
# Debian 12 machine by `scripts/offline_prefix.sh fetch .offline`, about 45 MB).
#
# GPU_CHECK_BUILD names another build directory (a rehearsal of the later steps on a tree built
# already). A second run on the same machine skips what a first one finished: each finished step leaves its
# figures in $BUILD/.gpu_check/STEP.json (BUILD: build-gpu, or build-gpucheck-cpu with --cpu), and
# they are written to OUTDIR again.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
OUT="$1"
shift
CPU=0
ONLY=""
BUDGET=540
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    *) usage ;;
  esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PREFIX="${GPU_CHECK_PREFIX:-$ROOT/.offline}"
if [ $CPU = 1 ]; then
  BUILD="${GPU_CHECK_BUILD:-$ROOT/build-gpucheck-cpu}"
  DEVICE=cpu
else
  BUILD="${GPU_CHECK_BUILD:-$ROOT/build-gpu}"
  DEVICE=cuda
fi
STATE="$BUILD/.gpu_check"
mkdir -p "$STATE"
FIGURES="$OUT/figures.jsonl"
: >"$FIGURES"
START=$(date +%s)

# One JSON line from key=value pairs (values that parse as numbers, true/false or null stay bare).
json_line() {
  python3 - "$@" <<'EOF'
import json, sys
out = {}
for kv in sys.argv[1:]:
    k, _, v = kv.partition("=")
    try:
        out[k] = json.loads(v)
    except ValueError:
        out[k] = v
print(json.dumps(out))
EOF
}

# run_step NAME LIMIT_SECONDS: skips a finished step (its saved figures are written again) or one
# the budget cannot hold; otherwise runs step_NAME with a deadline. The step prints JSON lines on
# fd 3; they go to the figures and, when the step succeeds, to its saved state.
run_step() {
  local name="$1" limit="$2"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then return 0; fi
  if [ -f "$STATE/$name.json" ]; then
    cat "$STATE/$name.json" >>"$FIGURES"
    json_line step="$name" status=reused >>"$FIGURES"
    echo "gpu_check: $name: done by an earlier run (figures reused)"
    return 0
  fi
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt "$limit" ]; then
    json_line step="$name" status=skipped reason="budget: ${left}s left, the step needs up to ${limit}s" >>"$FIGURES"
    echo "gpu_check: $name: skipped (${left}s left of the budget, the step needs up to ${limit}s)"
    return 0
  fi
  echo "gpu_check: $name (up to ${limit}s)..."
  local t0 rc
  t0=$(date +%s.%N)
  "step_$name" "$limit" 3>"$STATE/$name.partial" >"$OUT/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
  cat "$STATE/$name.partial" >>"$FIGURES"
  if [ $rc = 0 ]; then
    json_line step="$name" status=ok seconds="$secs" >>"$STATE/$name.partial"
    mv "$STATE/$name.partial" "$STATE/$name.json"
    json_line step="$name" status=ok seconds="$secs" >>"$FIGURES"
    echo "gpu_check: $name: ok (${secs}s)"
  else
    rm -f "$STATE/$name.partial"
    json_line step="$name" status=failed exit_code="$rc" seconds="$secs" log="$name.log" >>"$FIGURES"
    echo "gpu_check: $name: FAILED (exit $rc, ${secs}s); last lines of $OUT/$name.log:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/  /'
  fi
}

torch_prefix() {
  if [ $CPU = 1 ]; then
    # Debian's LibTorch: its CMake package lives under /usr.
    echo /usr
  else
    python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'
  fi
}

step_machine() {
  json_line what=machine device="$DEVICE" cores="$(nproc)" \
    cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    memory_gib="$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)" >&3
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader |
      while IFS=, read -r gpu mem driver; do
        json_line what=gpu name="$(echo $gpu)" memory="$(echo $mem)" driver="$(echo $driver)" >&3
      done
  fi
  python3 - >&3 <<'EOF' || true
import json
try:
    import torch
    print(json.dumps({"what": "python_torch", "version": torch.__version__,
                      "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}))
except ImportError:
    print(json.dumps({"what": "python_torch", "version": None}))
EOF
}

step_prefix() {
  if [ -f "$PREFIX/env.sh" ]; then
    json_line what=prefix dir="$PREFIX" state=present >&3
    return 0
  fi
  scripts/offline_prefix.sh unpack "$PREFIX" || return 1
  json_line what=prefix dir="$PREFIX" packages="$(ls "$PREFIX"/debs/*.deb | wc -l)" \
    megabytes="$(du -sm "$PREFIX/debs" | cut -f1)" >&3
}

# The binary, the kernels' tests (CUDA against the CPU references) and the model I/O tests.
BUILD_TARGETS=(chainrl fused_kernels_test token_stats_test model_io_test)

step_build() {
  local torch
  torch=$(torch_prefix) || return 1
  timeout "$1" scripts/offline_prefix.sh build "$PREFIX" --torch "$torch" --build-dir "$BUILD" \
    "${BUILD_TARGETS[@]}" || return 1
  json_line what=build torch="$torch" targets="${BUILD_TARGETS[*]}" \
    nvcc="$(grep -c 'CMAKE_CUDA_COMPILER:' "$BUILD/CMakeCache.txt")" >&3
}

use_prefix() {
  # shellcheck disable=SC1091
  if [ -f "$PREFIX/env.sh" ]; then source "$PREFIX/env.sh"; fi
}

step_cuda_tests() {
  use_prefix
  local log="$OUT/cuda_tests.ctest"
  (cd "$BUILD" && timeout "$1" ctest -j "$(nproc)" --timeout 300 -R 'Cuda|Kernel|TokenStats|ModelIo' \
     --output-on-failure) >"$log" 2>&1
  local rc=$?
  local total failed skipped
  total=$(grep -Eo 'tests failed out of [0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  failed=$(grep -Eo '[0-9]+ tests failed' "$log" | grep -Eo '^[0-9]+' || echo 0)
  skipped=$(grep -c '(Skipped)$' "$log" || true)
  json_line what=cuda_tests total="${total:-0}" failed="${failed:-0}" skipped="${skipped:-0}" \
    cuda_skipped="$(grep -E 'Cuda.*\(Skipped\)$' "$log" | wc -l)" >&3
  cat "$log"
  return $rc
}

step_quickstart() {
  use_prefix
  local run="$BUILD/gpu-quickstart"
  rm -rf "$run" "$BUILD/gpu-quickstart-model"
  # Shortened: 50 SFT steps and 10 RL steps on the device, learner and 2 actors sharing it,
  # 200 held-out problems.
  timeout "$1" "$BUILD/bin/chainrl" train configs/quickstart.toml --run-dir "$run" \
    --set "run.device=\"$DEVICE\"" --set run.total_steps=10 --set sft.steps=50 \
    --set run.eval_every=0 --set data.num_eval_examples=200 \
    --set "model.path=\"$BUILD/gpu-quickstart-model\"" >"$OUT/quickstart.out" 2>&1
  local rc=$?
  cat "$OUT/quickstart.out"
  if [ $rc = 124 ]; then return 1; fi  # out of time: not done, a second run tries again
  if [ $rc != 0 ]; then
    # What stopped it (today: run.device = "cuda" is refused) is itself the figure.
    json_line what=quickstart device="$DEVICE" state=failed exit_code=$rc \
      message="$(grep -E 'error|refused|chainrl:' "$OUT/quickstart.out" | tail -n 1)" >&3
    return 0
  fi
  python3 - "$run/summary.json" "$DEVICE" >&3 <<'EOF2'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"what": "quickstart", "device": sys.argv[2], "steps": s.get("steps"),
                  "wall_seconds": s.get("wall_seconds"),
                  "accuracy_after_sft": s.get("accuracy_after_sft"),
                  "accuracy_after_rl": s.get("accuracy_after_rl")}))
EOF2
}

# Runs the Python on stdin with the wheel's torch (and `modules`) imported, `dev` set to the device
# and json, sys, time at hand; without them, one "unavailable" figure named `what`.
#   torch_figure WHAT "torch, transformers" <<'EOF' ... EOF
torch_figure() {
  local what=$1 modules=$2
  python3 -c "
import json, sys, time
dev = sys.argv[1]
try:
    import $modules
except ImportError as e:
    print(json.dumps({'what': '$what', 'state': 'unavailable', 'why': str(e)}))
    sys.exit(0)
exec(sys.stdin.read())
" "$DEVICE" >&3
}

step_bandwidth() {
  torch_figure memory_bandwidth torch <<'EOF'
n = (2 << 30) // 4 if dev == "cuda" else (256 << 20) // 4
a = torch.empty(n, dtype=torch.float32, device=dev)
b = torch.empty_like(a)
def sync():
    if dev == "cuda":
        torch.cuda.synchronize()
for _ in range(3):
    b.copy_(a)
sync()
best = float("inf")
for _ in range(10):
    t = time.perf_counter()
    b.copy_(a)
    sync()
    best = min(best, time.perf_counter() - t)
# A copy reads and writes every byte.
print(json.dumps({"what": "memory_bandwidth", "device": dev, "bytes": 2 * 4 * n,
                  "gb_per_s": round(2 * 4 * n / best / 1e9, 1)}))
EOF
}

step_decode_transformers() {
  torch_figure decode_transformers "torch, transformers" <<'EOF'
# Qwen2.5-0.5B's shapes, random weights (nothing is downloaded); a small model on the CPU.
if dev == "cuda":
    shape = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, intermediate_size=4864, vocab_size=151936)
    dtype, batches, new = torch.bfloat16, (1, 64), 128
else:
    shape = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=256, vocab_size=1024)
    dtype, batches, new = torch.float32, (1, 8), 16
cfg = transformers.Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=True)
torch.manual_seed(0)
model = transformers.Qwen2ForCausalLM(cfg).to(device=dev, dtype=dtype).eval()
params = sum(p.numel() for p in model.parameters())
for b in batches:
    ids = torch.randint(0, shape["vocab_size"], (b, 32), device=dev)
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    model.generate(ids, **kw)  # warm-up
    if dev == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    model.generate(ids, **kw)
    if dev == "cuda":
        torch.cuda.synchronize()
    s = time.perf_counter() - t
    print(json.dumps({"what": "decode_transformers", "device": dev, "parameters": params,
                      "dtype": str(dtype), "batch": b, "new_tokens": new,
                      "tokens_per_s": round(b * new / s, 1),
                      "transformers": transformers.__version__}))
EOF
}

# LoRA's PEFT export read by `peft` itself: a short SFT-only run makes a base, a 3-step LoRA run on
# it (on the CPU: this step is about the files) exports the merged model and export/adapter; peft
# loads base + adapter, and its logits are compared with the merged model's and the base's.
step_peft_adapter() {
  use_prefix
  local base="$BUILD/gpu-peft-sft" run="$BUILD/gpu-peft-lora"
  local small=(--set data.num_eval_examples=8 --set data.num_train_examples=500
    --set rollout.prompts_per_step=4 --set rollout.max_new_tokens=32
    --set curriculum.budget_start=32 --set curriculum.budget_end=16)
  rm -rf "$base" "$run" "$BUILD/gpu-peft-model"
  if ! timeout "$1" "$BUILD/bin/chainrl" train configs/quickstart.toml --run-dir "$base" \
    --set run.total_steps=0 --set sft.steps=20 --set "model.path=\"$BUILD/gpu-peft-model\"" \
    "${small[@]}" >"$OUT/peft_adapter.out" 2>&1 ||
    ! timeout "$1" "$BUILD/bin/chainrl" train configs/quickstart-lora.toml --run-dir "$run" \
      --set run.total_steps=3 --set "model.path=\"$base/export\"" "${small[@]}" \
      >>"$OUT/peft_adapter.out" 2>&1; then
    tail -n 20 "$OUT/peft_adapter.out"
    json_line what=peft_adapter state=failed \
      message="$(grep -E 'error|chainrl:' "$OUT/peft_adapter.out" | tail -n 1)" >&3
    return 0
  fi
  BASE="$base/export" MERGED="$run/export" ADAPTER="$run/export/adapter" \
    torch_figure peft_adapter "torch, transformers, peft" <<'EOF'
import os
torch.manual_seed(0)
base = transformers.AutoModelForCausalLM.from_pretrained(os.environ["BASE"], torch_dtype=torch.float32)
merged = transformers.AutoModelForCausalLM.from_pretrained(os.environ["MERGED"], torch_dtype=torch.float32).eval()
lora = peft.PeftModel.from_pretrained(base, os.environ["ADAPTER"]).eval()
ids = torch.randint(0, merged.config.vocab_size, (2, 24))
with torch.no_grad():
    with_adapter = lora(ids).logits
    with lora.disable_adapter():
        without = lora(ids).logits
    from_merged = merged(ids).logits
diff = (with_adapter - from_merged).abs().max().item()
moved = (with_adapter - without).abs().max().item()
print(json.dumps({"what": "peft_adapter", "peft": peft.__version__,
                  "max_logit_diff_peft_vs_merged_export": diff,
                  "max_logit_change_from_base": moved,
                  "agrees": diff <= 1e-4 * max(1.0, from_merged.abs().max().item()) and moved > 0}))
EOF
}

run_step machine 30
run_step prefix 60
run_step build 420
run_step cuda_tests 120
run_step quickstart 180
run_step bandwidth 30
run_step decode_transformers 90
run_step peft_adapter 120
json_line step=all seconds="$(($(date +%s) - START))" budget="$BUDGET" >>"$FIGURES"
echo "gpu_check: figures in $FIGURES"
