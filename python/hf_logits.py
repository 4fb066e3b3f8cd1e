"""Logits of Hugging Face transformers for one token sequence, in fp32: an independent reference for llama.cpp
running sparkquant's GGUF exports (org.sparkquant.format.gguf.GgufMoeTest).

Usage: python python/hf_logits.py MODEL_DIR IDS.bin OUT.f32
  IDS.bin    little-endian int32 token ids (one sequence, batch 1)
  OUT.f32    little-endian float32 logits [len, vocab]
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    model_dir, ids_path, out = sys.argv[1:4]
    ids = np.fromfile(ids_path, dtype="<i4")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids, dtype=torch.long)[None, :]).logits[0]
    logits.float().numpy().astype("<f4").tofile(out)


if __name__ == "__main__":
    main()
