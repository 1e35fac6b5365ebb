#!/usr/bin/env bash
# The off-policy experiment of docs/OFFPOLICY.md: the quickstart's task and model, trained with
# stale segments (segment rollout of 16 tokens, 8 credits per actor, learner.max_off_policy_steps
# = 4), without a correction and with each rollout correction (docs/ALGORITHMS.md §2.4), over
# several seeds, from one SFT'd base model. Prints a table and writes every figure as JSON lines.
#
#   scripts/offpolicy_experiment.sh [OUT_DIR]       (default runs/offpolicy)
#   env: SEEDS="1 2 3"  RL_STEPS=60  VARIANTS="none tis icepop geometric"  CHAINRL=build/bin/chainrl
#
# A second run reuses the base model and every finished run (its summary.json) in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/offpolicy}
SEEDS=${SEEDS:-"1 2 3"}
RL_STEPS=${RL_STEPS:-60}
VARIANTS=${VARIANTS:-"none tis icepop geometric"}
CHAINRL=${CHAINRL:-build/bin/chainrl}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# 1. The base: the quickstart's SFT warm-up (and 3 RL steps), exported.
if [[ ! -f "$OUT/base/summary.json" ]]; then
  rm -rf "$OUT/base"
  "$CHAINRL" train configs/quickstart.toml --run-dir "$OUT/base" \
    --set run.name=\"offpolicy-base\" --set run.total_steps=3 --set run.eval_every=0 \
    --set model.path=\""$OUT/base-init"\" --set checkpoint.export_hf=true >"$OUT/base.out" 2>&1
fi
BASE="$OUT/base/export"

# 2. The runs. Every variant recomputes the learner's logprobs (the proximal policy) and trains
# the groups past the bound: "none" with no correction of the sampler-to-proximal gap (flag),
# the others with the correction (correct).
variant_sets() {
  case "$1" in
    none) echo "--set learner.stale_policy=\"flag\"" ;;
    tis) echo "--set learner.stale_policy=\"correct\" --set algorithm.rollout_is=\"token\"" \
              "--set algorithm.rollout_is_cap=2.0" ;;
    icepop) echo "--set learner.stale_policy=\"correct\" --set algorithm.rollout_is=\"token\"" \
                 "--set algorithm.rollout_mask=\"token\" --set algorithm.rollout_mask_low=0.5" \
                 "--set algorithm.rollout_mask_high=2.0" ;;
    geometric) echo "--set learner.stale_policy=\"correct\"" \
                    "--set algorithm.rollout_mask=\"geometric\" --set algorithm.rollout_mask_low=0.9" \
                    "--set algorithm.rollout_mask_high=1.1" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}
for v in $VARIANTS; do
  for s in $SEEDS; do
    run="$OUT/$v-seed$s"
    [[ -f "$run/summary.json" ]] && continue
    rm -rf "$run"
    # shellcheck disable=SC2046
    "$CHAINRL" train configs/quickstart.toml --run-dir "$run" \
      --set run.name=\"offpolicy-$v-$s\" --set run.seed="$s" --set run.total_steps="$RL_STEPS" \
      --set run.eval_every=20 --set model.path=\""$BASE"\" --set model.init.enabled=false \
      --set sft.steps=0 --set rollout.segment_tokens=16 --set actors.credits=8 \
      --set learner.max_off_policy_steps=4 --set learner.old_logprobs=\"recompute\" \
      --set checkpoint.every=0 $(variant_sets "$v") >"$run.out" 2>&1 ||
      { echo "run $v seed $s failed: see $run.out" >&2; exit 1; }
    echo "done: $v seed $s" >&2
  done
done

# 3. The figures.
python3 - "$OUT" "$RL_STEPS" $VARIANTS -- $SEEDS <<'EOF'
import json, sys, statistics as st
out, steps = sys.argv[1], int(sys.argv[2])
rest = sys.argv[3:]
variants, seeds = rest[:rest.index('--')], rest[rest.index('--') + 1:]
windows = [(a, min(a + 10, steps)) for a in range(0, steps, 10)]
lines = []
def mean(xs):
    xs = [x for x in xs if x is not None]
    return st.mean(xs) if xs else float('nan')
print(f"{'variant':10} {'seed':>4} " + " ".join(f"r{a+1}-{b:<3}" for a, b in windows) +
      "  acc@0  acc@end  lag-mean  stale-trained  k3-eq  masked")
for v in variants:
    for s in seeds:
        run = f"{out}/{v}-seed{s}"
        summary = json.load(open(f"{run}/summary.json"))
        steps_ev = []
        for line in open(f"{run}/events.jsonl"):
            e = json.loads(line)
            if e.get("event") == "step":
                steps_ev.append(e)
        rewards = [mean(h["reward"] for h in steps_ev[a:b]) for a, b in windows]
        evals = summary.get("evals", [])
        acc0 = evals[0]["accuracy"] if evals else float('nan')
        acc1 = evals[-1]["accuracy"] if evals else float('nan')
        lag = mean(h.get("token_staleness_mean") for h in steps_ev)
        k3 = mean(h.get("mismatch", {}).get("k3") for h in steps_ev if h.get("mismatch", {}).get("tokens", 0) > 0)
        masked = mean(h.get("rollout_masked_fraction") for h in steps_ev)
        rec = dict(variant=v, seed=int(s), reward_windows=rewards, accuracy_first_eval=acc0,
                   accuracy_final=acc1, evals=[{k: e[k] for k in ("label", "step", "accuracy")}
                                               for e in evals],
                   token_staleness_mean=lag, groups_stale_trained=summary.get("groups_stale_trained"),
                   mismatch_k3_equal_weights=k3, rollout_masked_fraction=masked,
                   wall_seconds=summary.get("wall_seconds"))
        lines.append(rec)
        print(f"{v:10} {s:>4} " + " ".join(f"{r:7.3f}" for r in rewards) +
              f"  {acc0:5.3f}  {acc1:7.3f}  {lag:8.2f}  {summary.get('groups_stale_trained', 0):13}"
              f"  {k3:.1e}  {masked if masked == masked else 0:.3f}")
print()
print(f"{'variant':10} mean over seeds: final reward window, final accuracy (min..max)")
for v in variants:
    rs = [r for r in lines if r["variant"] == v]
    fr = [r["reward_windows"][-1] for r in rs]
    fa = [r["accuracy_final"] for r in rs]
    print(f"{v:10} reward {mean(fr):.3f} ({min(fr):.3f}..{max(fr):.3f})  "
          f"accuracy {mean(fa):.3f} ({min(fa):.3f}..{max(fa):.3f})")
with open(f"{out}/results.jsonl", "w") as f:
    for r in lines:
        f.write(json.dumps(r) + "\n")
print(f"\nwritten: {out}/results.jsonl")
EOF
