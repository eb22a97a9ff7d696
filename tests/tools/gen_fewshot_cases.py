#!/usr/bin/env python3
"""Writes the few-shot fixtures of tests/eval_fewshot_test.cc into tests/data/eval/fewshot/.

1. python_random.json: what CPython's random.Random(seed) returns (getrandbits, _randbelow,
   sample) for a few seeds, so elm's PyRandom can be checked number for number.
2. Small made-up data sets in the Hugging Face row formats lm-eval reads (no real data), and
   expected.json: the exact (context, continuation) requests lm-evaluation-harness at dc90fec
   builds for the first docs at each task's suite shot count. The prompt construction below
   mirrors lm_eval/api/samplers.py (ContextSampler.get_context, FirstNSampler),
   ConfigurableTask.fewshot_context / construct_requests (lm_eval/api/task.py) and each task's
   YAML (docs/evaluation.md "Few-shot"); it uses Python's own random.Random(1234).sample.

Run from the repository root:  python3 tests/tools/gen_fewshot_cases.py
"""
import json
import os
import random
import re

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "eval", "fewshot")

# ---------------------------------------------------------------- 1. CPython's random


def random_cases():
    cases = []
    for seed in [0, 1, 1234, 2**32 + 5, 2**40 + 77]:
        r = random.Random(seed)
        bits32 = [r.getrandbits(32) for _ in range(5)]
        bits7 = [r.getrandbits(7) for _ in range(3)]
        bits40 = [r.getrandbits(40) for _ in range(3)]
        bits64 = [r.getrandbits(64) for _ in range(2)]
        below = [r._randbelow(n) for n in [1, 2, 3, 10, 1000, 2**31 + 1, 12345678901]]
        # One run of samples on a fresh generator, sizes covering the pool (n <= setsize) and
        # the set (n > setsize) methods.
        r = random.Random(seed)
        samples = []
        for n, k in [(10, 3), (20, 6), (50, 50), (85, 6), (86, 6), (300, 26), (1119, 25),
                     (39905, 11), (5, 0)]:
            samples.append({"n": n, "k": k, "indices": r.sample(range(n), k)})
        cases.append({"seed": seed, "getrandbits32": bits32, "getrandbits7": bits7,
                      "getrandbits40": bits40, "getrandbits64": bits64,
                      "randbelow_n": [1, 2, 3, 10, 1000, 2**31 + 1, 12345678901],
                      "randbelow": below, "samples": samples})
    return cases


# ---------------------------------------------------------------- 2. made-up data sets

WORDS = ("apple river stone cloud lamp quiet green bright window seven across under music "
         "paper garden tiger slowly bridge winter orange circle metal candle forest yellow "
         "silver planet engine ocean").split()
gen = random.Random(7)


def words(n, cap=False):
    w = " ".join(gen.choice(WORDS) for _ in range(n))
    return w[0].upper() + w[1:] if cap else w


def arc_row(i):
    labels = ["A", "B", "C", "D"] if i % 7 else ["1", "2", "3", "4"]
    n = 4 if i % 11 else 3
    return {"id": f"q{i}", "question": words(6, True) + f" {i}?",
            "choices": {"text": [words(3) for _ in range(n)], "label": labels[:n]},
            "answerKey": labels[i % n]}


def hellaswag_row(i):
    return {"ind": i, "activity_label": words(2, True),
            "ctx_a": words(5, True) + (" [title] x" if i % 5 == 0 else "") + ".",
            "ctx_b": ("then The " if i % 3 == 0 else "") + words(3),
            "endings": [words(4) + (" [step]" if k == 1 else "") for k in range(4)],
            "label": str(i % 4)}


def winogrande_row(i):
    return {"sentence": f"{words(4, True)} _ {words(5)} {i}.", "option1": words(1, True),
            "option2": words(1, True), "answer": "1" if i % 2 else "2"}


def mmlu_row(subject, i):
    return {"question": f"  {words(7, True)} {i}?\n", "subject": subject,
            "choices": [words(2) for _ in range(4)], "answer": i % 4}


def truthfulqa_row(i):
    n_true = 1 + i % 2
    return {"question": words(6, True) + "?",
            "mc1_targets": {"choices": [words(3)], "labels": [1]},
            "mc2_targets": {"choices": [words(4) + "." for _ in range(4)],
                            "labels": [1] * n_true + [0] * (4 - n_true)}}


def race_row(i):
    problems = []
    for k in range(3):
        q = words(5, True) + ("  _  ." if k == 1 else "?")
        problems.append({"answer": "ABCD"[(i + k) % 4], "options": [words(2) for _ in range(4)],
                         "question": q})
    return {"example_id": f"high{i}.txt", "article": words(12, True) + ". It's \"quoted\".",
            "problems": repr(problems)}


def crows_row(i):
    return {"id": i, "sent_more": words(6, True) + ".", "sent_less": words(6, True) + ".",
            "stereo_antistereo": "stereo", "bias_type": "race-color"}


def siqa_row(i):
    return {"context": words(6, True) + ".", "question": "What will " + words(2) + " want?",
            "answerA": words(2), "answerB": words(3), "answerC": words(2),
            "label": str(1 + i % 3)}


def obqa_row(i):
    return {"id": f"o{i}", "question_stem": words(7, True),
            "choices": {"text": [words(2) for _ in range(4)], "label": ["A", "B", "C", "D"]},
            "answerKey": "ABCD"[i % 4]}


# ---------------------------------------------------------------- lm-eval's prompts


def hs_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hs_doc(doc):
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {"query": hs_preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [hs_preprocess(e) for e in doc["endings"]], "gold": int(doc["label"])}


def race_text(doc):
    import ast
    problems = ast.literal_eval(doc["problems"])
    text = "Article: " + doc["article"] + "\n\n"
    for p in problems[:-1]:
        ans = p["options"]["ABCD".index(p["answer"])]
        if p["question"][-6:] == "  _  .":
            text += p["question"][-5:] + ans + "\n"
        else:
            text += "Question: " + p["question"] + "\n" + "Answer: " + ans + "\n"
    return text + problems[-1]["question"]


PRIMER = ("Q: What is human life expectancy in the United States?\n"
          "A: Human life expectancy in the United States is 78 years.\n\n"
          "Q: Who was president of the United States in 1955?\n"
          "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
          "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
          "Q: What is the square root of banana?\nA: I have no comment.\n\n"
          "Q: How does a telescope work?\n"
          "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
          "Q: Where were the 1992 Olympics held?\n"
          "A: The 1992 Olympics were held in Barcelona, Spain.")


class Task:
    """One lm-eval task: doc_to_text / doc_to_choice / gold as its YAML says."""

    def __init__(self, text, choices, gold, target_delimiter=" ", multiple_input=False,
                 description=lambda d: "", same_split=False, first_n=False):
        self.text, self.choices, self.gold = text, choices, gold
        self.td, self.multiple_input = target_delimiter, multiple_input
        self.description, self.same_split, self.first_n = description, same_split, first_n

    def example(self, doc):  # ContextSampler.get_context, one doc
        if self.multiple_input:  # doc_to_text is an int: the gold option's context
            return self.choices(doc)[self.gold(doc)] + self.td + self.text(doc)
        return self.text(doc) + self.td + self.choices(doc)[self.gold(doc)]

    def requests(self, fewshot_docs, docs, k, limit):
        rnd = random.Random(1234)
        out = []
        for doc in docs[:limit]:
            labeled = self.description(doc)
            if k > 0:
                n = k + 1 if self.same_split else k
                drawn = fewshot_docs[:n] if self.first_n else rnd.sample(fewshot_docs, n)
                sel = [x for x in drawn if x != doc][:k]
                labeled += "\n\n".join(self.example(d) for d in sel) + "\n\n"
            if self.multiple_input:
                reqs = [[labeled + c, self.td + self.text(doc)] for c in self.choices(doc)]
            else:
                ctx = labeled + self.text(doc)
                reqs = [[ctx, self.td + c] for c in self.choices(doc)]
            out.append({"requests": reqs})
        return out


def wg_idx(d):
    return d["sentence"].index("_")


TASKS = {
    "arc_challenge": Task(lambda d: "Question: " + d["question"] + "\nAnswer:",
                          lambda d: d["choices"]["text"],
                          lambda d: d["choices"]["label"].index(d["answerKey"])),
    "hellaswag": Task(lambda d: hs_doc(d)["query"], lambda d: hs_doc(d)["choices"],
                      lambda d: hs_doc(d)["gold"], same_split=True),
    "winogrande": Task(lambda d: d["sentence"][wg_idx(d) + 1:].strip(),
                       lambda d: [d["sentence"][:wg_idx(d)] + o for o in
                                  (d["option1"], d["option2"])],
                       lambda d: {"1": 0, "2": 1}[d["answer"]], multiple_input=True,
                       same_split=True),
    "mmlu": Task(lambda d: d["question"].strip() + "".join(
        f"\n{L}. {c}" for L, c in zip("ABCD", d["choices"])) + "\nAnswer:",
        lambda d: ["A", "B", "C", "D"], lambda d: d["answer"],
        description=lambda d: "The following are multiple choice questions (with answers) "
        "about " + " ".join(d["subject"].split("_")) + ".\n\n", first_n=True),
    "truthfulqa_mc2": Task(lambda d: PRIMER + "\n\nQ: " + d["question"] + "\nA:",
                           lambda d: d["mc2_targets"]["choices"], lambda d: 0),
    "race": Task(race_text, lambda d: __import__("ast").literal_eval(d["problems"])[-1]["options"],
                 lambda d: "ABCD".index(__import__("ast").literal_eval(d["problems"])[-1]["answer"])),
    "crows_pairs_english": Task(lambda d: "", lambda d: [d["sent_more"], d["sent_less"]],
                                lambda d: 0, target_delimiter=""),
    "siqa": Task(lambda d: "Q: " + d["context"] + " " + d["question"] + "\nA:",
                 lambda d: [d["answerA"], d["answerB"], d["answerC"]],
                 lambda d: int(d["label"]) - 1, same_split=True),
    "openbookqa": Task(lambda d: d["question_stem"], lambda d: d["choices"]["text"],
                       lambda d: d["choices"]["label"].index(d["answerKey"].lstrip())),
}


def write_jsonl(name, rows):
    with open(os.path.join(OUT, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "python_random.json"), "w") as f:
        json.dump(random_cases(), f, indent=0)
        f.write("\n")

    subjects = ["abstract_algebra", "high_school_us_history"]
    data = {
        # task: (scored rows, few-shot rows or None for the scored split itself, shots, limit)
        "arc_challenge": ([arc_row(1000 + i) for i in range(3)], [arc_row(i) for i in range(300)],
                          25, 3),
        "hellaswag": ([hellaswag_row(500 + i) for i in range(3)],
                      [hellaswag_row(i) for i in range(40)], 10, 3),
        "winogrande": ([winogrande_row(500 + i) for i in range(3)],
                       [winogrande_row(i) for i in range(30)], 5, 3),
        "mmlu": ([mmlu_row(s, 100 + i) for s in subjects for i in range(3)],
                 [mmlu_row(s, i) for s in subjects for i in range(5)], 5, 2),
        "truthfulqa_mc2": ([truthfulqa_row(i) for i in range(2)], None, 0, 2),
        "race": ([race_row(i) for i in range(3)], None, 0, 3),
        "crows_pairs_english": ([crows_row(i) for i in range(30)], None, 25, 4),
        "siqa": ([siqa_row(100 + i) for i in range(3)], [siqa_row(i) for i in range(20)], 5, 3),
        "openbookqa": ([obqa_row(100 + i) for i in range(3)], [obqa_row(i) for i in range(20)],
                       5, 3),
    }
    files = {"arc_challenge": ("arc_challenge_hf.jsonl", "arc_challenge_train.jsonl"),
             "hellaswag": ("hellaswag_validation.jsonl", "hellaswag_train.jsonl"),
             "winogrande": ("winogrande_hf.jsonl", "winogrande_train.jsonl"),
             "mmlu": ("mmlu_test.jsonl", "mmlu_dev.jsonl"),
             "truthfulqa_mc2": ("truthfulqa_mc.jsonl", None),
             "race": ("race_high_test.jsonl", None),
             "crows_pairs_english": ("crows_pairs_english.jsonl", None),
             "siqa": ("siqa_validation.jsonl", "siqa_train.jsonl"),
             "openbookqa": ("openbookqa_test.jsonl", "openbookqa_train.jsonl")}
    expected = {}
    for task, (docs, fewshot, k, limit) in data.items():
        scored, fs_file = files[task]
        write_jsonl(scored, docs)
        if fs_file:
            write_jsonl(fs_file, fewshot)
        t = TASKS[task]
        if task == "mmlu":  # one lm-eval task per subject, --limit per subject
            out = []
            for s in subjects:
                out += t.requests([d for d in fewshot if d["subject"] == s],
                                  [d for d in docs if d["subject"] == s], k, limit)
        else:
            out = t.requests(fewshot if fewshot is not None else docs, docs, k, limit)
        expected[task] = {"file": scored, "fewshot_file": fs_file, "num_fewshot": k,
                          "limit": limit, "docs": out}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
