#!/usr/bin/env bash
# Training throughput of the issue-benchmark shape in f32 and in bf16 mixed precision, one run
# after the other in the same session: the numbers in docs/performance.md ("Training").
#
#   bench/train_speed.sh [STEPS] [ROUNDS]
#
# Shape: 4 layers, dim 256, head_dim 64, 4 query heads per KV head, vocab 32000, batch 8 × 128
# tokens, AdamW with clipping and z-loss, Tiny Shakespeare (configs/tiny_shakespeare.yaml with the
# shape overridden). Each round trains STEPS steps (default 12) in f32, then in bf16; tokens/s is
# the median over each run's steps after the first two. ROUNDS (default 2) alternates them to
# even out a noisy machine. ELM=path picks the binary (default build/release/elm).
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-12}"
rounds="${2:-2}"
elm="${ELM:-build/release/elm}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
shape=(--set model.language_modeling.general_gpt.model_dim=256
  --set model.language_modeling.general_gpt.head_dim=64
  --set model.language_modeling.general_gpt.num_gqa_groups=4)
for r in $(seq "$rounds"); do
  for prec in false true; do
    label="r$r-$prec"
    "$elm" train --config configs/tiny_shakespeare.yaml "${shape[@]}" \
      --set elm.max_steps="$steps" --set common.eval_every_k_iterations=100000 \
      --set common.save_interval_freq=100000 --set common.results_loc="$work" \
      --set common.run_label="$label" --set common.mixed_precision="$prec" \
      --set common.log_freq=1 >/dev/null 2>&1
    node -e '
      const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
      const rows = lines.map(JSON.parse).filter(r => r.step > 2 && r.tokens_per_s !== undefined);
      const tps = rows.map(r => r.tokens_per_s).sort((a, b) => a - b);
      const mfu = rows.map(r => r.mfu).sort((a, b) => a - b);
      const med = a => a[Math.floor(a.length / 2)];
      console.log(`${process.argv[2].padEnd(5)} ${med(tps).toFixed(0).padStart(6)} tokens/s` +
                  `  (min ${tps[0].toFixed(0)}, max ${tps[tps.length - 1].toFixed(0)})` +
                  `  mfu ${(100 * med(mfu)).toFixed(1)}% of the nominal peak` +
                  `  final loss ${rows[rows.length - 1].loss.toFixed(4)}`);
    ' "$work/$label/train_log.jsonl" "$([ "$prec" = true ] && echo bf16 || echo f32)"
  done
done
