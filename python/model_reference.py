"""What Hugging Face transformers makes of config.json files: the reference for the Java ModelConfig / ModelInventory /
RopeConfig tests.

For each config it prints the architecture fields as transformers resolves them (defaults applied), the rotary
inverse frequencies computed by the model's own rotary-embedding module (float32, llama3 / linear scaling included),
and every tensor a checkpoint of that model holds: the state dict of the model instantiated on the meta device (no
memory) in the layout save_pretrained writes (transformers 5 fuses MoE experts into 3-D tensors in memory and splits
them back into one 2-D tensor per expert and projection when saving), without lm_head.weight when the embeddings are
tied (save_pretrained drops it). For MoE configs it also prints the expert fields as transformers resolves them.

  python python/model_reference.py CONFIG.json... > src/test/resources/fixtures/model/transformers-reference.json

Keys are the file names without .json (for a model directory's config.json, the directory's name). The committed
fixture was generated with transformers 5.18 from src/test/resources/fixtures/model/configs/*.json; the model tests
also run this script live (with the shared models' configs) when python is present.
"""
import json
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.core_model_loading import revert_weight_conversion


def reference(path):
    with open(path) as f:
        raw = json.load(f)
    config = AutoConfig.for_model(raw.pop("model_type"), **raw)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    state = revert_weight_conversion(model, model.state_dict())
    tensors = {name: list(t.shape) for name, t in state.items()}
    if config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    # the rotary module computes inv_freq in __init__; build a real (CPU) one from the same config
    rotary = type(model.model.rotary_emb)(config=config, device="cpu")
    rope = dict(config.rope_parameters or {})
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": head_dim,
        "vocab_size": config.vocab_size,
        "rms_norm_eps": config.rms_norm_eps,
        "tie_word_embeddings": bool(config.tie_word_embeddings),
        "max_position_embeddings": config.max_position_embeddings,
        "sliding_window": getattr(config, "sliding_window", None) if config.model_type == "mistral" else None,
        "rope": rope,
        "inv_freq": [float(v) for v in rotary.inv_freq.double().tolist()],
        "parameters": sum(int(torch.Size(s).numel()) for s in tensors.values()),
        "tensors": tensors,
        "moe": moe(config),
    }


def moe(config):
    """The expert fields of an MoE config, None for a dense one; dense_layers as the decoder layers decide them."""
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    if not experts:
        return None
    only = getattr(config, "mlp_only_layers", None) or []
    step = getattr(config, "decoder_sparse_step", 1) or 1
    dense = [i for i in range(config.num_hidden_layers) if i in only or (i + 1) % step != 0]
    return {
        "experts": experts,
        "top_k": config.num_experts_per_tok,
        "expert_intermediate_size": getattr(config, "moe_intermediate_size", None) or config.intermediate_size,
        "norm_topk_prob": bool(getattr(config, "norm_topk_prob", True)),
        "shared_intermediate_size": getattr(config, "shared_expert_intermediate_size", 0) or 0,
        "dense_layers": dense,
    }


def key(path):
    """The file name without .json; for a model directory's config.json, the directory's name."""
    name = os.path.basename(path)
    if name == "config.json":
        return os.path.basename(os.path.dirname(os.path.abspath(path)))
    return name.removesuffix(".json")


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    out = {key(p): reference(p) for p in paths}
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"), allow_nan=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
