"""Cross-checks safetensors files with the reference implementation (Python `safetensors` on torch tensors).

Prints JSON on stdout; used by the Java tests of org.sparkquant.io (SafetensorsInteropTest, TensorStoreTest).

  python python/safetensors_check.py read PATH
      PATH is a .safetensors file or a checkpoint directory (model.safetensors, or shards listed by
      model.safetensors.index.json). Prints {"tensors": {name: {"dtype", "shape", "sha256", "values"}},
      "metadata": {...}} where sha256 is of the tensor's raw little-endian bytes and values is the flat list of
      elements (float64 for floating types, ints for integers, 0/1 for bool). For a sharded directory it also
      prints "index": {"total_size", "data_bytes", "weight_map_ok"}.

  python python/safetensors_check.py write FILE
      Writes FILE with one tensor of every dtype (fixed values, 0-d and empty tensors included, metadata) with
      safetensors.torch.save_file and prints the same JSON as `read` for it. It generated the committed fixture:
        python python/safetensors_check.py write src/test/resources/fixtures/io/python-written.safetensors \
            > src/test/resources/fixtures/io/python-written.json

  python python/safetensors_check.py count DIR
      Prints {"parameters": N, "tensors": M}: elements and tensors summed over the checkpoint in DIR.
"""
import hashlib
import json
import math
import os
import sys

from safetensors import safe_open

# torch (for bfloat16) is imported only by the commands that decode values: `count` needs just safetensors
torch = None


def load_torch():
    global torch
    if torch is None:
        import torch as t
        torch = t
    return torch


def dtype_name(dtype):
    return {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
        torch.bool: "BOOL",
    }[dtype]


def raw_bytes(t):
    flat = t.contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


def values(t):
    flat = t.reshape(-1)
    if t.dtype.is_floating_point:
        return [float(v) for v in flat.double().tolist()]
    if t.dtype == torch.bool:
        return [1 if v else 0 for v in flat.tolist()]
    return [int(v) for v in flat.tolist()]


def describe(t, with_values=True):
    d = {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "sha256": hashlib.sha256(raw_bytes(t)).hexdigest()}
    if with_values and t.numel() <= 4096:
        d["values"] = values(t)
    return d


def files_of(path):
    if os.path.isfile(path):
        return [path], None
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            idx = json.load(f)
        shards = sorted(set(idx["weight_map"].values()))
        return [os.path.join(path, s) for s in shards], idx
    return [os.path.join(path, "model.safetensors")], None


def read(path):
    load_torch()
    files, index = files_of(path)
    tensors, metadata, where = {}, {}, {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            metadata.update(f.metadata() or {})
            for name in f.keys():
                tensors[name] = describe(f.get_tensor(name))
                where[name] = os.path.basename(file)
    out = {"tensors": tensors, "metadata": metadata}
    if index is not None:
        data_bytes = 0
        for file in files:
            with open(file, "rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
            data_bytes += os.path.getsize(file) - 8 - header_len
        out["index"] = {
            "total_size": index["metadata"]["total_size"],
            "data_bytes": data_bytes,
            "weight_map_ok": index["weight_map"] == where,
        }
    return out


def write(file):
    load_torch()
    from safetensors.torch import save_file
    t = {
        "f64": torch.tensor([[-1.5, 0.0, 1.0 / 3.0], [2.0 ** -1030, 1e300, -7.25]], dtype=torch.float64),
        "f32": torch.tensor([[0.1, -2.5], [3.0e38, 1.0e-45], [-0.0, 7.0]], dtype=torch.float32),
        # largest finite, smallest subnormal, a value that rounds, negative zero
        "f16": torch.tensor([65504.0, 2.0 ** -24, 0.1, -0.0, -3.140625, 1.0 / 3.0], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -2.0, 3.3895313892515355e38], [0.1, 1e-38, -0.0]], dtype=torch.bfloat16),
        "i64": torch.tensor([-(2 ** 62), -1, 0, 2 ** 40 + 7], dtype=torch.int64),
        "i32": torch.tensor([[-(2 ** 31), 2 ** 31 - 1], [123456, -7]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, -1, 5], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 128, 7], dtype=torch.uint8),
        "bool": torch.tensor([[True, False, True], [False, False, True]], dtype=torch.bool),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros((0, 4), dtype=torch.float32),
        "matrix.weight": torch.arange(40, dtype=torch.float32).reshape(8, 5) / 8 - 2,
    }
    save_file(t, file, metadata={"format": "pt", "producer": "safetensors_check.py"})
    return read(file)


def count(path):
    files, _ = files_of(path)
    parameters = tensors = 0
    for file in files:
        with safe_open(file, framework="numpy") as f:
            for name in f.keys():
                parameters += math.prod(f.get_slice(name).get_shape())  # 1 for a 0-d tensor
                tensors += 1
    return {"parameters": parameters, "tensors": tensors}


def main(argv):
    if len(argv) != 2 or argv[0] not in ("read", "write", "count"):
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv
    result = {"read": read, "write": write, "count": count}[command](path)
    json.dump(result, sys.stdout, indent=1, sort_keys=True, allow_nan=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
