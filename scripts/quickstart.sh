#!/usr/bin/env bash
# The README's first command: install packages, build, and generate text with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
model="${ELM_MODEL:-models/tiny-random-32k}"
prompt="${1:-Once upon a time there was}"
build/release/elm info --model "$model" | head -3
echo "--- elm generate --model $model --prompt \"$prompt\""
build/release/elm generate --model "$model" --prompt "$prompt" --max-new-tokens 48 --seed 1
