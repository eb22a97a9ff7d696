#!/usr/bin/env bash
# Regenerates tests/data/kquant/imatrix: llama.cpp's importance matrix for the conformance
# checkpoint k_dim256_vocab32k and the sha256 of llama-quantize's files quantized with it, which
# `KquantWriteGguf.ImatrixPresetsEqualLlamaQuantize` (tests/formats_kquant_write_test.cc) compares
# `elm quantize --imatrix` against, byte for byte (docs/formats.md, "--imatrix FILE").
#
#   LLAMA_IMATRIX=.../llama-imatrix LLAMA_QUANTIZE=.../llama-quantize \
#     tests/tools/make_imatrix_reference.sh [CHECKPOINT]
#
# CHECKPOINT defaults to ../shared/conformance/k_dim256_vocab32k beside the repository. The f32
# GGUF both tools start from is elm's (`elm convert --to gguf --type f32 --no-chat-template`,
# byte-identical to llama.cpp's converter); the calibration text is the first 6000 bytes of
# data/corpus/tinyshakespeare.txt, in 8 chunks of 128 tokens. Both tools run in one scratch folder
# with relative file names, since llama-quantize records the names it was given
# (quantize.imatrix.file) and the test runs elm the same way.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
checkpoint="${1:-$repo/../shared/conformance/k_dim256_vocab32k}"
elm="${ELM:-$repo/build/release/elm}"
: "${LLAMA_IMATRIX:?set LLAMA_IMATRIX to llama.cpp's llama-imatrix}"
: "${LLAMA_QUANTIZE:?set LLAMA_QUANTIZE to llama.cpp's llama-quantize}"
out="$repo/tests/data/kquant/imatrix"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cd "$work"
"$elm" convert --model "$checkpoint" --to gguf --type f32 --no-chat-template \
  --output k_dim256_vocab32k.f32.gguf >/dev/null
head -c 6000 "$repo/data/corpus/tinyshakespeare.txt" >calib.txt
"$LLAMA_IMATRIX" -m k_dim256_vocab32k.f32.gguf -f calib.txt -o imatrix.gguf -c 128 --chunks 8 \
  -t 2 >imatrix.log 2>&1
types="Q4_K_M IQ4_XS Q2_K Q3_K_M"
{
  echo "{"
  echo "  \"checkpoint\": \"k_dim256_vocab32k\","
  echo "  \"source\": \"k_dim256_vocab32k.f32.gguf\","
  echo "  \"imatrix\": \"imatrix.gguf\","
  echo "  \"made_by\": \"llama-imatrix -c 128 --chunks 8 on the first 6000 bytes of data/corpus/tinyshakespeare.txt; llama-quantize --imatrix imatrix.gguf k_dim256_vocab32k.f32.gguf OUT TYPE\","
  echo "  \"files\": {"
  sep=""
  for t in $types; do
    "$LLAMA_QUANTIZE" --imatrix imatrix.gguf k_dim256_vocab32k.f32.gguf "$t.gguf" "$t" \
      >"quantize-$t.log" 2>&1
    printf '%s    "%s": {"bytes": %d, "sha256": "%s"}' "$sep" "$t" "$(stat -c %s "$t.gguf")" \
      "$(sha256sum "$t.gguf" | cut -d' ' -f1)"
    sep=$',\n'
  done
  echo
  echo "  }"
  echo "}"
} >"$out/reference.json"
cp imatrix.gguf "$out/imatrix.gguf"
echo "wrote $out/reference.json and $out/imatrix.gguf"
