#!/usr/bin/env bash
# The run's threading side by side: the same short run (the quickstart's config, learner + 2
# actors as separate processes) with the threads `chainrl train` now chooses (learner.threads =
# actors.threads = 0: a share of the physical cores each, OMP_WAIT_POLICY=PASSIVE) and with the
# threading chainrl used before (the learner on every core, actors on 1 thread, OpenMP threads
# spinning by default). Prints wall time, user and system CPU seconds, trained tokens/s and CPU
# seconds per trained token of each, and their ratios.
#   bench/threads_run.sh [CONFIG] [--set KEY=VALUE ...]   (default configs/quickstart.toml, shortened)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
CHAINRL="$CHAINRL_BUILD_DIR/bin/chainrl"
CONFIG=configs/quickstart.toml
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then CONFIG=$1; shift; fi
SHORT=(--set sft.steps=100 --set run.total_steps=12 --set run.eval_every=1000)
WORK=$(mktemp -d /tmp/chainrl_threads_bench.XXXXXX)
cores=$(nproc)

run() {  # NAME ENV... -- SETS...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  rm -rf "$WORK/$name"
  env "${envs[@]}" /usr/bin/time -f "%e %U %S" -o "$WORK/$name.time" "$CHAINRL" train "$CONFIG" \
    --run-dir "$WORK/$name/run" --set model.path="$WORK/$name/model" "${SHORT[@]}" "$@" \
    > "$WORK/$name.log" 2>&1 || { echo "$name: failed, see $WORK/$name.log"; exit 1; }
  read -r wall user sys < "$WORK/$name.time"
  tokens=$(python3 -c "import json;print(json.load(open('$WORK/$name/run/summary.json'))['tokens_trained'])")
  sft=$(grep -o "SFT warm-up done in [0-9.]*" "$WORK/$name/run/logs/learner.log" | awk '{print $5}')
  threads=$(grep -o "compute threads: [0-9]* ([^)]*)" "$WORK/$name/run/logs/learner.log" | head -1)
  echo "$name $wall $user $sys $tokens $sft"
  echo "  learner: ${threads:-compute threads not logged}" >&2
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $cores CPUs" >&2
today=$(run today OMP_WAIT_POLICY= -- --set learner.threads="$cores" --set actors.threads=1 "$@")
chosen=$(run chosen -- "$@")
python3 - "$today" "$chosen" <<'PY'
import sys
rows = [l.split() for l in sys.argv[1:]]
print(f"{'threading':10} {'wall s':>8} {'user s':>8} {'sys s':>7} {'sys/user':>8} {'SFT s':>7} "
      f"{'tokens/s':>9} {'CPU s/1k tok':>12}")
fig = {}
for name, wall, user, sys_, tokens, sft in rows:
    wall, user, sys_, tokens = float(wall), float(user), float(sys_), float(tokens)
    fig[name] = (wall, (user + sys_) / tokens * 1000, tokens / wall)
    print(f"{name:10} {wall:8.1f} {user:8.1f} {sys_:7.1f} {sys_ / user:8.3f} {float(sft or 0):7.1f} "
          f"{tokens / wall:9.1f} {(user + sys_) / tokens * 1000:12.3f}")
t, c = fig["today"], fig["chosen"]
print(f"chosen vs today: wall {c[0] / t[0]:.2f}x, trained tokens/s {c[2] / t[2]:.2f}x, "
      f"CPU seconds per trained token {c[1] / t[1]:.2f}x")
PY
