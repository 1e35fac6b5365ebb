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
echo "== the trained policy, exported in Hugging Face layout:"
"$CHAINRL" generate --model "$RUN/export" --chat --prompt "What is 47 + 38?" \
  --max-new-tokens 160 --temperature 0
echo
echo "quickstart done: $RUN/summary.json"
echo "the run's report (curves, summary, sample generations; open it in a browser): $RUN/report.html"
