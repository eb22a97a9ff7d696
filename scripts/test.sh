#!/usr/bin/env bash
# The README's second command: install packages, build, and run the whole test suite.
# Usage: scripts/test.sh [preset]   (release by default; asan and tsan presets exist too)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
scripts/setup.sh
scripts/build.sh "$preset"
ctest --test-dir "build/$preset" --output-on-failure -j 2
