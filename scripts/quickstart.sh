#!/usr/bin/env bash
# The README's first command: install packages, build, and generate text with the shipped model
# (models/openelm-shakespeare, trained by elm itself; see its README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
model="${ELM_MODEL:-models/openelm-shakespeare}"
prompt="${1:-ROMEO:}"
build/release/elm info --model "$model" | head -3
echo "--- elm generate --model $model --prompt \"$prompt\""
build/release/elm generate --model "$model" --prompt "$prompt" --max-new-tokens 96 --seed 1
