#!/usr/bin/env bash
# Speculative decoding against plain decoding, in one run (docs/performance.md, "Speculative
# decoding"): greedy decode tokens/s and the acceptance rate of
#   - a draft model: the model's own Q4_0 (--draft-model SAME --draft-weights q4_0), --draft-max 2/4/8
#   - prompt lookup (--lookup-ngram 2) on an edit-this-text prompt
# on a random-weight OpenELM-270M shape in BF16 (`elm init`, as bench/compare_llamacpp.sh) and on
# the shipped trained model (models/openelm-shakespeare), whose peaked distributions are closer to
# a real model's. Plain and speculative runs alternate, REPS times each, so a shared machine's
# load hits both alike; the summary gives each configuration's median tokens/s and its ratio to
# the plain median of the same model.
#
#   bench/speculative_bench.sh [WORKDIR] [THREADS]      (defaults: build/compare, 2)
#   N=64 REPS=3 MODELS="m270 shakespeare" bench/speculative_bench.sh
# MODELS also takes model paths: a 270M shape with trained distributions comes from
# configs/openelm_270M_shakespeare_probe.yaml (its header: train, convert, then
# MODELS=build/compare/m270-probe N=100; its 128-token context leaves out the lookup rows).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-build/compare}"
threads="${2:-2}"
elm="${ELM:-build/release/elm}"
n="${N:-64}"
reps="${REPS:-3}"
mkdir -p "$work"
[ -f "$work/m270/config.json" ] ||
  "$elm" init --preset OpenELM-270M --seed 0 --dtype bf16 --output "$work/m270" >/dev/null

story="Once upon a time, in a small village by the sea, there lived an old fisherman"
edit_text="ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is \
the sun. Arise, fair sun, and kill the envious moon, who is already sick and pale with grief, \
that thou her maid art far more fair than she."
edit_prompt="Rewrite this text with every name in capitals, changing nothing else.
Text: $edit_text
Rewritten: $edit_text"

# One greedy run; prints "tokens_per_s acceptance_percent" (acceptance "-" when plain).
run() {
  local model="$1" prompt="$2"
  shift 2
  local err
  err=$("$elm" generate --model "$model" --threads "$threads" --temp 0 --ignore-eos -n "$n" \
    --seed 1 --prompt "$prompt" "$@" 2>&1 >/dev/null)
  local tps acc
  tps=$(sed -n 's/.*generated [0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p' <<<"$err")
  acc=$(sed -n 's/.*accepted (\([0-9.]*\)%).*/\1/p' <<<"$err")
  # A run that failed (e.g. a prompt and N past a short model's context) says why, once per run.
  [ -n "$tps" ] || grep -m1 -i error <<<"$err" >&2 || true
  echo "${tps:-0} ${acc:--}"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)," \
  "threads $threads, $n tokens greedy, $reps repetitions"
for m in ${MODELS:-m270 shakespeare}; do
  case "$m" in
  m270) model="$work/m270" ;;
  shakespeare) model="models/openelm-shakespeare" ;;
  *) model="$m" ;;
  esac
  declare -A tps=() acc=()
  configs=(plain draft2 draft4 draft8 lookup_plain lookup2)
  for ((r = 0; r < reps; r++)); do
    for c in "${configs[@]}"; do
      case "$c" in
      plain) out=$(run "$model" "$story") ;;
      draft*) out=$(run "$model" "$story" --draft-model "$model" --draft-weights q4_0 \
        --draft-max "${c#draft}") ;;
      lookup_plain) out=$(run "$model" "$edit_prompt") ;;
      lookup2) out=$(run "$model" "$edit_prompt" --lookup-ngram 2 --draft-max 8) ;;
      esac
      tps[$c]+="${out% *} "
      acc[$c]="${out#* }"
    done
  done
  base=$(tr ' ' '\n' <<<"${tps[plain]}" | grep . | median)
  lbase=$(tr ' ' '\n' <<<"${tps[lookup_plain]}" | grep . | median)
  for c in "${configs[@]}"; do
    med=$(tr ' ' '\n' <<<"${tps[$c]}" | grep . | median)
    ref=$base
    [[ "$c" == lookup* ]] && ref=$lbase
    printf '%-12s %-14s %8.2f tok/s  x%.2f  acceptance %s%%  (runs: %s)\n' "$m" "$c" "$med" \
      "$(awk -v a="$med" -v b="$ref" 'BEGIN {print (b > 0 ? a / b : 0)}')" "${acc[$c]}" "${tps[$c]}"
  done
  unset tps acc
done
