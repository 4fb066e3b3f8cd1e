"""Reads a GGUF file with gguf-py's GGUFReader and reports what it sees, for Java's cross-check tests.

Usage: python python/gguf_check.py FILE.gguf OUTDIR
       python python/gguf_check.py --quantize TYPE ROWLEN IN.f32 OUT.bin   (gguf-py's own quantizer, live checks)
       python python/gguf_check.py --ggml LIBDIR FILE.gguf OUT.json  (ggml's own C parser, gguf_init_from_file,
           from a llama.cpp build such as the npm package @node-llama-cpp/linux-x64; see gguf_fixtures.py)

Writes OUTDIR/summary.json (version, alignment, data offset, every metadata key with its GGUF type and value,
every tensor's name, ne, type, absolute data offset and byte size) and OUTDIR/<index>.f32: each tensor dequantized
by gguf-py (gguf.quants.dequantize) as little-endian float32 in ggml element order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf import quants


def field_value(field):
    v = field.contents()
    if isinstance(v, float):
        return repr(v)  # exact decimal of the float32/float64 value, parsed back by Java
    if isinstance(v, list) and v and isinstance(v[0], float):
        return [repr(x) for x in v]
    return v


def quantize(type_name: str, row_len: int, src: str, dst: str) -> None:
    x = np.fromfile(src, dtype="<f4").reshape(-1, row_len)
    with np.errstate(all="ignore"):
        q = quants.quantize(x, GGMLQuantizationType[type_name])
    np.asarray(q, dtype=np.uint8).tofile(dst)


def ggml_parse(lib_dir: str, path: str, dst: str) -> None:
    import ctypes

    lib = ctypes.CDLL(str(Path(lib_dir) / "libggml-base.so"))

    class Params(ctypes.Structure):
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, Params]
    for name, res in [("gguf_get_version", ctypes.c_uint32), ("gguf_get_alignment", ctypes.c_size_t),
                      ("gguf_get_data_offset", ctypes.c_size_t), ("gguf_get_n_kv", ctypes.c_int64),
                      ("gguf_get_n_tensors", ctypes.c_int64)]:
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.gguf_get_key.restype = ctypes.c_char_p
    lib.gguf_get_key.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_kv_type.restype = ctypes.c_int
    lib.gguf_get_kv_type.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_tensor_name.restype = ctypes.c_char_p
    lib.gguf_get_tensor_name.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_tensor_offset.restype = ctypes.c_size_t
    lib.gguf_get_tensor_offset.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_tensor_type.restype = ctypes.c_int
    lib.gguf_get_tensor_type.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_tensor_size.restype = ctypes.c_size_t
    lib.gguf_get_tensor_size.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_free.argtypes = [ctypes.c_void_p]
    ctx = lib.gguf_init_from_file(path.encode(), Params(True, None))
    if not ctx:
        Path(dst).write_text(json.dumps({"ok": False}))
        return
    out = {"ok": True, "version": lib.gguf_get_version(ctx), "alignment": lib.gguf_get_alignment(ctx),
           "data_offset": lib.gguf_get_data_offset(ctx),
           "kvs": [[lib.gguf_get_key(ctx, i).decode(), lib.gguf_get_kv_type(ctx, i)]
                   for i in range(lib.gguf_get_n_kv(ctx))],
           "tensors": [[lib.gguf_get_tensor_name(ctx, i).decode(), lib.gguf_get_tensor_type(ctx, i),
                        lib.gguf_get_tensor_offset(ctx, i), lib.gguf_get_tensor_size(ctx, i)]
                       for i in range(lib.gguf_get_n_tensors(ctx))]}
    lib.gguf_free(ctx)
    Path(dst).write_text(json.dumps(out))


def main() -> None:
    if sys.argv[1] == "--ggml":
        ggml_parse(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    if sys.argv[1] == "--quantize":
        quantize(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    path, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    r = GGUFReader(path)
    kvs = []
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue  # the reader's own pseudo-fields (version, counts)
        kvs.append({"key": name, "types": [t.name for t in f.types], "value": field_value(f)})
    tensors = []
    for i, t in enumerate(r.tensors):
        tensors.append({"name": t.name, "ne": [int(x) for x in t.shape], "type": t.tensor_type.name,
                        "offset": int(t.data_offset), "bytes": int(t.n_bytes), "elements": int(t.n_elements)})
        if t.tensor_type == GGMLQuantizationType.F32:
            vals = np.asarray(t.data, dtype=np.float32)
        elif t.tensor_type == GGMLQuantizationType.F16:
            vals = np.asarray(t.data).view(np.float16).astype(np.float32)
        else:
            with np.errstate(all="ignore"):
                vals = quants.dequantize(np.asarray(t.data), t.tensor_type)
        vals.astype("<f4").reshape(-1).tofile(out / f"{i}.f32")
    version = int(r.fields["GGUF.version"].parts[-1][0])
    summary = {"version": version, "alignment": int(r.alignment), "data_offset": int(r.data_offset),
               "kvs": kvs, "tensors": tensors}
    (out / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
