"""Generates the committed GGUF test fixtures under src/test/resources/fixtures/gguf/.

Independent references for the Java GGUF code (org.sparkquant.format.gguf):

* gguf-py (pip package ``gguf``): its quantizers for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and its dequantizers for every
  type.
* The real ggml / llama.cpp C libraries, when available: ``ggml_quantize_chunk`` (libggml-base) gives the
  reference bytes of every type, with and without an importance matrix, and ``llama_quant_compute_types``
  (libllama) gives llama-quantize's per-tensor type choice for model shapes described by metadata. The libraries
  are the prebuilt CPU binaries of the npm package ``@node-llama-cpp/linux-x64`` (a llama.cpp build); install with

      npm install --prefix /tmp/nlc @node-llama-cpp/linux-x64@3.22.1

  and point GGML_LIB_DIR at ``/tmp/nlc/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64`` (the default).
  Without them only the gguf-py fixtures are regenerated and the ggml ones are left as they are.

Outputs (little-endian binary blobs indexed by small text files, so Java needs no JSON parser):

* ``quant.bin`` + ``quant.tsv``: input rows, importance vectors, expected bytes per (type, row, importance,
  source), gguf-py's dequantization of those bytes, and random blocks with their gguf-py dequantization.
* ``recipes.tsv``: model, ftype, tensor name, ne, ggml type chosen by libllama.

Run: ``/work/venv/bin/python python/gguf_fixtures.py`` from the repository root.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = Path(__file__).resolve().parent.parent / "src/test/resources/fixtures/gguf"
LIB_DIR = Path(os.environ.get("GGML_LIB_DIR", "/tmp/nlc/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"))

LEGACY = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
KQ = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
N = 512


def rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240601)
    r: dict[str, np.ndarray] = {}
    r["normal"] = rng.standard_normal(N) * 0.02
    r["normal_big"] = rng.standard_normal(N) * 3.0
    spikes = rng.standard_normal(N) * 0.01
    spikes[rng.choice(N, 9, replace=False)] = rng.choice([-1.0, 1.0], 9) * rng.uniform(0.5, 1.5, 9)
    r["outliers"] = spikes
    r["zeros"] = np.zeros(N)
    r["constant_pos"] = np.full(N, 0.125)
    r["constant_neg"] = np.full(N, -3.5)
    r["huge"] = rng.standard_normal(N) * 1e30
    r["fp16_overflow"] = rng.standard_normal(N) * 3e6
    r["tiny_subnormal"] = rng.standard_normal(N) * 1e-38
    r["tiny"] = rng.standard_normal(N) * 1e-6
    # exact halves: block 0 makes Q4_0 d = 1 (max -8), block 1 makes Q8_0 d = 1 (amax 127) with .5 ties
    ties = np.zeros(N)
    ties[0:32] = np.concatenate([[-8.0], np.arange(-7.5, 8.0, 0.5)[:31]])
    ties[32:64] = np.concatenate([[127.0], np.arange(-15.5, 15.5, 1.0)[:31]])
    ties[64:96] = np.concatenate([[-16.0], np.arange(-15.5, 16.0, 1.0)[:31]])
    ties[96:128] = np.arange(32) * 0.5  # Q4_1/Q5_1: min 0, integer-or-half steps
    ties[128:] = np.round(rng.standard_normal(N - 128) * 8) / 2
    r["ties"] = ties
    sparse = np.zeros(N)
    sparse[rng.choice(N, 12, replace=False)] = rng.standard_normal(12)
    r["sparse"] = sparse
    r["positive"] = rng.uniform(0.5, 1.0, N)
    mixed = rng.standard_normal(N)
    for s in range(N // 16):
        mixed[16 * s:16 * s + 16] *= 10.0 ** ((s % 12) - 8)
    r["mixed_scales"] = mixed
    r["bf16_like"] = (rng.standard_normal(N) * 0.05).astype(np.float32)
    return {k: v.astype(np.float32) for k, v in r.items()}


def importances() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    imp: dict[str, np.ndarray] = {}
    imp["chi2"] = (rng.standard_normal((64, N)) ** 2).mean(axis=0)
    z = rng.uniform(0.1, 4.0, N)
    z[rng.choice(N, 40, replace=False)] = 0.0
    imp["with_zeros"] = z
    return {k: v.astype(np.float32) for k, v in imp.items()}


class Ggml:
    def __init__(self, d: Path):
        self.base = ctypes.CDLL(str(d / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.base.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                   ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        self.base.ggml_quantize_init.argtypes = [ctypes.c_int]
        self.dir = d

    def quantize(self, t: T, x: np.ndarray, imp: np.ndarray | None) -> np.ndarray:
        self.base.ggml_quantize_init(int(t))
        bs, ts = quants.GGML_QUANT_SIZES[t]
        out = np.zeros(x.size // bs * ts, dtype=np.uint8)
        x = np.ascontiguousarray(x, dtype=np.float32)
        ip = None if imp is None else np.ascontiguousarray(imp, dtype=np.float32)
        n = self.base.ggml_quantize_chunk(int(t), x.ctypes.data, out.ctypes.data, 0, 1, x.size,
                                          None if ip is None else ip.ctypes.data)
        assert n == out.size
        return out


class Blob:
    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, a: np.ndarray) -> tuple[int, int]:
        b = np.ascontiguousarray(a).tobytes()
        off = self.size
        self.parts.append(b)
        self.size += len(b)
        pad = (-self.size) % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        return off, len(b)


def dequant(t: T, b: np.ndarray) -> np.ndarray:
    return quants.dequantize(b.reshape(1, -1), t).reshape(-1).astype(np.float32)


def quant_fixtures(ggml: Ggml | None) -> None:
    blob = Blob()
    lines = ["# kind\tname/type\t...\t(offsets/lengths in bytes into quant.bin)"]
    rs = rows()
    imps = importances()
    for name, x in rs.items():
        off, ln = blob.add(x)
        lines.append(f"row\t{name}\t{x.size}\t{off}")
    for name, w in imps.items():
        off, ln = blob.add(w)
        lines.append(f"importance\t{name}\t{w.size}\t{off}")
    old = read_existing()
    for t in LEGACY + KQ:
        for name, x in rs.items():
            for imp_name in [None] + list(imps):
                if imp_name is not None and t == T.Q8_0:
                    continue
                sources = []
                if t in LEGACY and imp_name is None:
                    sources.append(("gguf-py", quants.quantize(x.reshape(1, -1), t).reshape(-1)))
                if ggml is not None:
                    sources.append(("ggml", ggml.quantize(t, x, None if imp_name is None else imps[imp_name])))
                elif (t.name, name, imp_name or "-") in old:
                    sources.append(("ggml", old[(t.name, name, imp_name or "-")]))
                for src, b in sources:
                    boff, blen = blob.add(b)
                    if imp_name is None:
                        doff, _ = blob.add(dequant(t, b))
                    else:
                        doff = -1
                    lines.append(f"case\t{t.name}\t{name}\t{imp_name or '-'}\t{src}\t{boff}\t{blen}\t{doff}")
    # random blocks: arbitrary codes and scales (finite, modest fp16 scale fields) for the dequantizers
    rng = np.random.default_rng(99)
    for t in LEGACY + KQ:
        bs, ts = quants.GGML_QUANT_SIZES[t]
        nb = 6
        b = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
        h = (rng.standard_normal((nb, 2)) * 0.5).astype(np.float16).view(np.uint8).reshape(nb, 4)
        if t in (T.Q4_0, T.Q5_0, T.Q8_0):
            b[:, 0:2] = h[:, 0:2]
        elif t in (T.Q4_1, T.Q5_1, T.Q4_K, T.Q5_K):
            b[:, 0:4] = h
        elif t == T.Q2_K:
            b[:, 80:84] = h
        elif t == T.Q3_K:
            b[:, 108:110] = h[:, 0:2]
        elif t == T.Q6_K:
            b[:, 208:210] = h[:, 0:2]
        flat = b.reshape(-1)
        boff, blen = blob.add(flat)
        doff, _ = blob.add(dequant(t, flat))
        lines.append(f"random\t{t.name}\t{nb}\t{boff}\t{blen}\t{doff}")
    (OUT / "quant.bin").write_bytes(b"".join(blob.parts))
    (OUT / "quant.tsv").write_text("\n".join(lines) + "\n")
    print(f"quant.bin {blob.size} bytes, {len(lines)} index lines")


def read_existing() -> dict[tuple[str, str, str], np.ndarray]:
    """The ggml bytes of the committed fixtures, kept when the C library is not available."""
    idx = OUT / "quant.tsv"
    if not idx.exists():
        return {}
    data = (OUT / "quant.bin").read_bytes()
    out = {}
    for line in idx.read_text().splitlines():
        f = line.split("\t")
        if f[0] == "case" and f[4] == "ggml":
            off, ln = int(f[5]), int(f[6])
            out[(f[1], f[2], f[3])] = np.frombuffer(data[off:off + ln], dtype=np.uint8).copy()
    return out


# ------------------------------------------------------------------------------------------------ recipes

MODELS = {
    # name: (arch, n_layer, n_head, n_head_kv, n_embd, n_ff, vocab, tied, head_dim)
    "dev-llama2-26m": ("llama", 3, 8, 4, 512, 1536, 32000, True, 64),
    "llama2-7b": ("llama", 32, 32, 32, 4096, 11008, 32000, False, 128),
    "llama3-8b": ("llama", 32, 32, 8, 4096, 14336, 128256, False, 128),
    "llama3-70b": ("llama", 80, 64, 8, 8192, 28672, 128256, False, 128),
    "stories260k": ("llama", 5, 8, 4, 64, 172, 512, True, 8),
    "hidden320": ("llama", 4, 5, 5, 320, 864, 1000, False, 64),
    "qwen2-0.5b": ("qwen2", 24, 14, 2, 896, 4864, 151936, True, 64),
    "qwen3-0.6b": ("qwen3", 28, 16, 8, 1024, 3072, 151936, True, 128),
}

FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11,
          "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18,
          "Q2_K_S": 21, "BF16": 32}


def model_tensors(arch, n_layer, n_head, n_kv, n_embd, n_ff, vocab, tied, hd):
    """GGUF tensors (name, ne in ggml order) as convert_hf_to_gguf writes them for these architectures."""
    t = [("token_embd.weight", [n_embd, vocab]), ("output_norm.weight", [n_embd])]
    if not tied:
        t.append(("output.weight", [n_embd, vocab]))
    if arch == "llama" and n_embd == 4096 and vocab == 128256:
        t.append(("rope_freqs.weight", [hd // 2]))
    q, kv = n_head * hd, n_kv * hd
    for i in range(n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", [n_embd]), (p + "attn_q.weight", [n_embd, q]),
              (p + "attn_k.weight", [n_embd, kv]), (p + "attn_v.weight", [n_embd, kv]),
              (p + "attn_output.weight", [q, n_embd]), (p + "ffn_norm.weight", [n_embd]),
              (p + "ffn_gate.weight", [n_embd, n_ff]), (p + "ffn_up.weight", [n_embd, n_ff]),
              (p + "ffn_down.weight", [n_ff, n_embd])]
        if arch == "qwen2":
            t += [(p + "attn_q.bias", [q]), (p + "attn_k.bias", [kv]), (p + "attn_v.bias", [kv])]
        if arch == "qwen3":
            t += [(p + "attn_q_norm.weight", [hd]), (p + "attn_k_norm.weight", [hd])]
    return t


def sort_key(name: str):
    """llama_model_loader's weight_name_comparer: layer number (-1 outside blocks), then name."""
    layer = -1
    if name.startswith("blk."):
        layer = int(name.split(".")[1])
    return (layer, name)


def recipe_fixtures(d: Path) -> None:
    base = ctypes.CDLL(str(d / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(str(d / "libggml.v0.5.0.so"), mode=ctypes.RTLD_GLOBAL)
    ll = ctypes.CDLL(str(d / "libllama.v0.5.0.so"), mode=ctypes.RTLD_GLOBAL)

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]

    class Desc(ctypes.Structure):
        _fields_ = [("architecture", ctypes.c_char_p)] + [(n, ctypes.c_uint32) for n in
                    "n_embd n_ff n_layer n_head n_head_kv n_expert n_embd_head_k n_embd_head_v".split()]

    class Params(ctypes.Structure):  # llama_model_quantize_params, returned via hidden pointer; 56 bytes used
        _fields_ = [("raw", ctypes.c_ubyte * 512)]

    base.ggml_init.restype = ctypes.c_void_p
    base.ggml_init.argtypes = [InitParams]
    base.ggml_new_tensor.restype = ctypes.c_void_p
    base.ggml_new_tensor.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    base.ggml_set_name.restype = ctypes.c_void_p
    base.ggml_set_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    base.ggml_free.argtypes = [ctypes.c_void_p]
    base.ggml_type_name.restype = ctypes.c_char_p
    base.ggml_type_name.argtypes = [ctypes.c_int]
    ll.llama_model_quantize_default_params.restype = Params
    ll.llama_model_free.argtypes = [ctypes.c_void_p]
    from_meta = getattr(ll, "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc")
    from_meta.restype = ctypes.c_void_p
    from_meta.argtypes = [ctypes.POINTER(Desc)]
    qinit = getattr(ll, "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params")
    qinit.restype = ctypes.c_void_p
    qinit.argtypes = [ctypes.c_void_p, ctypes.POINTER(Params)]
    qfree = getattr(ll, "_Z16llama_quant_freeP19quantize_state_impl")
    qfree.argtypes = [ctypes.c_void_p]
    compute = getattr(ll, "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem")
    compute.restype = None
    compute.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int),
                        ctypes.c_size_t]

    lines = ["# tensors <model> <name:ne0,ne1 ...> (sorted as llama_model_loader does);",
             "# types <model> <ftype> <ggml type per tensor, same order> as chosen by llama.cpp's libllama",
             "# (llama_quant_compute_types of the node-llama-cpp 3.22.1 build; no imatrix)"]
    params = ll.llama_model_quantize_default_params()
    for mname, (arch, nl, nh, nkv, ne, nff, vocab, tied, hd) in MODELS.items():
        desc = Desc(arch.encode(), ne, nff, nl, nh, nkv, 0, hd, hd)
        model = from_meta(ctypes.byref(desc))
        qs = qinit(model, ctypes.byref(params))
        ctx = base.ggml_init(InitParams(1 << 26, None, True))
        tensors = sorted(model_tensors(arch, nl, nh, nkv, ne, nff, vocab, tied, hd), key=lambda t: sort_key(t[0]))
        lines.append(f"model\t{mname}\t{arch}\t{nl}\t{nh}\t{nkv}\t{ne}\t{nff}\t{vocab}\t{str(tied).lower()}\t{hd}")
        lines.append(f"tensors\t{mname}\t" + " ".join(f"{n}:{','.join(map(str, sh))}" for n, sh in tensors))
        ptrs = []
        for name, shape in tensors:
            arr = (ctypes.c_int64 * len(shape))(*shape)
            tp = base.ggml_new_tensor(ctx, 0 if len(shape) == 1 else 1, len(shape), arr)  # 1-D F32, 2-D F16
            base.ggml_set_name(tp, name.encode())
            ptrs.append(tp)
        arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
        res = (ctypes.c_int * len(ptrs))()
        for fname, fid in FTYPES.items():
            with quiet_stderr():
                compute(qs, fid, arr, res, len(ptrs))
            names = [base.ggml_type_name(res[i]).decode().upper() for i in range(len(ptrs))]
            lines.append(f"types\t{mname}\t{fname}\t" + " ".join(names))
        base.ggml_free(ctx)
        qfree(qs)
        ll.llama_model_free(model)
    (OUT / "recipes.tsv").write_text("\n".join(lines) + "\n")
    print(f"recipes.tsv {len(lines)} lines")


class quiet_stderr:
    """Silences the C library's fallback warnings (fd 2) while a call runs."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    have = (LIB_DIR / "libggml-base.so").exists()
    if not have:
        print(f"no ggml libraries in {LIB_DIR}: regenerating the gguf-py fixtures only", file=sys.stderr)
    with np.errstate(all="ignore"):
        quant_fixtures(Ggml(LIB_DIR) if have else None)
    if have:
        recipe_fixtures(LIB_DIR)


if __name__ == "__main__":
    main()
