#!/usr/bin/env bash
# Decoding speed with and without a JSON schema (docs/sampling.md, "Grammars and JSON schemas";
# issue goal: the grammar mask costs at most 10%). OpenELM-270M shape, random BF16 weights from
# `elm init`, 2 threads; `elm generate` with the same prompt and seed, plain and under a schema
# whose replies are long (an array of free strings: the mask's worst case, where nearly the whole
# vocabulary is allowed), alternating so both see the same machine load. Prints each run's
# generated tokens/s and the medians.
#
#   bench/structured_speed.sh [RUNS]        ELM=path picks the binary (default build/release/elm)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
elm="${ELM:-build/release/elm}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
"$elm" init --preset OpenELM-270M --seed 0 --dtype bf16 --output "$work/m" >/dev/null
schema='{"type":"object","properties":{"notes":{"type":"array","items":{"type":"string"},"minItems":40}},"required":["notes"]}'
rate() { grep -o 'generated [0-9]* tokens, [0-9.]* tokens/s' | awk '{print $2, $4}'; }
: >"$work/plain"
: >"$work/schema"
for ((i = 0; i < runs; i++)); do
  "$elm" generate --model "$work/m" -t 2 -p "Notes:" -n 128 --ignore-eos --seed 1 2>&1 \
    >/dev/null | rate | tee -a "$work/plain" | sed 's/^/plain:  tokens, tok\/s = /'
  "$elm" generate --model "$work/m" -t 2 -p "Notes:" -n 128 --seed 1 --json-schema "$schema" \
    2>&1 >/dev/null | rate | tee -a "$work/schema" | sed 's/^/schema: tokens, tok\/s = /'
done
median() { sort -n -k2 "$1" | awk '{a[NR]=$2} END {print a[int((NR+1)/2)]}'; }
p=$(median "$work/plain")
s=$(median "$work/schema")
echo "median tokens/s: plain $p, json schema $s ($(awk -v p="$p" -v s="$s" 'BEGIN {printf "%+.1f%%", (s/p-1)*100}'))"
