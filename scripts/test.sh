#!/usr/bin/env bash
# The README's second command: install packages, build, and run the test suite.
# Usage: scripts/test.sh [stage ...]   (default: release asan tsan-server fuzz-smoke, what CI runs;
#                                     `scripts/test.sh release` is the quick one)
#
# Stages (docs/reliability.md, "Sanitizers in CI"):
#   release      Release build, the whole suite
#   debug        Debug build, the whole suite
#   asan         ASan+UBSan build (preset asan), the whole suite except ELM_ASAN_EXCLUDE
#   tsan         TSan build (preset tsan), the whole suite (OpenMP regions report; see the docs)
#   tsan-server  TSan build of what the server tests need, ctest -R '^Server\.', one OpenMP thread
#   fuzz-smoke   tests/fuzz/smoke.sh (skipped with a message while that script does not exist)
# Every stage runs even when an earlier one failed; the exit status is non-zero when any failed.
# In the sanitizer stages any sanitizer report fails the stage, also one from a child process
# (reports go to files under build/<preset>/sanitizer-logs, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- release asan tsan-server fuzz-smoke

# Stages that are a script of their own: name -> path. A stage whose script is missing is skipped
# with a message, so a stage can be listed in .ci/run before its script lands.
declare -A EXTERNAL_STAGES=(
  [fuzz-smoke]=tests/fuzz/smoke.sh
)

# Tests the asan stage leaves out, and why (the release stage runs them all): clang_format checks
# the sources, not a build; neon_cross_check compiles and runs its own unsanitized AArch64 binary
# under QEMU; chat_page_browser tests the page's JavaScript in Chromium; and
# KquantGguf.EveryFileLoadsWithLlamaCppLogitsAndPerplexity compares the logits and perplexity of
# 15 GGUF files with llama.cpp's (numerics: 90 s of the stage's CPU time under ASan), while
# KquantGguf.EveryTensorParsesAndDequantizesExactly still reads every tensor of every file here;
# KquantWriteGguf.EveryPresetEqualsLlamaQuantizeFileForFile runs llama-quantize's search over 15
# files (16 s in release), while the quantizers' own tests and KquantWriteCli run under ASan.
# Three more compare numbers at length and run in release only, their code being covered under
# ASan by lighter tests: TrainShardingRun.EveryModeEqualsNoShardBitForBit (every sharding mode at
# 2 and 4 ranks, 100 s under ASan; ResumeOnAnotherRankCount and KilledRankLeavesThePreviousCheckpoint
# run the sharded paths under ASan), ShippedModel.HeldOutPerplexityMatches (26 s) and
# SpeculativeSampled.StepWithADraftModelMatchesThePlainSampler (8,000 sampled steps; the other
# Speculative* tests run the same code under ASan).
ELM_ASAN_EXCLUDE="${ELM_ASAN_EXCLUDE:-^(clang_format|neon_cross_check|chat_page_browser|KquantGguf\.EveryFileLoadsWithLlamaCppLogitsAndPerplexity|KquantWriteGguf\.EveryPresetEqualsLlamaQuantizeFileForFile|TrainShardingRun\.EveryModeEqualsNoShardBitForBit|ShippedModel\.HeldOutPerplexityMatches|SpeculativeSampled\.StepWithADraftModelMatchesThePlainSampler)$}"
# Server tests the tsan-server stage leaves out (none; the variable stays for local runs).
ELM_TSAN_EXCLUDE="${ELM_TSAN_EXCLUDE:-}"
jobs="$(nproc)"

# Sanitizer options; every report is fatal and written to a file so a report inside a child
# process (the CLI tests run elm, the server tests elm-serve) cannot be hidden by its exit status.
sanitizer_env() {
  local logs="$1"
  rm -rf "$logs" && mkdir -p "$logs"
  export ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$logs/tsan:suppressions=$PWD/tests/sanitizers/tsan.supp"
  # Leaks in third-party code that are not elm's to fix (the file documents each entry).
  export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
}

# Fails (printing them) when the sanitizers wrote any report under $1.
check_sanitizer_logs() {
  local logs="$1" f n=0
  for f in "$logs"/*; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    echo "==== sanitizer report: $f"
    cat "$f"
  done
  if [ "$n" -gt 0 ]; then
    echo "test: $n sanitizer report file(s) under $logs"
    return 1
  fi
  echo "test: 0 sanitizer reports"
}

# Unity builds (several sources compiled as one, CMAKE_UNITY_BUILD) for every CI stage: a cold
# ASan build of the library takes ~45% less CPU, as each header is parsed and each template
# instantiated once per batch of files instead of once per file (docs/architecture.md). The
# presets, which developers build incrementally, compile file by file, so each file is still
# checked to compile on its own there; the debug stage does too. ELM_UNITY_BUILD=ON or OFF sets
# every stage.
unity_for() { # preset
  if [ -n "${ELM_UNITY_BUILD:-}" ]; then
    echo "$ELM_UNITY_BUILD"
  elif [ "$1" = debug ]; then
    echo OFF
  else
    echo ON
  fi
}

configure_build() { # preset [extra cmake -D...]
  local preset="$1"
  shift
  # Batches of 16 sources (CMake's default is 8): each batch parses the heavy headers once, and
  # no helper name repeats across a target (docs/architecture.md, "Unity builds").
  cmake --preset "$preset" -DCMAKE_UNITY_BUILD="$(unity_for "$preset")" \
    -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 "$@" >/dev/null
  cmake --build "build/$preset" -j "$jobs"
}

stage_preset() { # preset: build everything, run every test
  configure_build "$1"
  if [ "$1" = asan ] || [ "$1" = tsan ]; then
    sanitizer_env "$PWD/build/$1/sanitizer-logs"
    local rc=0
    ctest --test-dir "build/$1" --output-on-failure -j 2 || rc=$?
    check_sanitizer_logs "build/$1/sanitizer-logs" || rc=1
    return "$rc"
  fi
  ctest --test-dir "build/$1" --output-on-failure -j 2
}

stage_asan() {
  configure_build asan
  sanitizer_env "$PWD/build/asan/sanitizer-logs"
  local rc=0
  ctest --test-dir build/asan --output-on-failure -j 2 -E "$ELM_ASAN_EXCLUDE" || rc=$?
  check_sanitizer_logs build/asan/sanitizer-logs || rc=1
  return "$rc"
}

# libgomp is not built for TSan, so its futex-based barriers are invisible to it and every
# parallel region reports races; one OpenMP thread per team (OMP_THREAD_LIMIT caps explicit
# num_threads() too) leaves the server's own threads, which TSan sees fully.
stage_tsan_server() {
  # Only what the server tests reach: of the test sources server_test.cc (and test_util.cc), of
  # elm's commands the serve launcher (CliServesAndExitsCleanlyOnSignals runs `elm serve`; the
  # commands register themselves, so the others can be left out), and of the library neither
  # evaluation, training nor the benchmark (the server's layers do not include them).
  local skip f
  skip=""
  for f in tests/*_test.cc tools/elm/cmd_*.cc; do
    case "$f" in
      tests/server_test.cc | tools/elm/cmd_serve.cc | tools/elm/cmd_serve_launcher.cc) continue ;;
    esac
    skip+="${skip:+|}${f%.cc}"
  done
  configure_build tsan-server "-DELM_SKIP_SOURCES=/(${skip})\\.cc\$|/src/(eval|train|bench)/"
  sanitizer_env "$PWD/build/tsan-server/sanitizer-logs"
  local rc=0
  OMP_NUM_THREADS=1 OMP_THREAD_LIMIT=1 \
    ctest --test-dir build/tsan-server --output-on-failure -j 2 -R '^Server\.' \
    -E "$ELM_TSAN_EXCLUDE" || rc=$?
  check_sanitizer_logs build/tsan-server/sanitizer-logs || rc=1
  return "$rc"
}

run_stage() {
  case "$1" in
    release | debug | tsan) stage_preset "$1" ;;
    asan) stage_asan ;;
    tsan-server) stage_tsan_server ;;
    *)
      local script="${EXTERNAL_STAGES[$1]:-}"
      if [ -z "$script" ]; then
        echo "test: unknown stage '$1'" >&2
        return 2
      elif [ ! -x "$script" ]; then
        echo "test: stage $1 skipped: $script does not exist (yet)"
      else
        "$script"
      fi
      ;;
  esac
}

scripts/setup.sh all
# The chat template test renders with @huggingface/jinja from npm (tests/jinja); without npm it
# is skipped with a message.
if command -v npm >/dev/null && [ ! -d tests/jinja/node_modules/@huggingface/jinja ]; then
  npm ci --prefix tests/jinja --no-audit --no-fund --loglevel=error ||
    echo "test: npm ci failed; the Jinja template test will be skipped"
fi
# The chat page's browser test drives Chromium with playwright-core from npm (tests/browser);
# without npm it is skipped with a message.
if command -v npm >/dev/null && [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error ||
    echo "test: npm ci failed; the browser test will be skipped"
fi
# The official openai npm client against the server (tests/openai_client; Embedding.* in
# tests/embedding_test.cc); without npm that test is skipped with a message.
if command -v npm >/dev/null && [ ! -d tests/openai_client/node_modules/openai ]; then
  npm ci --prefix tests/openai_client --no-audit --no-fund --loglevel=error ||
    echo "test: npm ci failed; the openai client test will be skipped"
fi

summary=()
failed=0
passed_total=0
failed_total=0
stage_log=$(mktemp)
trap 'rm -f "$stage_log"' EXIT
for stage in "$@"; do
  echo "==== test: stage $stage ($(date -u +%H:%M:%S))"
  start=$SECONDS
  set +e
  (
    set -euo pipefail
    run_stage "$stage"
  ) 2>&1 | tee "$stage_log"
  rc=${PIPESTATUS[0]}
  set -e
  # Counts for the closing line: ctest's "N% tests passed, F tests failed out of T" per stage,
  # and the fuzz smoke's one line per target.
  read -r f t < <(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1 \2/p' \
    "$stage_log" | tail -1) || true
  if [ -n "${t:-}" ]; then
    passed_total=$((passed_total + t - f))
    failed_total=$((failed_total + f))
  elif [ "$stage" = fuzz-smoke ]; then
    # (grep -c exits 1 when it counts 0: that must not end the script under set -e)
    passed_total=$((passed_total + $(grep -c -E '^[a-z_]+_fuzz .* pass$' "$stage_log" || true)))
    failed_total=$((failed_total + $(grep -c -E '^[a-z_]+_fuzz .* FAIL' "$stage_log" || true)))
  fi
  unset f t
  took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    summary+=("$stage: ok (${took}s)")
  elif [ "$rc" -eq 77 ]; then
    summary+=("$stage: skipped (${took}s)")  # a stage's own "cannot run here" (e.g. no clang)
  else
    summary+=("$stage: FAILED rc=$rc (${took}s)")
    failed=1
  fi
done
echo "==== test: summary"
printf '  %s\n' "${summary[@]}"
# The closing line CI reads: tests and fuzz targets over every stage that ran.
echo "tests: $passed_total passed, $failed_total failed"
exit "$failed"
