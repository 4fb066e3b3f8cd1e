"""Reference outputs of Hugging Face transformers for the Java mixture-of-experts forward pass (org.sparkquant.nn).

  python python/moe_reference.py OUT_DIR [NAME...]

For each fixture (default: all) writes OUT_DIR/<name>/ as a checkpoint directory (config.json + model.safetensors via
save_pretrained: one 2-D tensor per expert and projection) with
  reference.json         sequences: token ids of two sequences of different lengths;
                         routing[layer][sequence][token]: the top-k expert ids of every token as the router returns
                         them (descending weight), for the sparse layers (null for dense ones);
                         windows + ppl: perplexity windows and their perplexity (GPTQ protocol: each window predicts its
                         tokens 1..n-1, ppl = exp(mean NLL)); versions
  reference.safetensors  logits.<i> [len_i, vocab] of each sequence run alone (batch 1, no padding), fp32.
The models are random (seeded), fp32, with weights large enough that the routers' top-k choices are clear-cut
(a weak init would make every expert's probability almost equal, and routing a coin toss of rounding). The tests in
src/test/java/org/sparkquant/nn/MoeGoldenTest.java run this script into a temporary directory.
"""

import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

COMMON = dict(vocab_size=256, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=None,
              tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=10000.0))

# name -> (model_type, extra config, description)
FIXTURES = {
    "mixtral": ("mixtral", dict(intermediate_size=48, num_hidden_layers=2, num_local_experts=8,
                                num_experts_per_tok=2),
                "mixtral: 8 experts, top-2 renormalised, w1/w2/w3 names"),
    "qwen2-moe": ("qwen2_moe", dict(intermediate_size=96, moe_intermediate_size=32,
                                    shared_expert_intermediate_size=80, num_hidden_layers=3, num_experts=8,
                                    num_experts_per_tok=2, norm_topk_prob=False, mlp_only_layers=[1],
                                    use_sliding_window=False),
                  "qwen2_moe: 8 experts top-2 unnormalised, shared expert with sigmoid gate, layer 1 dense"),
    "qwen3-moe": ("qwen3_moe", dict(intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
                                    head_dim=16, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
                                    use_sliding_window=False),
                  "qwen3_moe: 16 experts top-4 renormalised, q/k RMSNorm"),
}

LENGTHS = (21, 13)
WINDOWS, WINDOW = 3, 24


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
            elif name.endswith("mlp.gate.weight"):
                # routers: spread logits over several units, so the top-k is far from ties
                p.copy_(torch.randn(p.shape, generator=g) * (4.0 / math.sqrt(p.shape[-1])))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(p.shape[-1])))


def build(model_type, extra):
    config = transformers.CONFIG_MAPPING[model_type](**COMMON, **extra)
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def routers(model):
    out = []
    for layer in model.model.layers:
        gate = getattr(layer.mlp, "gate", None)
        out.append(gate if gate is not None and hasattr(gate, "top_k") else None)
    return out


def run(model, ids):
    """Logits and per-layer routing of one sequence."""
    captured = {}
    handles = []
    for i, router in enumerate(routers(model)):
        if router is None:
            continue

        def hook(mod, args, output, i=i):
            captured[i] = output[2].tolist()  # router_indices [tokens, top_k], descending weight
        handles.append(router.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
    finally:
        for h in handles:
            h.remove()
    return logits, [captured.get(i) for i in range(len(model.model.layers))]


def perplexity(model, windows):
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in windows:
            logits = model(torch.tensor([w])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for p in range(len(w) - 1):
                nll -= float(logp[p, w[p + 1]])
                n += 1
    return math.exp(nll / n)


def fixture(out, name, index):
    model_type, extra, description = FIXTURES[name]
    torch.manual_seed(index)
    model = build(model_type, extra)
    randomize(model, 1000 + index)
    directory = os.path.join(out, name)
    model.save_pretrained(directory)
    rng = np.random.default_rng(index)
    sequences = [[int(t) for t in rng.integers(3, 256, size=n)] for n in LENGTHS]
    tensors = {}
    routing = [[] for _ in model.model.layers]
    for i, ids in enumerate(sequences):
        logits, routes = run(model, ids)
        tensors["logits.%d" % i] = np.ascontiguousarray(logits, dtype=np.float32)
        for layer, r in enumerate(routes):
            routing[layer].append(r)
    routing = [None if all(r is None for r in rows) else rows for rows in routing]
    windows = [[int(t) for t in rng.integers(3, 256, size=WINDOW)] for _ in range(WINDOWS)]
    save_file(tensors, os.path.join(directory, "reference.safetensors"))
    with open(os.path.join(directory, "reference.json"), "w") as f:
        json.dump({"description": description, "sequences": sequences, "routing": routing, "windows": windows,
                   "ppl": perplexity(model, windows),
                   "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}, f)


def main(args):
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    names = args[1:] or list(FIXTURES)
    for name in names:
        fixture(args[0], name, list(FIXTURES).index(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
