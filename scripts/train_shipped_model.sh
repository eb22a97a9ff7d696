#!/usr/bin/env bash
# Reproduces models/openelm-shakespeare, the model elm ships: trains
# configs/openelm_shakespeare.yaml (1500 steps of 8 x 256 tokens of Tiny Shakespeare, about
# 55 minutes on 2 CPU cores), exports the final checkpoint as an HF folder in BF16 and records
# the numbers tests/shipped_model_test.cc checks (expected.json).
#
#   scripts/train_shipped_model.sh                          # train in results/, export
#   scripts/train_shipped_model.sh --results /tmp/runs      # run folder elsewhere
#   scripts/train_shipped_model.sh --skip-train --results DIR   # export a finished run only
#   scripts/train_shipped_model.sh --skip-train --checkpoint DIR  # export another checkpoint
#
# Training resumes from the run folder's newest complete checkpoint (common.auto_resume), so an
# interrupted run (Ctrl-C writes a checkpoint) continues where it stopped, bit for bit; a
# finished run is not retrained. elm train writes F32 checkpoints (weights, AdamW moments,
# trainer state); `elm convert --to hf --type bf16` keeps config.json + model.safetensors only,
# with every tensor in BF16. The model folder's README.md is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

ELM="${ELM:-build/release/elm}"
CONFIG=configs/openelm_shakespeare.yaml
RUN_LABEL=openelm_shakespeare  # common.run_label in the config
FINAL_STEP=800                 # elm.max_steps in the config
results=results
output=models/openelm-shakespeare
train=1
ckpt=""

while [ $# -gt 0 ]; do
  case "$1" in
    --results) results="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --checkpoint) ckpt="$2"; shift 2 ;;
    --skip-train) train=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$ELM" ]; then
  echo "$ELM not found: build first (scripts/build.sh release)" >&2
  exit 1
fi

run="$results/$RUN_LABEL"
if [ "$train" = 1 ]; then
  echo "--- elm train --config $CONFIG (run folder $run)"
  "$ELM" train --config "$CONFIG" --set "common.results_loc=$results" \
    --set common.auto_resume=true
fi

if [ -z "$ckpt" ]; then
  ckpt="$run/checkpoints/$(printf 'step_%08d' "$FINAL_STEP")"
  if [ ! -f "$ckpt/DONE" ]; then
    echo "$ckpt: no complete final checkpoint; finish the run first (rerun without --skip-train)" >&2
    exit 1
  fi
elif [ ! -f "$ckpt/DONE" ]; then
  echo "$ckpt: not a complete checkpoint folder (no DONE file)" >&2
  exit 1
fi
step=$((10#$(basename "$ckpt" | sed 's/^step_//')))

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "--- elm convert --model $ckpt --to hf --type bf16"
"$ELM" convert --model "$ckpt" --to hf --type bf16 --output "$tmp/hf"
mkdir -p "$output"
cp "$tmp/hf/config.json" "$tmp/hf/model.safetensors" "$output/"
# The training log up to the exported step, and its plot.
grep -E "\"step\":([0-9]+)," "$run/train_log.jsonl" |
  awk -v last="$step" '{ match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7) + 0;
                         if (s <= last) print }' > "$output/train_log.jsonl"
"$ELM" plot --log "$output/train_log.jsonl" --output "$output/loss.svg" \
  --title "openelm-shakespeare (13.0M params, Tiny Shakespeare)"

# ---- expected.json: what tests/shipped_model_test.cc recomputes ----
# Perplexity of the corpus's last 400 lines (inside the held-out 10%: elm.val_fraction takes the
# end of the packed token stream), as `elm perplexity` computes it: BOS, disjoint windows of the
# model's context.
corpus=data/corpus/tinyshakespeare.txt
lines=400
size=$(wc -c < "$corpus")
bytes=$(tail -n "$lines" "$corpus" | wc -c)
offset=$((size - bytes))
tail -c "$bytes" "$corpus" > "$tmp/heldout.txt"
echo "--- elm perplexity on the last $lines lines of $corpus"
"$ELM" perplexity --model "$output" --file "$tmp/heldout.txt" --output "$tmp/ppl.json"
num() { sed -n "s/^ *\"$1\": *\([^,]*\),\{0,1\}\$/\1/p" "$tmp/ppl.json"; }

prompt="ROMEO:"
max_new=32
echo "--- elm generate --prompt \"$prompt\" --temperature 0 -n $max_new"
ids=$("$ELM" generate --model "$output" --prompt "$prompt" --temperature 0 \
  --max-new-tokens "$max_new" --output-ids | tail -n 1)

val_loss=$(grep "^{\"step\":$step,\"val_loss\"" "$run/train_log.jsonl" | tail -n 1 || true)
[ -n "$val_loss" ] || val_loss=null
cat > "$output/expected.json" <<EOF
{
 "perplexity": {
  "file": "$corpus",
  "offset": $offset,
  "bytes": $bytes,
  "add_bos": true,
  "stride": 0,
  "scored_tokens": $(num scored_tokens),
  "nll_sum": $(num nll_sum),
  "token_perplexity": $(num token_perplexity)
 },
 "greedy": {
  "prompt": "$prompt",
  "max_new_tokens": $max_new,
  "ids": $ids
 },
 "training": {
  "config": "$CONFIG",
  "checkpoint_step": $step,
  "validation": $val_loss
 }
}
EOF
echo "wrote $output (config.json, model.safetensors, expected.json)"
ls -l "$output"
echo "validation at step $step: $val_loss"
echo "held-out perplexity: $(num token_perplexity) over $(num scored_tokens) tokens"
echo "--- sample: elm generate --model $output --prompt \"$prompt\" --seed 1"
"$ELM" generate --model "$output" --prompt "$prompt" --max-new-tokens 64 --seed 1
