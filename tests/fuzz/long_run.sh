#!/usr/bin/env bash
# Long fuzzing run (tests/fuzz/README.md): each target in turn for SECONDS (default 3600) with JOBS
# parallel jobs (default 2), past crashes, on a corpus kept in build/fuzz/long/<target>/corpus
# that grows from run to run; crashes land in build/fuzz/long/<target>/crashes/. Needs the fuzz
# project built (tests/fuzz/smoke.sh builds it).
#   tests/fuzz/long_run.sh [SECONDS] [JOBS]      e.g. tests/fuzz/long_run.sh 14400 4
# FUZZ_TARGETS selects targets, FUZZ_BUILD_DIR the build (default build/fuzz).
set -u
S=${1:-3600}
JOBS=${2:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
# shellcheck source=tests/fuzz/dict.sh
source "$ROOT/tests/fuzz/dict.sh"
TARGETS=${FUZZ_TARGETS:-$(ls "$ROOT/tests/fuzz/corpus")}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for t in $TARGETS; do
  [ -x "$BUILD/$t" ] || { echo "$BUILD/$t is not built (run tests/fuzz/smoke.sh once)"; exit 2; }
  w=$BUILD/long/$t
  mkdir -p "$w/corpus" "$w/crashes"
  fuzz_dict "$t"
  "$BUILD/$t" "$w/corpus" "$ROOT/tests/fuzz/corpus/$t" -max_total_time="$S" -fork="$JOBS" \
    -ignore_crashes=1 -timeout=30 -rss_limit_mb=2048 -close_fd_mask=3 \
    -artifact_prefix="$w/crashes/" "${dict[@]}" >"$w/log" 2>&1
  echo "$t: $(grep -E '^#[0-9]+: cov' "$w/log" | tail -1 | cut -d' ' -f1-3)," \
    "$(ls "$w/crashes" | wc -l) files in $w/crashes"
done
