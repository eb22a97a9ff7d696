#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/: a few small valid files and edge cases
per parser (README.md). The files are committed; rerun this only to change the seeds."""
import gzip
import json
import os
import shutil
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
TINY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "../data/conformance/a_tiny_qknorm_tied/config.json")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def safetensors(tensors, metadata=None, pad_to=8):
    """tensors: list of (name, dtype, shape, bytes). Header padded so data starts at pad_to."""
    header, blob = {}, b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    while (8 + len(h)) % pad_to:
        h += b" "
    return struct.pack("<Q", len(h)) + h + blob


def f16(vals):
    return struct.pack("<%de" % len(vals), *vals)


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors=(), version=3):
    """kvs: list of (key, type, payload bytes); tensors: (name, dims, type, data)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, payload in kvs:
        out += gguf_str(key) + struct.pack("<I", t) + payload
    offset, blob = 0, b""
    for name, dims, t, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, offset)
        pad = (-len(data)) % 32
        blob += data + b"\0" * pad
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % 32)
    return out + blob


def arr(t, fmt, vals):
    return struct.pack("<IQ", t, len(vals)) + b"".join(struct.pack("<" + fmt, v) for v in vals)


def str_arr(vals):
    return struct.pack("<IQ", 8, len(vals)) + b"".join(gguf_str(v) for v in vals)


def tiny_tokenizer():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3, "a": 4, "b": 5, "c": 6, "aa": 7, "bc": 8,
             "ab": 9, "abc": 10}
    for b in range(256):
        vocab["<0x%02X>" % b] = 11 + b
    return {
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<unk>", "special": True},
                         {"id": 1, "content": "<s>", "special": True},
                         {"id": 2, "content": "</s>", "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
                  "vocab": vocab, "merges": ["b c", "a a", "a b", "a bc"]},
    }


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    cfg_text = open(TINY_CONFIG).read()
    cfg = json.loads(cfg_text)

    # safetensors
    put("safetensors_fuzz", "f32_aligned.safetensors",
        safetensors([("w", "F32", [2, 2], f32([1, 2, 3, 4])), ("b", "F32", [2], f32([0.5, -1]))],
                    {"format": "pt"}, pad_to=64))
    put("safetensors_fuzz", "mixed.safetensors",
        safetensors([("h", "F16", [3], f16([1, -2, 0.25])), ("g", "BF16", [2], b"\x80\x3f\x00\x40"),
                     ("i", "I64", [1], struct.pack("<q", 7)), ("u", "U8", [0], b"")]))
    put("safetensors_fuzz", "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")
    put("safetensors_fuzz", "scalar.safetensors", safetensors([("s", "F32", [], f32([3]))]))

    # gguf
    meta = [("general.architecture", 8, gguf_str("openelm")), ("general.name", 8, gguf_str("tiny")),
            ("general.alignment", 4, struct.pack("<I", 32)),
            ("openelm.block_count", 4, struct.pack("<I", 2)),
            ("openelm.context_length", 4, struct.pack("<I", 128)),
            ("openelm.embedding_length", 4, struct.pack("<I", 64)),
            ("openelm.feed_forward_length", 9, arr(5, "i", [32, 256])),
            ("openelm.attention.head_count", 9, arr(5, "i", [2, 4])),
            ("openelm.attention.head_count_kv", 9, arr(5, "i", [1, 2])),
            ("openelm.rope.freq_base", 6, struct.pack("<f", 10000.0)),
            ("openelm.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-6)),
            ("openelm.rope.dimension_count", 4, struct.pack("<I", 16)),
            ("openelm.attention.key_length", 4, struct.pack("<I", 16)),
            ("openelm.attention.value_length", 4, struct.pack("<I", 16)),
            ("tokenizer.ggml.model", 8, gguf_str("llama")),
            ("tokenizer.ggml.tokens", 9, str_arr(["<unk>", "<s>", "</s>", "\u2581a", "b"])),
            ("tokenizer.ggml.scores", 9, arr(6, "f", [0, 0, 0, -1, -2])),
            ("tokenizer.ggml.token_type", 9, arr(5, "i", [2, 3, 3, 1, 1])),
            ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
            ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))]
    put("gguf_fuzz", "openelm_meta.gguf",
        gguf(meta, [("token_embd.weight", [64, 5], 0, f32([0.0] * 320)),
                    ("output_norm.weight", [64], 1, f16([1.0] * 64))]))
    put("gguf_fuzz", "all_types.gguf", gguf([
        ("u8", 0, b"\x01"), ("i8", 1, b"\xff"), ("u16", 2, b"\x02\x00"), ("i16", 3, b"\xfe\xff"),
        ("u32", 4, struct.pack("<I", 3)), ("i32", 5, struct.pack("<i", -3)),
        ("f32", 6, struct.pack("<f", 1.5)), ("bool", 7, b"\x01"), ("str", 8, gguf_str("x")),
        ("u64", 10, struct.pack("<Q", 9)), ("i64", 11, struct.pack("<q", -9)),
        ("f64", 12, struct.pack("<d", 2.5)), ("arr_u8", 9, arr(0, "B", [1, 2, 3])),
        ("arr_arr", 9, struct.pack("<IQ", 9, 1) + arr(4, "I", [1]))]))
    put("gguf_fuzz", "empty_v2.gguf", gguf([], version=2))

    # tokenizer.json (+ NUL + tokenizer_config.json)
    tok = json.dumps(tiny_tokenizer())
    put("tokenizer_json_fuzz", "tiny.json", tok)
    put("tokenizer_json_fuzz", "tiny_with_config.json",
        tok + "\0" + json.dumps({"add_bos_token": False, "bos_token": "<s>"}))
    t = tiny_tokenizer()
    t["model"]["merges"] = [["b", "c"], ["a", "a"]]
    t["normalizer"] = None
    t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"}
    put("tokenizer_json_fuzz", "pair_merges_metaspace.json", json.dumps(t))
    t = tiny_tokenizer()
    t["model"]["dropout"] = 0.0
    t["model"]["continuing_subword_prefix"] = None
    put("tokenizer_json_fuzz", "dropout_zero.json", json.dumps(t))

    # config.json
    put("hf_config_fuzz", "tiny_qknorm_tied.json", cfg_text)
    c = dict(cfg, normalize_qk_projections=False, share_input_output_layers=False,
             num_transformer_layers=1, qkv_multipliers=[1.0], ffn_multipliers=[2.0],
             num_query_heads=[4], num_kv_heads=[4])
    put("hf_config_fuzz", "one_layer.json", json.dumps(c))
    put("hf_config_fuzz", "empty_object.json", "{}")

    # MLX: config.json NUL model.safetensors
    q = dict(cfg, quantization={"group_size": 32, "bits": 4})
    scales = f16([0.5, 0.25, 1.0, 2.0])
    put("mlx_meta_fuzz", "q4_g32.bin", json.dumps(q).encode() + b"\0" + safetensors([
        ("layer.weight", "U32", [2, 8], bytes(range(64))),
        ("layer.scales", "F16", [2, 2], scales), ("layer.biases", "F16", [2, 2], scales),
        ("norm.weight", "F16", [4], f16([1, 1, 1, 1]))], pad_to=64))
    q8 = dict(cfg, quantization={"group_size": 64, "bits": 8})
    put("mlx_meta_fuzz", "q8_g64_bf16.bin", json.dumps(q8).encode() + b"\0" + safetensors([
        ("m.weight", "U32", [1, 16], bytes(range(64))),
        ("m.scales", "BF16", [1, 1], b"\x80\x3f"), ("m.biases", "BF16", [1, 1], b"\x00\x00")]))
    put("mlx_meta_fuzz", "hf_no_quant.bin", cfg_text.encode() + b"\0" + struct.pack("<Q", 2) + b"{}")

    # CoreNet YAML
    put("train_yaml_fuzz", "general_gpt.yaml", """\
taskname: '+ [fuzz]'
common:
  run_label: "train"
  accum_freq: 1
  log_freq: 1
  save_interval_freq: 10
  mixed_precision: false
dataset:
  train_batch_size0: 2
  language_modeling:
    sequence_length: 16
    min_tokens_per_text: 4
    min_characters_per_text: 8
    general_lm:
      train_data_info:
        - file_name: data/train-{file_id:05d}.jsonl
          text_key: text
          file_id_range: [0, 2]
model:
  language_modeling:
    name: general_gpt
    general_gpt:
      model_dim: 64
      num_transformer_layers: 2
      head_dim: 16
      num_gqa_groups: 2
      vocab_size: 256
      max_context_length: 128
      ffn_multipliers: [0.5, 4.0]
      qkv_multipliers: [0.5, 1.0]
optim:
  name: adamw
  weight_decay: 0.1
  adamw:
    beta1: 0.9
    beta2: 0.95
scheduler:
  name: cosine
  max_iterations: 20
  warmup_iterations: 2
  cosine:
    max_lr: 0.001
    min_lr: 0.0001
elm:
  max_steps: 5
  val_fraction: 0.1
""")
    put("train_yaml_fuzz", "preset_anchor.yaml", """\
base: &b
  max_lr: 0.0024
model:
  language_modeling:
    name: general_gpt
    general_gpt:
      model_name: openelm-270M
scheduler:
  name: cosine
  cosine: *b
dataset:
  language_modeling:
    general_lm:
      train_data_info:
        - file_name: $HOME/x.txt
ddp:
  enable: true
""")
    put("train_yaml_fuzz", "empty.yaml", "")

    # datasets: byte 0 = kind (0 text, 1 jsonl, 2 token shard, 3 cache, 4 jsonl.gz, 5 txt.zst),
    # byte 1 = options
    put("dataset_fuzz", "text_packed", b"\x00\x02" + "Hello world.\n\nA second document, caf\u00e9.\n".encode())
    put("dataset_fuzz", "text_documents_cache", b"\x00\xd5" + b"one two three four five six seven eight nine ten eleven")
    put("dataset_fuzz", "jsonl", b"\x01\x03" + b'{"text": "first doc"}\n{"text": "second"}\n\n{"other": 1}\n')
    shard = struct.pack("<3i", 20240520, 1, 6) + b"\0" * (1024 - 12) + struct.pack("<6H", 1, 30, 40, 2, 50, 60)
    put("dataset_fuzz", "token_shard", b"\x02\x84" + shard)
    put("dataset_fuzz", "jsonl_gz", b"\x04\x03" + gzip.compress(
        b'{"text": "first doc"}\n{"text": "second"}\n', mtime=0))
    # A zstd frame of "Hello zstd world.\n" (zstd -19 --no-check; the stdlib has no zstd).
    put("dataset_fuzz", "text_zst", b"\x05\x02" + bytes.fromhex(
        "28b52ffd0068910000" + b"Hello zstd world.\n".hex()))
    w, n = 5, 2
    # the cache: magic, u32 width, u32 reserved, u64 samples, 3 x u64 stats, padded to 64 bytes
    put("dataset_fuzz", "cache", b"\x03\x00" + b"ELMSMPL1" + struct.pack("<I", w) + b"\0" * 4 +
        struct.pack("<4Q", n, 1, 0, 10) + b"\0" * 16 + struct.pack("<10i", *range(10)))

    # request bodies: byte 0 = route (0 completions, 1 chat, 2 tokenize, 3 detokenize)
    put("openai_request_fuzz", "completion", "\x00" + json.dumps({
        "model": "elm", "prompt": "Once upon", "max_tokens": 8, "temperature": 0.7, "top_p": 0.9,
        "stop": ["\n", "."], "seed": 3, "logprobs": 2, "echo": True, "logit_bias": {"13": -100},
        "stream": True, "stream_options": {"include_usage": True}}))
    put("openai_request_fuzz", "completion_ids_batch", "\x00" + json.dumps({"prompt": [[1, 2, 3], "x"], "n": 1}))
    put("openai_request_fuzz", "chat", "\x01" + json.dumps({
        "model": "elm", "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_completion_tokens": 4, "top_k": 40, "min_p": 0.05, "frequency_penalty": 0.5,
        "presence_penalty": 0.1, "repetition_penalty": 1.1}))
    put("openai_request_fuzz", "tokenize", "\x02" + json.dumps({"content": "Hello", "add_special": True, "with_pieces": True}))
    put("openai_request_fuzz", "detokenize", "\x03" + json.dumps({"tokens": [1, 15043, 2]}))
    put("openai_request_fuzz", "chat_json_schema", "\x01" + json.dumps({
        "messages": [{"role": "user", "content": "JSON"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "maxLength": 4},
                                             "b": {"enum": [1, "x", None]}},
            "required": ["a"], "additionalProperties": False}}}}))
    put("openai_request_fuzz", "chat_tools", "\x01" + json.dumps({
        "messages": [{"role": "user", "content": "Weather?"},
                     {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1",
                      "type": "function", "function": {"name": "w", "arguments": "{\"c\": \"x\"}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "w", "description": "weather",
                   "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}}],
        "tool_choice": "required"}))
    put("openai_request_fuzz", "completion_grammar", "\x00" + json.dumps({
        "prompt": "x", "grammar": "root ::= [a-z]+ (\",\" [a-z]+)*"}))

    # grammar_fuzz: byte 0 even = GBNF text, odd = a JSON schema
    put("grammar_fuzz", "gbnf_json", "\x00" + """root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\\"" ( [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\\n" [ \\t]{0,20}
# {"a": [1, "x"]}
""")
    put("grammar_fuzz", "gbnf_misc", "\x00root ::= .{2,4} \"\\u00e9\" [^a-c\\]]* x?\nx ::= (\"a\" | \"b\")+ # c\n")
    put("grammar_fuzz", "schema_person", "\x01" + json.dumps({
        "$defs": {"node": {"type": "object", "properties": {"v": {"const": 1},
                  "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}}},
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 8},
                       "age": {"type": ["integer", "null"]}, "x": {"type": "number"},
                       "ok": {"type": "boolean"}, "tree": {"$ref": "#/$defs/node"},
                       "tag": {"enum": ["a", 2, None]}, "any": {"anyOf": [{"type": "string"}, {}]},
                       "map": {"type": "object", "additionalProperties": {"type": "integer"}}},
        "required": ["name"], "additionalProperties": False}))

    # chat template: byte 0 = options, then messages = role byte + content, NUL separated
    put("chat_template_fuzz", "conversation", b"\x03\x00You are helpful.\0\x01Hello <s> there\0\x02Hi!\0\x01\xc3\xa9t\xc3\xa9?")
    put("chat_template_fuzz", "special", b"\x0f\x01</s><|user|>\n<unk>\0\x03bad role")
    put("chat_template_fuzz", "empty", b"\x02")

    # post-training rows: byte 0 = options (bit 0 preference rows; chat_dataset.h)
    put("posttrain_data_fuzz", "chat", b"\x0e" + json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}]}).encode() + b"\n\n" + b'{"messages": []}\n')
    put("posttrain_data_fuzz", "preference_ultrafeedback", b"\x1f" + json.dumps({
        "prompt": "2+2?", "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]}).encode() + b"\n")
    put("posttrain_data_fuzz", "preference_strings", b"\x23" + json.dumps({
        "prompt": "a long prompt that needs truncating from the left", "chosen": "yes </s>",
        "rejected": "no"}).encode() + b"\n")

    # hub answers: byte 0 even = a model description (GET /api/models/{repo}/revision/{rev}), with
    # --include '*.gguf' when byte 0 is 2 mod 4; odd = header values (ETag, size), one per line
    sha = "0123456789abcdef0123456789abcdef01234567"
    put("hub_api_fuzz", "model_info", "\x00" + json.dumps({"id": "apple/OpenELM-270M", "sha": sha, "siblings": [
        {"rfilename": ".gitattributes"}, {"rfilename": "config.json"}, {"rfilename": "model.safetensors"},
        {"rfilename": "generation_config.json"}, {"rfilename": "sub/tokenizer.json"}]}))
    put("hub_api_fuzz", "gguf_repo", "\x02" + json.dumps({"sha": sha, "siblings": [
        {"rfilename": "m-Q4_K_M.gguf"}, {"rfilename": "README.md"}]}))
    put("hub_api_fuzz", "headers", "\x01W/\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n4096\n")

    # eval data: byte 0 = task index in AllTasks order (255: a bare Python literal), byte 1 = shots
    # (mod 4); the rest is the task's data file
    arc = json.dumps({"question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
                      "answerKey": "B"})
    put("eval_data_fuzz", "arc_hf", b"\x00\x01" + (arc + "\n" + arc.replace("Q?", "R?") + "\n").encode())
    put("eval_data_fuzz", "winogrande_hf", b"\x06\x01" + (json.dumps(
        {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "1"}) + "\n").encode() * 3)
    put("eval_data_fuzz", "mmlu", b"\x08\x02" + (json.dumps(
        {"question": " q ", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 2}) + "\n").encode() * 3)
    put("eval_data_fuzz", "race", b"\x0a\x00" + (json.dumps({"article": "A.", "problems": repr(
        [{"answer": "A", "options": ["o1", "o2", "o3", "o4"], "question": "q  _  ."},
         {"answer": "C", "options": ["p1", "p2", "p3", "p4"], "question": "Why?"}])}) + "\n").encode())
    put("eval_data_fuzz", "truthfulqa", b"\x09\x00" + (json.dumps({"question": "q", "mc2_targets": {
        "choices": ["t", "f"], "labels": [1, 0]}}) + "\n").encode())
    put("eval_data_fuzz", "mmlu_csv", b"\x08\x05" + b'q,a,b,"c, d","e ""f""",B\r\n"multi\nline",1,2,3,4,A\n')
    put("eval_data_fuzz", "crows_csv", b"\x0b\x04" + b',sent_more,sent_less\n0,"A, b.",C d.\n1,x,y\n')
    put("eval_data_fuzz", "py_literal", b"\xff\x00" + "[{'a': \"it's\\n\\x41\\u00e9\", 'b': (1, -2.5e3, True, None)}]".encode())


if __name__ == "__main__":
    sys.exit(main())
