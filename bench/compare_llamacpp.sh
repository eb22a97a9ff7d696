#!/usr/bin/env bash
# elm next to llama.cpp on one model shape, in one run: the numbers in docs/performance.md.
#
#   bench/compare_llamacpp.sh [WORKDIR] [THREADS]
#
# Makes a random-weight OpenELM-270M (`elm init`, BF16) and GGUF copies in F16/BF16/Q8_0/Q4_0 in
# WORKDIR (default build/compare), then for each weight type runs `elm bench` (pp512, tg128 at
# depth 0/512/1536, 5 repetitions) and llama.cpp: its own llama-bench when LLAMA_BENCH names the
# binary (same tests; the numbers to quote), else tests/tools/llamacpp_bench.mjs through
# node-llama-cpp (NLC_DIR as in tests/tools/llamacpp_greedy.mjs; its generation pays a JavaScript
# call per token). Neither: elm alone.
# Output: one JSON line per run in WORKDIR/results.jsonl and a summary on stdout.
# NO_MMAP=1 runs both engines with their weights read into memory (--no-mmap) instead of mmapped;
# TYPES="bf16 f16" limits the weight types (default: bf16 f16 q8_0 q4_0). llama.cpp's types
# (q4_k_m q5_k_m q6_k iq4_xs, or any llama-quantize preset in lower case) need LLAMA_QUANTIZE (the
# llama-quantize binary), which makes their GGUF from the F16 one; without it they are skipped.
# REPS=1 sets the repetitions of every test (default 5; 1 for a quick check that the script runs).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-build/compare}"
threads="${2:-2}"
elm="${ELM:-build/release/elm}"
mkdir -p "$work"
[ -f "$work/m270/config.json" ] ||
  "$elm" init --preset OpenELM-270M --seed 0 --dtype bf16 --output "$work/m270" >/dev/null
types="${TYPES:-bf16 f16 q8_0 q4_0}"
reps="${REPS:-5}"
for t in f16 $types; do  # F16 is llama-quantize's source for the other types
  case "$t" in
  f16 | bf16 | q8_0 | q4_0)
    [ -f "$work/m270-$t.gguf" ] ||
      "$elm" convert --model "$work/m270" --to gguf --type "$t" --output "$work/m270-$t.gguf" \
        >/dev/null
    ;;
  esac
done
mmap_flag=() mmap=true
if [ "${NO_MMAP:-0}" = 1 ]; then mmap_flag=(--no-mmap) mmap=false; fi
out="$work/results.jsonl"
: >"$out"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for t in $types; do
  case "$t" in
  f16 | bf16 | q8_0 | q4_0) ;;
  *)
    if [ ! -f "$work/m270-$t.gguf" ]; then
      if [ -z "${LLAMA_QUANTIZE:-}" ]; then
        echo "skipping $t: set LLAMA_QUANTIZE to make its GGUF (elm reads it but does not write it)"
        continue
      fi
      "$LLAMA_QUANTIZE" "$work/m270-f16.gguf" "$work/m270-$t.gguf" "${t^^}" >/dev/null 2>&1
    fi
    ;;
  esac
  model="$work/m270-$t.gguf"
  [ "$t" = bf16 ] && model="$work/m270"  # BF16 straight from the safetensors (mmapped)
  j=$("$elm" bench --model "$model" "${mmap_flag[@]}" -t "$threads" -p 512 -n 128 -d 0 -d 512 \
    -d 1536 -r "$reps" --json |
    tr -d '\n')
  echo "{\"engine\":\"elm\",\"type\":\"$t\",\"mmap\":$mmap,\"result\":$j}" >>"$out"
  echo "elm       $t: $j" | cut -c1-400
  if [ -n "${LLAMA_BENCH:-}" ]; then
    lm=mmap
    [ "$mmap" = false ] && lm=none
    {
      "$LLAMA_BENCH" -m "$work/m270-$t.gguf" -t "$threads" -p 512 -n 0 -r "$reps" -lm "$lm" -o jsonl
      "$LLAMA_BENCH" -m "$work/m270-$t.gguf" -t "$threads" -p 0 -n 128 -d 0,512,1536 -r "$reps" \
        -lm "$lm" -o jsonl
    } 2>/dev/null | node -e '
      require("readline").createInterface({input: process.stdin}).on("line", (l) => {
        const j = JSON.parse(l);
        const test = j.n_prompt > 0 ? `pp${j.n_prompt}` : `tg${j.n_gen}@d${j.n_depth}`;
        console.log(JSON.stringify({test, tokens_per_s: j.avg_ts, sd: j.stddev_ts,
                                    samples: j.samples_ts, kv: j.type_k}));
      });' | while read -r line; do
      echo "{\"engine\":\"llama-bench\",\"type\":\"$t\",\"mmap\":$mmap,\"result\":$line}" >>"$out"
      echo "llama-bench $t: $line" | cut -c1-200
    done
  elif [ -n "${NLC_DIR:-}" ]; then
    node tests/tools/llamacpp_bench.mjs "$work/m270-$t.gguf" "${mmap_flag[@]}" -t "$threads" \
      -p 512 -n 128 -r "$reps" -d 0,512,1536 | while read -r line; do
      echo "{\"engine\":\"llama.cpp\",\"type\":\"$t\",\"mmap\":$mmap,\"result\":$line}" >>"$out"
      echo "llama.cpp $t: $line" | cut -c1-200
    done
  fi
done
