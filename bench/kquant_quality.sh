#!/usr/bin/env bash
# Quality of llama-quantize's types as elm writes them (`elm quantize --type PRESET`): the table in
# docs/performance.md, "Quality of the quantized types".
#
#   bench/kquant_quality.sh MODEL TEXT [WORKDIR] [TOKENS] [CONTEXT]
#
# MODEL is an F32 (or F16/BF16) HF folder. It is quantized into WORKDIR (default build/kquant) with
# each preset, and `elm kld --converted` scores TOKENS (default 2048) tokens of TEXT in windows of
# CONTEXT (default 256) positions with both: mean KL(f32 ‖ quantized) per token, top-1 agreement,
# the perplexity change and the file size. Prints one markdown table row per preset.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$1"
text="$2"
work="${3:-build/kquant}"
tokens="${4:-2048}"
context="${5:-256}"
elm="${ELM:-build/release/elm}"
mkdir -p "$work"
name=$(basename "$src")
echo "| type | file MiB | mean KL (nats/token) | max KL | top-1 agreement | perplexity f32 → quantized |"
echo "|---|---|---|---|---|---|"
for t in q8_0 q6_k q5_k_m q5_k_s q5_1 q5_0 q4_k_m q4_k_s iq4_xs iq4_nl q4_1 q4_0 q3_k_l q3_k_m \
  q3_k_s q2_k; do
  out="$work/$name-$t.gguf"
  [ -f "$out" ] || "$elm" quantize --model "$src" --type "$t" --output "$out" >/dev/null 2>&1
  r=$("$elm" kld --model "$src" --converted "$out" --file "$text" --max-tokens "$tokens" \
    --context "$context" 2>/dev/null)
  kl=$(sed -n 's/^mean KL \([^ ]*\) nats\/token (max \([^)]*\)), top-1 agreement \(.*\)$/\1 | \2 | \3/p' <<<"$r")
  ppl=$(sed -n 's/^perplexity \(.*\)$/\1/p' <<<"$r")
  mib=$(awk -v b="$(stat -c %s "$out")" 'BEGIN { printf "%.2f", b / 1048576 }')
  echo "| ${t^^} | $mib | $kl | $ppl |"
done
