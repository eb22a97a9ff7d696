#!/usr/bin/env python3
"""Writes a small preference set from Tiny Shakespeare for the worked example of docs/training.md
("Worked example: preference tuning the shipped model"): prompt = one line of a speech, chosen =
the true next line of that speech, rejected = a line drawn from elsewhere in the corpus. The
speeches of the last tenth of the corpus are held out.

    python3 scripts/shakespeare_prefs.py OUT_DIR [N_TRAIN] [N_HELDOUT]

writes OUT_DIR/train.jsonl and OUT_DIR/heldout.jsonl (fixed seed: the same files every run).
"""
import json
import os
import random
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    out = sys.argv[1]
    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    n_held = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    text = open(os.path.join(ROOT, "data/corpus/tinyshakespeare.txt"), encoding="utf-8").read()
    speeches = [[l for l in block.split("\n")[1:] if l.strip()] for block in text.split("\n\n")]
    speeches = [s for s in speeches if len(s) >= 2]
    cut = len(speeches) * 9 // 10
    all_lines = [l for s in speeches for l in s]
    rng = random.Random(0)

    def pairs(part, n):
        rows = []
        while len(rows) < n:
            s = rng.choice(part)
            i = rng.randrange(len(s) - 1)
            rejected = rng.choice(all_lines)
            if rejected in (s[i], s[i + 1]):
                continue
            rows.append({"prompt": s[i], "chosen": s[i + 1], "rejected": rejected})
        return rows

    os.makedirs(out, exist_ok=True)
    for name, part, n in (("train", speeches[:cut], n_train), ("heldout", speeches[cut:], n_held)):
        with open(os.path.join(out, name + ".jsonl"), "w", encoding="utf-8") as f:
            for r in pairs(part, n):
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
