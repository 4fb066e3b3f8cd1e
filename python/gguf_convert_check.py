"""Compares a GGUF file written by sparkquant with what llama.cpp's own convert_hf_to_gguf.py writes for the same
Hugging Face model directory (the converter of the llama.cpp source the npm build 3.22.1 was made from; see
python/gguf_llama.py setup-source), for the Java parity tests of org.sparkquant.format.gguf.

Usage: python python/gguf_convert_check.py MODEL_DIR JAVA.gguf OUTTYPE PRE OUT.json [KEEP.gguf]
  OUTTYPE  the converter's --outtype (f32, f16, bf16, q8_0)
  PRE      the pre-tokenizer name to use when the converter does not know the tokenizer's hash (it raises then:
           small test tokenizers trained with Llama 3's or Qwen's rules have no known hash); "-" for none
  KEEP     where to keep the converter's file (e.g. to run llama-quantize on it); by default it is deleted

Writes OUT.json: {"only_converter": [keys], "only_java": [keys], "differing": {key: [converter, java]},
"tensors": {"converter": [[name, type, shape]...], "java": [...]}, "data_differs": [names]} where values are
summarised (type names, lengths, and for arrays the first differing index). Runs the converter in-process with
LLAMA_CPP_SRC on sys.path (its gguf-py included), so it needs torch, transformers, numpy, sentencepiece.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

SRC = Path(os.environ.get("LLAMA_CPP_SRC", "/tmp/llamacpp-src"))


def convert(model_dir: str, outtype: str, pre: str, out: Path) -> None:
    sys.path.insert(0, str(SRC))
    sys.path.insert(1, str(SRC / "gguf-py"))
    import convert_hf_to_gguf  # noqa: E402
    from conversion import base  # noqa: E402

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if pre == "-":
                raise
            return pre

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    logging.disable(logging.WARNING)
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", outtype, "--outfile", str(out)]
    convert_hf_to_gguf.main()


def summary(field):
    v = field.contents()
    return [[t.name for t in field.types], v]


def compare(conv_path: Path, java_path: str) -> dict:
    import numpy as np
    from gguf import GGUFReader

    a = GGUFReader(conv_path)
    b = GGUFReader(java_path)
    fa = {k: f for k, f in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: f for k, f in b.fields.items() if not k.startswith("GGUF.")}
    differing = {}
    for k in fa:
        if k not in fb:
            continue
        (ta, va), (tb, vb) = summary(fa[k]), summary(fb[k])
        if ta != tb or va != vb:
            if isinstance(va, list) and isinstance(vb, list):
                d = next((i for i in range(min(len(va), len(vb))) if va[i] != vb[i]), None)
                differing[k] = [{"types": ta, "len": len(va), "first_diff": d, "at": None if d is None else repr(va[d])},
                                {"types": tb, "len": len(vb), "at": None if d is None else repr(vb[d])}]
            else:
                differing[k] = [{"types": ta, "value": repr(va)}, {"types": tb, "value": repr(vb)}]
    ta = {t.name: t for t in a.tensors}
    tb = {t.name: t for t in b.tensors}
    data_differs = []
    for name in ta:
        if name in tb and ta[name].tensor_type == tb[name].tensor_type:
            x = np.asarray(ta[name].data).view(np.uint8)
            y = np.asarray(tb[name].data).view(np.uint8)
            if not np.array_equal(x, y):
                data_differs.append(name)
    return {
        "only_converter": sorted(set(fa) - set(fb)),
        "only_java": sorted(set(fb) - set(fa)),
        "differing": differing,
        "tensors": {
            "converter": sorted([t.name, t.tensor_type.name, [int(x) for x in t.shape]] for t in a.tensors),
            "java": sorted([t.name, t.tensor_type.name, [int(x) for x in t.shape]] for t in b.tensors),
        },
        "data_differs": data_differs,
    }


def main() -> None:
    model_dir, java, outtype, pre, out = sys.argv[1:6]
    keep = sys.argv[6] if len(sys.argv) > 6 else None
    with tempfile.TemporaryDirectory() as d:
        conv = Path(keep) if keep else Path(d) / "converter.gguf"
        convert(model_dir, outtype, pre, conv)
        report = compare(conv, java)
    Path(out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
