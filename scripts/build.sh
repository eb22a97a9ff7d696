#!/usr/bin/env bash
# Configures and builds elm with a CMake preset (default: release). Usage: scripts/build.sh [preset]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
cmake --preset "$preset" >/dev/null
cmake --build "build/$preset" -j "$(nproc)"
