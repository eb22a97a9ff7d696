#!/usr/bin/env bash
# Sharded data parallelism at 2 MPI ranks: step time with overlapped against blocking gradient
# reduction, and peak RSS per rank for each sharding mode, all in one session (the numbers in
# docs/performance.md, "Sharded data parallelism").
#
#   bench/train_sharding.sh [STEPS] [ROUNDS] [THREADS_PER_RANK]
#
# Shape: the training benchmark's (bench/train_speed.sh: 4 layers, dim 256, vocab 32000, batch
# 8 × 128 tokens per rank, f32), Tiny Shakespeare; SHAPE=mid runs the d_mid-like shape of
# tests/train_sharding_test.cc instead (4 layers, dim 64, layer-wise scaled heads and FFN widths,
# vocab 32000). VARIANTS="name:stage:overlap ..." picks the variants (default: all seven). Each
# round runs every variant once, in turn (ROUNDS, default 2, evens out a shared machine); step
# time is the median over a run's steps
# after the first two, peak RSS is /usr/bin/time's maximum resident set size of each rank.
# ELM=path picks the binary (default build/release/elm), MPIRUN the launcher.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-10}"
rounds="${2:-2}"
threads="${3:-1}"
elm="${ELM:-build/release/elm}"
mpirun="${MPIRUN:-mpirun}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
root=()
[ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
shape=(--set model.language_modeling.general_gpt.model_dim=256
  --set model.language_modeling.general_gpt.head_dim=64
  --set model.language_modeling.general_gpt.num_gqa_groups=4)
if [ "${SHAPE:-}" = mid ]; then
  shape=(--set 'model.language_modeling.general_gpt={num_transformer_layers: 4, model_dim: 64,
    head_dim: 16, num_gqa_groups: 2, qkv_multipliers: [0.25, 1.0], ffn_multipliers: [0.5, 2.0],
    ffn_dim_divisor: 16, max_context_length: 128}')
fi
variants=("no_shard-overlap:0:true" "no_shard-blocking:0:false" "zero1-overlap:1:true"
  "zero2-overlap:2:true" "zero2-blocking:2:false" "zero3-overlap:3:true" "zero3-blocking:3:false")
[ -n "${VARIANTS:-}" ] && read -r -a variants <<<"$VARIANTS"
printf '%-18s %10s %22s\n' variant "step (ms)" "peak RSS rank0/1 (MiB)"
for r in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    IFS=: read -r name stage overlap <<<"$v"
    label="r$r-$name"
    OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS=1 "$mpirun" -np 2 --oversubscribe \
      --bind-to none "${root[@]}" -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
      bash -c 'exec /usr/bin/time -f "rss_kb %M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
      "$work/$label.rss" "$elm" train --quiet --config configs/tiny_shakespeare.yaml "${shape[@]}" \
      --set elm.max_steps="$steps" --set common.eval_every_k_iterations=100000 \
      --set common.save_interval_freq=100000 --set common.results_loc="$work" \
      --set common.run_label="$label" --set elm.zero_stage="$stage" \
      --set elm.overlap_reduction="$overlap" --set common.log_freq=1 >/dev/null 2>&1
    node -e '
      const fs = require("fs");
      const [log, name, rss0, rss1] = process.argv.slice(1);
      const rows = fs.readFileSync(log, "utf8").trim().split("\n").map(JSON.parse)
                     .filter(r => r.step > 2 && r.tokens_per_s !== undefined);
      const tokens = rows.length > 1 ? rows[1].tokens - rows[0].tokens : 0;
      const ms = rows.map(r => 1000 * tokens / r.tokens_per_s).sort((a, b) => a - b);
      const rss = f => (Number(fs.readFileSync(f, "utf8").match(/rss_kb (\d+)/)[1]) / 1024)
                           .toFixed(0);
      console.log(`${name.padEnd(18)} ${ms[Math.floor(ms.length / 2)].toFixed(1).padStart(10)}` +
                  ` ${(rss(rss0) + " / " + rss(rss1)).padStart(22)}`);
    ' "$work/$label/train_log.jsonl" "$name" "$work/$label.rss.0" "$work/$label.rss.1"
  done
done
