#!/usr/bin/env bash
# Smoke run of every libFuzzer target (tests/fuzz/README.md): builds the fuzz project when needed,
# then runs each target for SECONDS seconds (default 15; FUZZ_PARALLEL at a time, seed FUZZ_SEED)
# on a copy of its seed corpus and prints executions, coverage and pass/fail per target. Exits 1 if any target crashed (the crash file is
# printed and kept), 77 when clang++ or libFuzzer is missing (a CI skip), 2 on a build failure.
#   tests/fuzz/smoke.sh [SECONDS]
# Environment: FUZZ_BUILD_DIR (default build/fuzz), FUZZ_TARGETS (space-separated subset),
# FUZZ_JOBS (build parallelism, default 2), FUZZ_PARALLEL (targets run at once, default nproc),
# FUZZ_SEED (libFuzzer -seed, default 1), CXX (default clang++).
set -u
SECONDS_PER_TARGET=${1:-15}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
# shellcheck source=tests/fuzz/dict.sh
source "$ROOT/tests/fuzz/dict.sh"
dict=() # set by fuzz_dict
CXX_BIN=${CXX:-clang++}
ALL_TARGETS="safetensors_fuzz gguf_fuzz tokenizer_json_fuzz hf_config_fuzz mlx_meta_fuzz
  train_yaml_fuzz dataset_fuzz openai_request_fuzz chat_template_fuzz hub_api_fuzz eval_data_fuzz
  pytorch_fuzz posttrain_data_fuzz grammar_fuzz"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}

if ! command -v "$CXX_BIN" >/dev/null 2>&1; then
  echo "fuzz smoke: SKIPPED: $CXX_BIN not found (the fuzz targets need clang with libFuzzer)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$probe/p.cc"
if ! "$CXX_BIN" -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" 2>"$probe/err"; then
  echo "fuzz smoke: SKIPPED: $CXX_BIN cannot link -fsanitize=fuzzer (libFuzzer missing):"
  head -3 "$probe/err"
  exit 77
fi

launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S "$ROOT/tests/fuzz" -B "$BUILD" "${gen[@]}" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
    "${launcher[@]}" >"$probe/configure.log" 2>&1 || {
    cat "$probe/configure.log"
    echo "fuzz smoke: FAILED to configure tests/fuzz"
    exit 2
  }
fi
build_start=$(date +%s)
if ! cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" >"$probe/build.log" 2>&1; then
  tail -40 "$probe/build.log"
  echo "fuzz smoke: FAILED to build tests/fuzz"
  exit 2
fi
echo "fuzz smoke: build $(($(date +%s) - build_start)) s; $SECONDS_PER_TARGET s per target"

# libFuzzer runs one input at a time on one thread: the targets run FUZZ_PARALLEL at a time (default:
# the number of cores), each with one OpenMP thread so runs stay comparable on shared CI cores, and
# with a fixed seed (FUZZ_SEED) so a run's mutations do not depend on the clock.
# (getconf, not nproc: nproc counts OMP_NUM_THREADS, which is 1 here.)
parallel=${FUZZ_PARALLEL:-$(getconf _NPROCESSORS_ONLN)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
seed=${FUZZ_SEED:-1}

# Runs one target; its result line and any failure excerpt go to $BUILD/smoke/$t/result.
run_target() {
  local t=$1 work=$BUILD/smoke/$1 rc execs cov crash result
  rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
  cp "$ROOT/tests/fuzz/corpus/$t/"* "$work/corpus/" 2>/dev/null
  fuzz_dict "$t"
  # -timeout: one input running 30 s counts as a hang; stdout/stderr of the target are closed
  # (libFuzzer and the sanitizers keep reporting on a duplicate of stderr).
  "$BUILD/$t" -max_total_time="$SECONDS_PER_TARGET" -seed="$seed" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -close_fd_mask=3 -artifact_prefix="$work/artifacts/" "${dict[@]}" "$work/corpus" \
    >"$work/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
  crash=$(ls "$work/artifacts/" 2>/dev/null | head -1)
  result=pass
  [ "$rc" -eq 0 ] && [ -z "$crash" ] || result="FAIL (exit $rc)"
  {
    printf '%-22s %12s %8s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "$result"
    if [ "$result" != pass ]; then
      grep -m1 -A6 -E '==ERROR|ELM_CHECK reached|escaped exception|runtime error|does not round-trip|StreamDecoder gives|out-of-memory|ALARM|deadly signal' \
        "$work/log" | cut -c1-200 | sed 's/^/    /'
      [ -n "$crash" ] && echo "    crash file: $work/artifacts/$crash (reproduce: $BUILD/$t $work/artifacts/$crash)"
      echo "    full log: $work/log"
    fi
  } >"$work/result"
}

running=0
for t in $TARGETS; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait

failed=0
printf '%-22s %12s %8s  %s\n' target execs cov result
for t in $TARGETS; do
  if [ -f "$BUILD/smoke/$t/result" ]; then
    cat "$BUILD/smoke/$t/result"
    grep -q ' pass$' "$BUILD/smoke/$t/result" || failed=1
  else
    printf '%-22s %12s %8s  %s\n' "$t" '?' '?' 'FAIL (no result)'
    failed=1
  fi
done
exit $failed
