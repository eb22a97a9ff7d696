#!/usr/bin/python3
"""Writes the PyTorch .pt fixtures in tests/data/pytorch (docs/formats.md, "PyTorch .pt
checkpoints"), with Debian's python3-torch (apt-get install python3-torch), from the in-repo
conformance checkpoints (and a random mid-sized one):

  python3 tests/tools/make_pytorch_fixtures.py tests/data/conformance tests/data/pytorch \
      tests/fuzz/corpus/pytorch_fuzz

CoreNet-shaped files (apple/corenet corenet/utils/checkpoint_utils.py): model state dicts with
CoreNet's names (HF's without "transformer.", "classifier" for lm_head), a training checkpoint
(model_state_dict in bf16 with CoreNet's padded embedding rows, ema_state_dict, AdamW's
optim_state_dict after one step, iterations, epoch, best_metric, gradient_scaler_state_dict),
views and shared storages, and malformed files elm must reject with a clear error."""
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32"
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def corenet_name(hf):
    if hf.startswith("lm_head."):
        return "classifier." + hf[len("lm_head."):]
    assert hf.startswith("transformer.")
    return hf[len("transformer."):]


def corenet_state(hf_tensors):
    sd = {}
    for k, v in hf_tensors.items():
        if k == "transformer.classifier.weight":  # the decoy of folder b, unused by Apple's code
            continue
        sd[corenet_name(k)] = v
    return sd


def save(obj, path):
    torch.save(obj, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def rewrite_zip(src_bytes, path, edit):
    """Copies a torch.save archive entry by entry through edit(name, data) -> (data, method)."""
    zin = zipfile.ZipFile(io.BytesIO(src_bytes))
    with zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data, method = edit(info.filename, zin.read(info.filename))
            zout.writestr(zipfile.ZipInfo(info.filename), data, compress_type=method)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def make_divisible(v, divisor):
    """OpenELM's make_divisible (configuration_openelm.py), min_value = divisor."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


MID_CONFIG = {
    "activation_fn_name": "swish", "architectures": ["OpenELMForCausalLM"], "bos_token_id": 1,
    "eos_token_id": 2, "ffn_dim_divisor": 16, "ffn_multipliers": [0.5, 2.0], "ffn_with_glu": True,
    "head_dim": 16, "initializer_range": 0.02, "max_context_length": 128, "model_dim": 64,
    "model_type": "openelm", "normalization_layer_name": "rms_norm",
    "normalize_qk_projections": True, "num_gqa_groups": 2, "num_transformer_layers": 4,
    "qkv_multipliers": [0.25, 1.0], "rope_freq_constant": 10000, "rope_max_length": 4096,
    "share_input_output_layers": True, "torch_dtype": "bfloat16", "vocab_size": 256,
}


def mid_train(out):
    """d_mid_corenet_train_bf16.pt and d_mid_config.json: a random OpenELM of MID_CONFIG's
    shape, from its own generator so that the other fixtures do not change."""
    c = dict(MID_CONFIG)
    n, d, hd, g = (c["num_transformer_layers"], c["model_dim"], c["head_dim"],
                   c["num_gqa_groups"])
    lin = lambda lo, hi: [round(float(x), 2) for x in np.linspace(lo, hi, num=n)]
    qkv, ffn = lin(*c["qkv_multipliers"]), lin(*c["ffn_multipliers"])
    heads = [make_divisible(d * m, hd * g) // hd for m in qkv]
    c["num_query_heads"], c["num_kv_heads"] = heads, [h // g for h in heads]
    ffn_dims = [make_divisible(m * d, c["ffn_dim_divisor"]) for m in ffn]
    gen = torch.Generator().manual_seed(25)

    def rand(*shape, std=0.05):
        return torch.randn(*shape, generator=gen) * std

    def norm(k):
        return 1.0 + rand(k, std=0.1)

    # CoreNet pads the embedding rows (32000 -> 32128); here 256 -> 384.
    model = {"token_embeddings.weight": rand(c["vocab_size"] + 128, d)}
    for i in range(n):
        p, q, kv, f = f"layers.{i}.", heads[i], c["num_kv_heads"][i], ffn_dims[i]
        model[p + "attn_norm.weight"] = norm(d)
        model[p + "attn.qkv_proj.weight"] = rand((q + 2 * kv) * hd, d)
        model[p + "attn.q_norm.weight"] = norm(hd)
        model[p + "attn.k_norm.weight"] = norm(hd)
        model[p + "attn.out_proj.weight"] = rand(d, q * hd)
        model[p + "ffn_norm.weight"] = norm(d)
        model[p + "ffn.proj_1.weight"] = rand(2 * f, d)
        model[p + "ffn.proj_2.weight"] = rand(d, f)
    model["norm.weight"] = norm(d)
    params = {k: torch.nn.Parameter(v) for k, v in model.items()}
    decay = [k for k, p in params.items() if p.dim() > 1]
    no_decay = [k for k, p in params.items() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": [params[k] for k in decay], "weight_decay": 0.1,
                              "param_names": decay},
                             {"params": [params[k] for k in no_decay], "weight_decay": 0.0,
                              "param_names": no_decay}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    for _ in range(3):
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    weights = {k: p.detach().clone() for k, p in params.items()}
    train = {
        "iterations": 15000,
        "epoch": 2,
        "model_state_dict": {k: v.to(torch.bfloat16) for k, v in weights.items()},
        "optim_state_dict": opt.state_dict(),
        "best_metric": 3.25,
        "is_interval_ckpt": True,
        "gradient_scaler_state_dict": {"scale": 32768.0, "growth_factor": 2.0,
                                       "backoff_factor": 0.5, "growth_interval": 2000,
                                       "_growth_tracker": 7},
        # The EMA in f32 and without the padding rows, as the tiny checkpoint's.
        "ema_state_dict": {k: (v[:c["vocab_size"]] if k == "token_embeddings.weight" else v)
                           for k, v in weights.items()},
    }
    save(train, os.path.join(out, "d_mid_corenet_train_bf16.pt"))
    with open(os.path.join(out, "d_mid_config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo elm ran code from a pickle",))


def main():
    conf, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    a = read_safetensors(os.path.join(conf, "a_tiny_qknorm_tied", "model.safetensors"))
    b = read_safetensors(os.path.join(conf, "b_tiny_noqknorm_untied", "model.safetensors"))

    # 1. A model file (checkpoint_last.pt-like): f32, CoreNet names.
    save(corenet_state(a), os.path.join(out, "a_tiny_corenet_f32.pt"))

    # 2. An untied model saved from a DDP wrapper ("module." prefixes), lm_head as "classifier".
    save({"module." + k: v for k, v in corenet_state(b).items()},
         os.path.join(out, "b_tiny_corenet_ddp_f32.pt"))

    # 3. Views and shared storages: every tensor equals a's, but is stored as a strided view,
    #    an offset into a larger storage, or a part of a storage another tensor shares.
    sd = {}
    for k, v in corenet_state(a).items():
        sd[k] = v.clone()
    for i in range(2):
        p = f"layers.{i}."
        q, kn = sd[p + "attn.q_norm.weight"], sd[p + "attn.k_norm.weight"]
        both = torch.stack([q, kn])  # one storage, two tensors at offsets 0 and head_dim
        sd[p + "attn.q_norm.weight"], sd[p + "attn.k_norm.weight"] = both[0], both[1]
    w = sd["layers.0.attn.qkv_proj.weight"]
    sd["layers.0.attn.qkv_proj.weight"] = w.t().contiguous().t()  # strides (1, rows)
    w = sd["layers.1.ffn.proj_1.weight"]
    big = torch.cat([torch.randn(3, w.shape[1]), w])  # storage offset 3 rows
    sd["layers.1.ffn.proj_1.weight"] = big[3:]
    w = sd["layers.1.attn.out_proj.weight"]
    every_other = torch.randn(2 * w.shape[0], w.shape[1])
    every_other[::2] = w
    sd["layers.1.attn.out_proj.weight"] = every_other[::2]  # row stride 2 * cols
    w = sd["layers.0.ffn.proj_2.weight"]
    wide = torch.randn(w.shape[0], w.shape[1] + 5)
    wide[:, 2:2 + w.shape[1]] = w
    sd["layers.0.ffn.proj_2.weight"] = wide[:, 2:2 + w.shape[1]]  # a column slice
    assert not sd["layers.0.attn.qkv_proj.weight"].is_contiguous()
    save(sd, os.path.join(out, "a_tiny_corenet_views.pt"))

    # 4. A CoreNet training checkpoint: bf16 weights with the embedding padded as CoreNet pads
    #    its vocabulary (32000 -> 32128; here 256 -> 384), AdamW after one step with CoreNet's
    #    two parameter groups (decay: matrices; no decay: 1-D), EMA weights in f32.
    model = {k: v.clone() for k, v in corenet_state(a).items()}
    emb = model["token_embeddings.weight"]
    model["token_embeddings.weight"] = torch.cat([emb, torch.randn(128, emb.shape[1])])
    params = {k: torch.nn.Parameter(v.clone()) for k, v in model.items()}
    # corenet/modeling/misc/common.py parameter_list: the groups carry "param_names", which
    # optimizer.state_dict() keeps beside the parameter indices.
    decay = [k for k, p in params.items() if p.dim() > 1]
    no_decay = [k for k, p in params.items() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": [params[k] for k in decay], "weight_decay": 0.1,
                              "param_names": decay},
                             {"params": [params[k] for k in no_decay], "weight_decay": 0.0,
                              "param_names": no_decay}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    for p in params.values():
        p.grad = torch.randn_like(p)
    opt.step()
    train = {
        "iterations": 5000,
        "epoch": 1,
        "model_state_dict": {k: v.detach().to(torch.bfloat16) for k, v in model.items()},
        "optim_state_dict": opt.state_dict(),
        "best_metric": float("inf"),
        "is_interval_ckpt": True,
        "gradient_scaler_state_dict": {"scale": 65536.0, "growth_factor": 2.0,
                                       "backoff_factor": 0.5, "growth_interval": 2000,
                                       "_growth_tracker": 0},
        "ema_state_dict": corenet_state(a),
    }
    save(train, os.path.join(out, "a_tiny_corenet_train_bf16.pt"))

    # 4b. The same layout for a mid-sized random OpenELM with layer-wise scaling over 4 layers
    #     (query heads 2, 2, 4, 4; kv heads 1, 1, 2, 2; FFN 32, 64, 96, 128), after three AdamW
    #     steps, with its HF config.json beside it.
    mid_train(out)

    # 5. Malformed files.
    small = io.BytesIO()
    torch.save({"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, small)
    small = small.getvalue()

    def hostile(name, data):
        return (pickle.dumps({"x": Hostile()}, protocol=2) if name.endswith("data.pkl")
                else data), zipfile.ZIP_STORED
    rewrite_zip(small, os.path.join(out, "bad_os_system.pt"), hostile)

    class Unknown:
        pass
    Unknown.__module__, Unknown.__qualname__ = "corenet.secret", "Thing"

    def unknown(name, data):
        if name.endswith("data.pkl"):
            data = data.replace(b"collections\nOrderedDict", b"corenet.secret\nThing0000000")
        return data, zipfile.ZIP_STORED
    rewrite_zip(small, os.path.join(out, "bad_unknown_global.pt"), unknown)

    def short_storage(name, data):
        return (data[:-4] if "/data/" in name else data), zipfile.ZIP_STORED
    rewrite_zip(small, os.path.join(out, "bad_storage_size.pt"), short_storage)

    def deflated(name, data):
        return data, zipfile.ZIP_DEFLATED
    rewrite_zip(small, os.path.join(out, "bad_compressed.pt"), deflated)

    legacy = os.path.join(out, "bad_legacy.pt")
    torch.save({"x": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    print(f"wrote {legacy}")

    # 6. Seeds of the fuzz target (tests/fuzz/pytorch_fuzz.cc): small archives of each kind,
    #    the malformed files above, and a bare pickle.
    if len(sys.argv) > 3:
        seeds = sys.argv[3]
        os.makedirs(seeds, exist_ok=True)
        with open(os.path.join(seeds, "small.pt"), "wb") as f:
            f.write(small)
        x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        both = torch.stack([torch.ones(4), torch.zeros(4)]).to(torch.bfloat16)
        save({"t": x.t(), "row": x[1], "cols": x[:, 1:3], "q": both[0], "k": both[1],
              "h": torch.ones(2, 2, dtype=torch.float16), "i": torch.tensor([1, 2]),
              "s": torch.tensor(3.0)}, os.path.join(seeds, "views.pt"))
        p = torch.nn.Parameter(torch.ones(2, 2))
        o = torch.optim.AdamW([p], lr=0.1)
        p.grad = torch.ones(2, 2)
        o.step()
        save({"iterations": 7, "epoch": 0, "model_state_dict": {"norm.weight": p.detach()},
              "optim_state_dict": o.state_dict(), "best_metric": 1.5,
              "ema_state_dict": {"norm.weight": torch.zeros(2, 2)}},
             os.path.join(seeds, "training.pt"))
        with open(os.path.join(seeds, "plain.pkl"), "wb") as f:
            f.write(pickle.dumps({"a": [1, 2.5, "x", None, True], "b": (-1, 2**40)}, protocol=2))
        for name in os.listdir(out):
            if name.startswith("bad_"):
                with open(os.path.join(out, name), "rb") as src, \
                        open(os.path.join(seeds, name), "wb") as dst:
                    dst.write(src.read())


if __name__ == "__main__":
    main()
