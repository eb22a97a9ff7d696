#!/usr/bin/env bash
# Instruct-tuning throughput (docs/performance.md, "Instruct tuning"): an SFT step (sequences/s,
# tokens/s) and a preference step (pairs/s) with the reference log-probs computed live every step
# and precomputed once, on the issue-benchmark shape of bench/train_speed.sh (4 layers, dim 256,
# head_dim 64, 4 query heads per KV head, vocab 32000; random init), full fine-tuning, f32.
#
#   bench/posttrain_speed.sh [STEPS]
#
# Data: rows built from Tiny Shakespeare (prompt = one line, chosen = the next line, rejected = a
# line from elsewhere), max_length 128. SFT batch 8 chats, DPO batch 4 pairs (8 sequences for the
# policy, 8 for the reference). Prints the median over the steps after the first two.
# ELM=path picks the binary (default build/release/elm).
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-12}"
elm="${ELM:-build/release/elm}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
"$elm" init --config configs/tiny_shakespeare.yaml \
  --set model.language_modeling.general_gpt.model_dim=256 \
  --set model.language_modeling.general_gpt.head_dim=64 \
  --set model.language_modeling.general_gpt.num_gqa_groups=4 --output "$work/base" >/dev/null
python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
lines = [l.strip() for l in open("data/corpus/tinyshakespeare.txt") if len(l.strip()) > 20]
rng = random.Random(0)
with open(f"{work}/chats.jsonl", "w") as c, open(f"{work}/prefs.jsonl", "w") as p:
    for i in range(0, 800, 2):
        prompt = " ".join(lines[i:i + 3])
        c.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": " ".join(lines[i + 3:i + 6])}]}) + "\n")
        p.write(json.dumps({"prompt": prompt, "chosen": " ".join(lines[i + 3:i + 5]),
                            "rejected": " ".join(rng.sample(lines, 2))}) + "\n")
PY
common="model_name_or_path: $work/base
learning_rate: 1.0e-5
max_steps: $steps
max_length: 128
max_prompt_length: 64
save_steps: 0
logging_steps: 1000
elm:
  train_file: XXX"
median() {
  node -e '
    const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")
      .map(JSON.parse).filter(r => r.step > 2 && r[process.argv[2]] !== undefined);
    const med = k => { const a = rows.map(r => r[k]).sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
    console.log(`${process.argv[3].padEnd(28)} ${med(process.argv[2]).toFixed(2).padStart(8)} ${process.argv[2]}` +
                `  ${med("tokens_per_s").toFixed(0).padStart(6)} tokens/s`);
  ' "$1" "$2" "$3"
}
echo "${common/XXX/$work/chats.jsonl}" >"$work/sft.yaml"
"$elm" sft --config "$work/sft.yaml" --set per_device_train_batch_size=8 \
  --set output_dir="$work/sft" --quiet >/dev/null
median "$work/sft/train_log.jsonl" sequences_per_s "sft (batch 8)"
echo "${common/XXX/$work/prefs.jsonl}" >"$work/dpo.yaml"
for pre in false true; do
  "$elm" dpo --config "$work/dpo.yaml" --set per_device_train_batch_size=4 --set loss_type=hinge \
    --set beta=0.01 --set precompute_ref_log_probs=$pre --set max_steps="$steps" \
    --set output_dir="$work/dpo_$pre" --quiet >"$work/out_$pre"
  median "$work/dpo_$pre/train_log.jsonl" pairs_per_s \
    "dpo (batch 4), ref $([ $pre = true ] && echo precomputed || echo live)"
  grep "reference log-probs" "$work/out_$pre" | sed 's/^/  /'
done
