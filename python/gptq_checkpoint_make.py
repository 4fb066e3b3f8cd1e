"""Writes small GPTQ checkpoints in the AutoGPTQ / GPTQModel on-disk layout, for sparkquant's GPTQ reader tests.

Each checkpoint is a one-layer llama (hidden 64, FFN 128, 4 heads / 2 KV heads, vocab 32, fp16, tied embeddings) whose
seven linear layers hold random integer codes, zero points, scales and g_idx, packed with the published packing
(AutoGPTQ's QuantLinear.pack row loop on uint32: 32/bits fields per word along the input dimension for qweight and
along the output dimension for qzeros, and the 3-bit layout where 32 values share 3 words). Variants cover 2/3/4/8
bits, sym and asym, checkpoint_format gptq (v1: stored zero - 1) and gptq_v2 (stored zero), act-order (desc_act) g_idx,
group_size -1 and a group size that does not divide in_features, fp16 / fp32 / bf16 scales, the three places a
quantization config can live (quantize_config.json, quant_config.json with the w_bit / q_group_size synonyms,
config.json["quantization_config"]), missing sym / checkpoint_format keys, GPTQModel's `dynamic` (a "-:" excluded
module stored dense, a "+:" override to 8 bits / group 64) and GPTQModel's lm_head=true (untied, quantized lm_head).

Next to each checkpoint, expected.json gives for every linear module the sha256 of its dense weight as float32
little-endian [out, in], computed from the codes *before* packing:
    W[n, k] = scale[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n])        (float32; exact for fp16 scales)
so a reader that unpacks correctly reproduces it bit for bit.

Usage:
    python python/gptq_checkpoint_make.py OUT_DIR [--set fixture|all] [--seed 1234]
`--set fixture` (default) writes the eleven variants committed under src/test/resources/fixtures/format-gptq/autogptq/;
`--set all` writes every combination of bits x {sym v1, asym v2, asym v1} x desc_act x group size (Java's python
cross-check test uses it). Needs numpy, torch, safetensors.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HIDDEN, FFN, HEADS, KV_HEADS, VOCAB = 64, 128, 4, 2, 32
HEAD_DIM = HIDDEN // HEADS
LAYERS = 1


def modules():
    """(name, in_features, out_features) of every linear layer, HF llama naming."""
    out = []
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj", HIDDEN, HEADS * HEAD_DIM),
            (p + "self_attn.k_proj", HIDDEN, KV_HEADS * HEAD_DIM),
            (p + "self_attn.v_proj", HIDDEN, KV_HEADS * HEAD_DIM),
            (p + "self_attn.o_proj", HEADS * HEAD_DIM, HIDDEN),
            (p + "mlp.gate_proj", HIDDEN, FFN),
            (p + "mlp.up_proj", HIDDEN, FFN),
            (p + "mlp.down_proj", FFN, HIDDEN),
        ]
    return out


def pack_rows(values, bits):
    """Packs uint32 values [R, C] along axis 0 into [R*bits/32, C] (AutoGPTQ's qweight loop)."""
    values = values.astype(np.uint32)
    rows = values.shape[0] * bits // 32
    packed = np.zeros((rows, values.shape[1]), dtype=np.uint32)
    i = 0
    row = 0
    while row < rows:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                packed[row] |= values[j] << np.uint32(bits * (j - i))
            i += 32 // bits
            row += 1
        elif bits == 3:
            for j in range(i, i + 10):
                packed[row] |= values[j] << np.uint32(3 * (j - i))
            i += 10
            packed[row] |= values[i] << np.uint32(30)
            row += 1
            packed[row] |= (values[i] >> np.uint32(2)) & np.uint32(1)
            i += 1
            for j in range(i, i + 10):
                packed[row] |= values[j] << np.uint32(3 * (j - i) + 1)
            i += 10
            packed[row] |= values[i] << np.uint32(31)
            row += 1
            packed[row] |= (values[i] >> np.uint32(1)) & np.uint32(3)
            i += 1
            for j in range(i, i + 10):
                packed[row] |= values[j] << np.uint32(3 * (j - i) + 2)
            i += 10
            row += 1
        else:
            raise ValueError(bits)
    return packed


def pack_cols(values, bits):
    """Packs uint32 values [R, C] along axis 1 into [R, C*bits/32] (AutoGPTQ's qzeros loop)."""
    return pack_rows(values.T, bits).T.copy()


def as_int32(a):
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int32))


def sha256_f32(w):
    return hashlib.sha256(np.ascontiguousarray(w, dtype="<f4").tobytes()).hexdigest()


def quant_module(rng, name, k, n, bits, group_size, sym, fmt, desc_act, scale_dtype):
    maxq = 2 ** bits - 1
    g = k if group_size == -1 else group_size
    groups = (k + g - 1) // g
    q = rng.integers(0, maxq + 1, size=(k, n), dtype=np.int64)
    if sym:
        z = np.full((groups, n), (maxq + 1) // 2, dtype=np.int64)
    elif fmt == "gptq":
        z = rng.integers(1, maxq + 1, size=(groups, n), dtype=np.int64)  # v1 cannot store a zero of 0
    else:
        z = rng.integers(0, maxq + 1, size=(groups, n), dtype=np.int64)
        z[0, 0] = 0
        z[-1, -1] = maxq
    scales = torch.from_numpy(rng.uniform(0.002, 0.05, size=(groups, n)).astype(np.float32)).to(scale_dtype)
    if desc_act:
        perm = rng.permutation(k)
        invperm = np.argsort(perm)
        g_idx = (invperm // g).astype(np.int32)
    else:
        g_idx = (np.arange(k) // g).astype(np.int32)
    stored_z = z - 1 if fmt == "gptq" else z
    assert stored_z.min() >= 0
    tensors = {
        name + ".qweight": as_int32(pack_rows(q, bits)),
        name + ".qzeros": as_int32(pack_cols(stored_z, bits)),
        name + ".scales": scales.contiguous(),
        name + ".g_idx": torch.from_numpy(g_idx),
    }
    s = scales.float().numpy()
    w = s[g_idx, :] * (q - z[g_idx, :]).astype(np.float32)  # [k, n]
    dense = np.ascontiguousarray(w.T.astype(np.float32))  # [n, k]
    return tensors, dense


def write_variant(out_dir, v, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    scale_dtype = {"f16": torch.float16, "f32": torch.float32, "bf16": torch.bfloat16}[v.get("scales", "f16")]
    dynamic = v.get("dynamic")
    tensors = {
        "model.embed_tokens.weight": torch.from_numpy(rng.normal(0, 1, (VOCAB, HIDDEN)).astype(np.float16)),
        "model.norm.weight": torch.from_numpy((1 + rng.normal(0, 0.05, HIDDEN)).astype(np.float16)),
    }
    for i in range(LAYERS):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"model.layers.{i}.{norm}.weight"] = torch.from_numpy(
                (1 + rng.normal(0, 0.05, HIDDEN)).astype(np.float16))
    expected = {}
    linear = modules() + ([("lm_head", HIDDEN, VOCAB)] if v.get("lm_head") else [])
    for name, k, n in linear:
        bits, group_size, excluded = v["bits"], v["group_size"], False
        if dynamic:
            import re
            for pattern, overrides in sorted(dynamic.items(), key=lambda e: not e[0].startswith("-:")):
                if pattern.startswith("-:"):
                    if re.match(pattern[2:], name):
                        excluded = True
                        break
                elif re.match(pattern.removeprefix("+:"), name):
                    bits = overrides.get("bits", bits)
                    group_size = overrides.get("group_size", group_size)
                    break
        if excluded:
            w = rng.normal(0, 0.05, (n, k)).astype(np.float16)
            tensors[name + ".weight"] = torch.from_numpy(w)
            expected[name] = {"quantized": False, "sha256": sha256_f32(w.astype(np.float32))}
            continue
        t, dense = quant_module(rng, name, k, n, bits, group_size, v["sym"], v["format"], v["desc_act"], scale_dtype)
        tensors.update(t)
        expected[name] = {"quantized": True, "bits": bits, "group_size": group_size, "sha256": sha256_f32(dense),
                          "sum": float(dense.astype(np.float64).sum())}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "vocab_size": VOCAB, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
        "tie_word_embeddings": not v.get("lm_head", False),
        "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2,
    }
    # AutoGPTQ's BaseQuantizeConfig.to_dict keys
    quant = {"bits": v["bits"], "group_size": v["group_size"], "damp_percent": 0.01, "desc_act": v["desc_act"],
             "static_groups": False, "sym": v["sym"], "true_sequential": True, "model_name_or_path": None,
             "model_file_base_name": "model", "quant_method": "gptq", "checkpoint_format": v["format"]}
    if dynamic or v.get("lm_head"):
        quant.update({"dynamic": dynamic, "lm_head": bool(v.get("lm_head")), "pack_dtype": "int32",
                      "meta": {"quantizer": ["gptqmodel:2.2.0"], "damp_percent": 0.01, "mse": 0.0}})
    if v.get("omit_sym"):
        del quant["sym"]
    if v.get("omit_format"):
        del quant["checkpoint_format"]
    where = v.get("where", "quantize_config")
    if where == "quantize_config":
        with open(os.path.join(out_dir, "quantize_config.json"), "w") as f:
            json.dump(quant, f, indent=2)
    elif where == "quant_config":
        quant["w_bit"] = quant.pop("bits")  # synonyms of older tools
        quant["q_group_size"] = quant.pop("group_size")
        with open(os.path.join(out_dir, "quant_config.json"), "w") as f:
            json.dump(quant, f, indent=2)
    else:
        config["quantization_config"] = quant
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"variant": v, "seed": seed, "modules": expected}, f, indent=1, sort_keys=True)


FIXTURE = [
    dict(name="b4_sym_gptq_g32", bits=4, sym=True, format="gptq", desc_act=False, group_size=32),
    dict(name="b4_asym_gptqv2_g32_act", bits=4, sym=False, format="gptq_v2", desc_act=True, group_size=32,
         where="quant_config"),
    dict(name="b4_asym_gptq_g32", bits=4, sym=False, format="gptq", desc_act=False, group_size=32),
    dict(name="b3_sym_gptq_g32_act", bits=3, sym=True, format="gptq", desc_act=True, group_size=32, where="config"),
    dict(name="b3_asym_gptqv2_gall", bits=3, sym=False, format="gptq_v2", desc_act=False, group_size=-1),
    dict(name="b2_asym_gptqv2_g64", bits=2, sym=False, format="gptq_v2", desc_act=False, group_size=64),
    dict(name="b2_sym_gptq_g16_nokeys", bits=2, sym=True, format="gptq", desc_act=False, group_size=16,
         omit_sym=True, omit_format=True),
    dict(name="b8_sym_gptq_gall_act_f32", bits=8, sym=True, format="gptq", desc_act=True, group_size=-1,
         scales="f32"),
    dict(name="b8_asym_gptqv2_g48_bf16", bits=8, sym=False, format="gptq_v2", desc_act=False, group_size=48,
         scales="bf16"),
    dict(name="b4_sym_gptq_g32_dynamic", bits=4, sym=True, format="gptq", desc_act=False, group_size=32,
         dynamic={"+:.*up_proj": {"bits": 8, "group_size": 64}, "-:.*down_proj": {}}),
    dict(name="b4_sym_gptq_g32_lmhead", bits=4, sym=True, format="gptq", desc_act=False, group_size=32,
         lm_head=True),
]


def all_variants():
    out = []
    for bits in (2, 3, 4, 8):
        for sym, fmt in ((True, "gptq"), (False, "gptq_v2"), (False, "gptq")):
            for desc_act in (False, True):
                for group_size in (32, -1):
                    tag = f"b{bits}_{'sym' if sym else 'asym'}_{fmt.replace('_', '')}_g{group_size}" \
                          f"{'_act' if desc_act else ''}".replace("g-1", "gall")
                    out.append(dict(name=tag, bits=bits, sym=sym, format=fmt, desc_act=desc_act,
                                    group_size=group_size))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--set", choices=["fixture", "all"], default="fixture")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    variants = FIXTURE if args.set == "fixture" else all_variants()
    for i, v in enumerate(variants):
        write_variant(os.path.join(args.out, v["name"]), v, args.seed + i)
    print(json.dumps({"written": [v["name"] for v in variants]}))


if __name__ == "__main__":
    sys.exit(main())
