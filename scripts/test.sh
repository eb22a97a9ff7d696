#!/usr/bin/env bash
# The README's second command: install packages, build, and run the whole test suite.
# Usage: scripts/test.sh [preset]   (release by default; asan and tsan presets exist too)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
scripts/setup.sh
# The chat page's browser test drives Chromium with playwright-core from npm (tests/browser);
# without npm it is skipped with a message.
if command -v npm >/dev/null && [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error ||
    echo "test: npm ci failed; the browser test will be skipped"
fi
scripts/build.sh "$preset"
ctest --test-dir "build/$preset" --output-on-failure -j 2
