#!/usr/bin/env bash
# The measured error of the default (fast) path and of --exact, per weight type: the table in
# docs/numerics.md and the README.
#
#   bench/numerics_error.sh MODEL_DIR TEXT [WORKDIR] [TOKENS] [CONTEXT]
#
# MODEL_DIR is an F32 HF folder (a conformance checkpoint, or `elm init --dtype f32`). It is
# written in WORKDIR (default build/numerics) as BF16 and F16 safetensors, Q8_0/Q4_0 GGUF and
# llama-quantize's Q4_K_M, Q5_K_M, Q6_K and IQ4_XS mixes (`elm quantize`), and for each type
# `elm kld` scores TOKENS (default 256) tokens of TEXT in windows of CONTEXT (default 128)
# positions twice:
#   kernels: the stored file against f32 math on the same stored weights (--base-weights f32), i.e.
#            the error the kernels add;
#   total:   against the F32 checkpoint (the weights' rounding included).
# Each line gives max |logit difference|, mean KL (nats/token) and top-1 agreement, for the
# default path and for --exact.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$1"
text="$2"
work="${3:-build/numerics}"
tokens="${4:-256}"
context="${5:-128}"
elm="${ELM:-build/release/elm}"
mkdir -p "$work"
name=$(basename "$src")
file_of() {  # the stored file of type $1
  case "$1" in
    f32) echo "$src" ;;
    bf16 | f16) echo "$work/$name-$1" ;;
    *) echo "$work/$name-$1.gguf" ;;
  esac
}
for t in bf16 f16; do
  [ -f "$(file_of $t)/config.json" ] ||
    "$elm" convert --model "$src" --to hf --type "$t" --output "$(file_of $t)" >/dev/null 2>&1
done
for t in q8_0 q4_0; do
  [ -f "$(file_of $t)" ] ||
    "$elm" convert --model "$src" --to gguf --type "$t" --output "$(file_of $t)" >/dev/null 2>&1
done
kquants="q4_k_m q5_k_m q6_k iq4_xs"
for t in $kquants; do
  [ -f "$(file_of $t)" ] ||
    "$elm" quantize --model "$src" --type "$t" --output "$(file_of $t)" >/dev/null 2>&1
done
summary() {  # "max|Δ| KL top-1" from elm kld's output
  awk '/max \|logit difference\|/ {d = $4}
       /mean KL/ {kl = $3; top = $NF}
       END {printf "%9s %10s %8s", d, kl, top}'
}
echo "$name: $tokens tokens of $(basename "$text"), windows of $context; $(date -u +%FT%TZ)"
printf "%-6s %-8s | %-29s | %-29s\n" type measure "default: max|Δ| KL top-1" \
  "--exact: max|Δ| KL top-1"
for t in f32 bf16 f16 q8_0 q4_0 $kquants; do
  for measure in kernels total; do
    # The K-quant mixes have no load-time conversion: the file itself is the converted copy.
    case "$t" in q*_k* | iq*) what=(--converted "$(file_of "$t")") ;; *) what=(--weights "$t") ;; esac
    if [ "$measure" = kernels ]; then
      args=(--model "$(file_of "$t")" --base-weights f32 "${what[@]}")
    else
      args=(--model "$src" "${what[@]}")
      [ "$t" = f32 ] && continue  # same as kernels for F32
    fi
    common=(--file "$text" --max-tokens "$tokens" --context "$context")
    d=$("$elm" kld "${args[@]}" "${common[@]}" 2>/dev/null | summary)
    e=$("$elm" kld "${args[@]}" "${common[@]}" --exact 2>/dev/null | summary)
    printf "%-6s %-8s | %s | %s\n" "$t" "$measure" "$d" "$e"
  done
done
