"""Reads a GGUF file with gguf-py's GGUFReader and reports what it sees, for Java's cross-check tests.

Usage: python python/gguf_check.py FILE.gguf OUTDIR
       python python/gguf_check.py --quantize TYPE ROWLEN IN.f32 OUT.bin   (gguf-py's own quantizer, live checks)

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


def main() -> None:
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
