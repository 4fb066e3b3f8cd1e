"""Independent check of a GPTQ checkpoint written by sparkquant, the way AutoGPTQ / GPTQModel's torch path reads it.

For every module with a `qweight`, the codes and zero points are unpacked with the published shift tables
(2/4/8 bits: shifts 0, bits, 2*bits, ...; 3 bits: the three 12-entry tables with the fix-ups of values 10 and 21 that
straddle words), v1 zero points (`checkpoint_format` "gptq") get +1 and are masked, and the dense weight is
    W = scales[g_idx] * (q - zeros[g_idx])         (float32, transposed to [out, in])
Checks, each reported by name:
  --expect FILE   a safetensors file of float32 [out, in] weights keyed by module name (what Java's
                  QuantizedLinear.dequantize() gave): max |W - expected| must be 0;
  --source DIR    the unquantized source checkpoint: every tensor that is not a quantized module's weight/bias must be
                  byte-identical in the checkpoint (raw bytes and header dtype/shape, read without any library), a
                  quantized module's bias must equal torch's fp16 cast of the source bias, and every module excluded
                  by a "-:" dynamic rule must keep its dense weight;
  --logits IDS OUT  transformers' logits (fp32) of the token ids in IDS (little-endian int32, one sequence) written to
                  OUT (little-endian float32 [len, vocab]), computed by the model class of config.json over the
                  dequantized weights (dense in the hub's layout, quantization_config dropped): the checkpoint as any
                  GPTQ loader evaluates it, without needing a GPTQ kernel (GPTQModel, which transformers' GPTQ
                  loading requires, does not install on this CPU-only machine);
  always          quantize_config.json equals config.json["quantization_config"], checkpoint_format is gptq_v2 iff
                  sym is false, tensor dtypes/shapes match bits and group_size, g_idx is within [0, G).
Prints one JSON object (per-module sha256 of W as float32 little-endian, max_abs_diff, counts, errors) and exits 1 if
any check failed.

Usage:
    python python/gptq_checkpoint_check.py CHECKPOINT_DIR [--expect FILE.safetensors] [--source SOURCE_DIR]
        [--logits IDS.bin OUT.f32]
Needs torch and safetensors (and transformers for --logits).
"""

import argparse
import hashlib
import json
import os
import re
import struct
import sys

import torch
from safetensors import safe_open


def raw_tensors(directory):
    """{name: (dtype, shape, bytes)} straight from the safetensors headers and data of every shard."""
    out = {}
    for f in sorted(os.listdir(directory)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(directory, f), "rb") as fh:
            data = fh.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            out[name] = (info["dtype"], tuple(info["shape"]), data[base + b:base + e])
    return out


def metadata(directory):
    metas = {}
    for f in sorted(os.listdir(directory)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(directory, f), "pt") as st:
                metas[f] = st.metadata()
    return metas


def load_tensors(directory):
    tensors = {}
    for f in sorted(os.listdir(directory)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(directory, f), "pt") as st:
                for k in st.keys():
                    tensors[k] = st.get_tensor(k)
    return tensors


def quant_config(directory):
    """AutoGPTQ / GPTQModel lookup order and synonyms."""
    for name in ("quantize_config.json", "quant_config.json"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            with open(p) as f:
                cfg = json.load(f)
            break
    else:
        with open(os.path.join(directory, "config.json")) as f:
            cfg = json.load(f)["quantization_config"]
    cfg = dict(cfg)
    if "w_bit" in cfg:
        cfg["bits"] = cfg.pop("w_bit")
    if "q_group_size" in cfg:
        cfg["group_size"] = cfg.pop("q_group_size")
    cfg.setdefault("sym", True)
    cfg.setdefault("checkpoint_format", "gptq")
    return cfg


def module_params(cfg, module):
    """None when excluded by a "-:" rule; else (bits, group_size) after "+:" overrides (GPTQModel's dynamic_get)."""
    dynamic = cfg.get("dynamic") or {}
    ordered = sorted(dynamic.items(), key=lambda e: not e[0].startswith("-"))
    for pattern, overrides in ordered:
        if pattern.startswith("-:"):
            if re.match(pattern[2:], module):
                return None
        elif re.match(pattern.removeprefix("+:"), module):
            return overrides.get("bits", cfg["bits"]), overrides.get("group_size", cfg["group_size"])
    return cfg["bits"], cfg["group_size"]


def unpack_along_last(packed, bits, count):
    """int32 [..., count*bits/32] -> int32 [..., count], the torch reference unpacking."""
    lead = packed.shape[:-1]
    if bits in (2, 4, 8):
        per = 32 // bits
        wf = torch.arange(0, 32, bits, dtype=torch.int32)
        v = torch.bitwise_right_shift(packed.unsqueeze(-1).expand(*lead, packed.shape[-1], per), wf)
        v = torch.bitwise_and(v, 2 ** bits - 1)
        return v.reshape(*lead, count)
    assert bits == 3
    wf = torch.tensor([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
                       [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                       [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=torch.int32)
    w = packed.reshape(*lead, packed.shape[-1] // 3, 3, 1).expand(*lead, packed.shape[-1] // 3, 3, 12)
    v = torch.bitwise_right_shift(w, wf)
    v[..., 0, 10] = (v[..., 0, 10] & 0x3) | ((v[..., 1, 0] << 2) & 0x4)
    v[..., 1, 11] = (v[..., 1, 11] & 0x1) | ((v[..., 2, 0] << 1) & 0x6)
    v = v & 0x7
    v = torch.cat([v[..., 0, :11], v[..., 1, 1:12], v[..., 2, 1:11]], dim=-1)
    return v.reshape(*lead, count)


def dequantize(t, prefix, bits, group_size, fmt):
    qweight, qzeros = t[prefix + ".qweight"], t[prefix + ".qzeros"]
    scales, g_idx = t[prefix + ".scales"], t[prefix + ".g_idx"].long()
    k = qweight.shape[0] * 32 // bits
    n = qweight.shape[1]
    groups = scales.shape[0]
    errors = []
    g = k if group_size == -1 else group_size
    if qweight.dtype != torch.int32 or qzeros.dtype != torch.int32 or t[prefix + ".g_idx"].dtype != torch.int32:
        errors.append(f"{prefix}: qweight/qzeros/g_idx must be int32")
    if groups != (k + g - 1) // g or tuple(qzeros.shape) != (groups, n * bits // 32) or tuple(scales.shape) != (groups, n):
        errors.append(f"{prefix}: shapes qweight {tuple(qweight.shape)} qzeros {tuple(qzeros.shape)} scales "
                      f"{tuple(scales.shape)} do not fit {bits} bits, group_size {group_size}")
    if g_idx.numel() != k or int(g_idx.min()) < 0 or int(g_idx.max()) >= groups:
        errors.append(f"{prefix}: g_idx outside [0, {groups})")
    # qweight packs along rows: unpack the transposed [n, rows] along its last dim, back to [k, n]
    q = unpack_along_last(qweight.t().contiguous(), bits, k).t()
    z = unpack_along_last(qzeros, bits, n)
    if fmt == "gptq":
        z = torch.bitwise_and(z + 1, 2 ** bits - 1)
    w = scales.float()[g_idx] * (q.float() - z.float()[g_idx])  # [k, n]
    return w.t().contiguous(), z, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--expect")
    ap.add_argument("--source")
    ap.add_argument("--logits", nargs=2)
    args = ap.parse_args()

    errors = []
    cfg = quant_config(args.checkpoint)
    with open(os.path.join(args.checkpoint, "config.json")) as f:
        model_config = json.load(f)
    qc_path = os.path.join(args.checkpoint, "quantize_config.json")
    if os.path.exists(qc_path):
        with open(qc_path) as f:
            if json.load(f) != model_config.get("quantization_config"):
                errors.append("quantize_config.json differs from config.json quantization_config")
    if (cfg["checkpoint_format"] == "gptq_v2") == bool(cfg["sym"]):
        errors.append(f"checkpoint_format {cfg['checkpoint_format']} with sym={cfg['sym']}")
    for name, meta in metadata(args.checkpoint).items():
        if meta != {"format": "pt"}:
            errors.append(f"{name}: metadata {meta}")

    t = load_tensors(args.checkpoint)
    expect = load_tensors_file(args.expect) if args.expect else None
    report = {}
    mid = {}
    for prefix in sorted(k[:-len(".qweight")] for k in t if k.endswith(".qweight")):
        params = module_params(cfg, prefix)
        if params is None:
            errors.append(f"{prefix}: has a qweight but is excluded by dynamic")
            continue
        bits, group_size = params
        w, z, errs = dequantize(t, prefix, bits, group_size, cfg["checkpoint_format"])
        errors += errs
        if cfg["sym"] and not bool((z == 2 ** (bits - 1)).all()):
            errors.append(f"{prefix}: sym but zero points are not {2 ** (bits - 1)}")
        entry = {"bits": bits, "sha256": hashlib.sha256(w.numpy().astype("<f4").tobytes()).hexdigest()}
        if expect is not None:
            if prefix not in expect:
                errors.append(f"{prefix}: not in {args.expect}")
            else:
                e = expect[prefix].float()
                if e.shape != w.shape:
                    errors.append(f"{prefix}: shape {tuple(w.shape)} vs expected {tuple(e.shape)}")
                else:
                    diff = float((w - e).abs().max())
                    entry["max_abs_diff"] = diff
                    if diff != 0.0:
                        errors.append(f"{prefix}: max |W - expected| = {diff}")
        report[prefix] = entry
        mid[prefix] = w
    if expect is not None:
        for name in expect:
            if name not in report:
                errors.append(f"{name}: expected a quantized module, found none")

    identical = 0
    if args.source:
        src = raw_tensors(args.source)
        out = raw_tensors(args.checkpoint)
        src_t = load_tensors(args.source)
        for name, (dtype, shape, data) in src.items():
            module = name.rsplit(".", 1)[0]
            if module in mid and name.endswith(".weight"):
                if name in out:
                    errors.append(f"{name}: quantized module still has a dense weight")
                continue
            if module in mid and name.endswith(".bias"):
                b = t.get(name)
                if b is None or b.dtype != torch.float16 or not torch.equal(b, src_t[name].to(torch.float16)):
                    errors.append(f"{name}: bias is not the fp16 cast of the source bias")
                continue
            if name not in out:
                errors.append(f"{name}: missing from the checkpoint")
            elif out[name] != (dtype, shape, data):
                errors.append(f"{name}: differs from the source ({out[name][0]}{list(out[name][1])} vs "
                              f"{dtype}{list(shape)})")
            else:
                identical += 1
        for pattern in (cfg.get("dynamic") or {}):
            if pattern.startswith("-:"):
                for name in src:
                    module = name[:-len(".weight")]
                    if name.endswith(".weight") and re.match(pattern[2:], module) and name not in out:
                        errors.append(f"{module}: excluded by {pattern} but its dense weight is missing")

    if args.logits:
        logits(args.checkpoint, model_config, t, mid, *args.logits)

    print(json.dumps({"quantized": len(report), "dense_identical": identical, "modules": report, "errors": errors},
                     indent=1, sort_keys=True))
    return 1 if errors else 0


def logits(checkpoint, model_config, tensors, dequantized, ids_path, out_path):
    """Dense fp32 weights in a temporary checkpoint directory, loaded by transformers like any model."""
    import tempfile

    import numpy as np
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    dense = {}
    for name, v in tensors.items():
        module, kind = name.rsplit(".", 1)
        if module in dequantized:
            if kind == "bias":
                dense[name] = v.float().contiguous()
            continue
        dense[name] = v.float().contiguous()
    for module, w in dequantized.items():
        dense[module + ".weight"] = w.float().contiguous()
    config = {k: v for k, v in model_config.items() if k != "quantization_config"}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f)
        save_file(dense, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    ids = np.fromfile(ids_path, dtype="<i4")
    with torch.no_grad():
        out = model(torch.tensor(ids, dtype=torch.long)[None, :]).logits[0]
    out.float().numpy().astype("<f4").tofile(out_path)


def load_tensors_file(path):
    with safe_open(path, "pt") as st:
        return {k: st.get_tensor(k) for k in st.keys()}


if __name__ == "__main__":
    sys.exit(main())
