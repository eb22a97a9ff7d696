#!/usr/bin/env bash
# The README's first command: install the packages running elm needs, build the programs (elm,
# elm-serve; not the tests or benchmarks, which scripts/test.sh builds), and generate text with
# the shipped model (models/openelm-shakespeare, trained by elm itself; see its README.md).
# `cmake --install build/release --prefix PREFIX` then installs them (README, "Installing").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
# A unity build (several sources compiled as one): ~45% less compile time from scratch.
cmake --preset release -DELM_BUILD_TESTS=OFF -DELM_BUILD_BENCH=OFF -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build build/release -j "$(nproc)" --target elm elm-serve
model="${ELM_MODEL:-models/openelm-shakespeare}"
prompt="${1:-ROMEO:}"
build/release/elm info --model "$model" | head -3
echo "--- elm generate --model $model --prompt \"$prompt\""
build/release/elm generate --model "$model" --prompt "$prompt" --max-new-tokens 96 --seed 1
