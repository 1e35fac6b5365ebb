#!/usr/bin/env bash
# README's first command: installs the Debian packages, builds chainrl and runs the quickstart:
# `chainrl train configs/quickstart.toml`, a tiny Qwen2-architecture policy trained by SFT then
# GRPO with a "train long, think short" token budget, learner and 2 actors as separate processes,
# on CPU in a few minutes. Outputs: runs/quickstart/ (summary.json, logs/, checkpoints/, export/).
# Extra arguments go to `chainrl train` (e.g. --set run.seed=2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bash "$CHAINRL_ROOT/scripts/setup.sh"
cd "$CHAINRL_ROOT"
CHAINRL="$CHAINRL_BUILD_DIR/bin/chainrl"
RUN="${CHAINRL_QUICKSTART_DIR:-runs/quickstart}"
# The quickstart's own outputs from an earlier run (model.path is runs/quickstart-model).
rm -rf "$RUN" runs/quickstart-model

"$CHAINRL" train configs/quickstart.toml --run-dir "$RUN" "$@"

echo
# Held-out problems as the learner's last evaluation answered them (greedy), each with its
# reference answer and verdict, beside the held-out accuracy over all of them.
python3 - "$RUN" <<'PY'
import json, re, sys
run = sys.argv[1]
last = None
with open(f"{run}/events.jsonl", encoding="utf-8", errors="replace") as f:
    for line in f:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "eval_samples":
            last = e
summary = json.load(open(f"{run}/summary.json"))
acc_sft, acc_rl = summary.get("accuracy_after_sft"), summary.get("accuracy_after_rl")
if last is None:
    print("(no held-out samples recorded)")
    sys.exit(0)
right = sum(1 for s in last["samples"] if s.get("correct"))
print(f"== held-out problems at the last evaluation ({last['label']}, step {last['step']}): "
      f"{right} of {len(last['samples'])} right here")
for s in last["samples"]:
    m = re.search(r"<answer>(.*?)</answer>", s.get("response", ""), re.S)
    said = m.group(1).strip() if m else s.get("response", "").strip().splitlines()[-1:] or [""]
    said = said if isinstance(said, str) else said[0]
    mark = "right" if s.get("correct") else "wrong"
    print(f"  {s['prompt']:<22} answered {said!s:<8} reference {s['reference']:<6} {mark} "
          f"({s.get('tokens')} tokens)")
if acc_sft is not None and acc_rl is not None:
    examples = (summary.get("evals") or [{}])[-1].get("examples", "the")
    print(f"held-out accuracy over all {examples} held-out problems: "
          f"{100 * acc_sft:.1f}% after SFT -> {100 * acc_rl:.1f}% after RL; a few problems above "
          "can go either way at that accuracy")
PY
echo
echo "== one more problem, asked of the exported policy (Hugging Face layout), not checked:"
"$CHAINRL" generate --model "$RUN/export" --chat --prompt "What is 47 + 38?" \
  --max-new-tokens 160 --temperature 0
echo
echo "quickstart done: $RUN/summary.json"
echo "the run's report (curves, summary, sample generations; open it in a browser): $RUN/report.html"
