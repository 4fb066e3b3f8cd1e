"""Reference outputs of Hugging Face transformers for the Java forward pass (org.sparkquant.nn).

Default mode: writes tiny random fp32 models (hidden 64, 2 layers, vocab 256), one per architecture feature, as HF
checkpoint directories (config.json + model.safetensors via save_pretrained) under
src/test/resources/fixtures/nn/<name>/, each with
  reference.json         token ids of two sequences of different lengths, versions, description
  reference.safetensors  logits.<i> [len_i, vocab] of each sequence (each run alone, batch 1, no padding);
                         hook.<module> [len_0, width]: the input of layer 0's q_proj/o_proj/gate_proj/down_proj for
                         sequence 0; inv_freq: the rotary inverse frequencies transformers uses.

--shared DIR (DIR holds models/ and text/, i.e. the project's ../shared): for models/stories260K and
models/dev-llama2-26m, computed in fp32 (bf16 weights are loaded as fp32), writes
src/test/resources/fixtures/nn/shared/<model>.json (+ .safetensors):
  a fixed token list (a fixed sentence through tokenizer.json, BOS first) with the logits of its first 8 positions at
  every 16th (vocab > 8192: every 64th) vocabulary id, the log-sum-exp and the next-token NLL of every position; and the
  perplexity cross-check: the first 6000 code points of text/eval.txt tokenized (BOS first), 4 windows of 128 tokens,
  perplexity with the GPTQ protocol (each window predicts its tokens 1..127; ppl = exp(mean NLL)).

Run from the repository root:
  /work/venv/bin/python python/hf_golden.py                 # tiny fixtures
  /work/venv/bin/python python/hf_golden.py --shared ../shared
Everything is seeded: re-running reproduces the same files (up to library versions).
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "test", "resources", "fixtures", "nn")

COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=80,
    num_hidden_layers=2,
    num_attention_heads=4,
    head_dim=16,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
)

# name -> (model_type, extra config, description)
FIXTURES = {
    "llama-gqa-tied-llama3": (
        "llama",
        dict(num_key_value_heads=2, tie_word_embeddings=True,
             rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0,
                                  high_freq_factor=4.0, original_max_position_embeddings=256)),
        "llama, GQA 4/2, tied embeddings, llama3 rope scaling (all three frequency bands used)"),
    "llama-untied-linear-bias": (
        "llama",
        dict(num_key_value_heads=4, tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
             rope_parameters=dict(rope_type="linear", rope_theta=500000.0, factor=2.0)),
        "llama, MHA, untied lm_head, linear rope scaling, attention_bias and mlp_bias"),
    "mistral-window": (
        "mistral",
        dict(num_key_value_heads=2, tie_word_embeddings=True, sliding_window=7,
             rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        "mistral, GQA 4/2, sliding window 7 (shorter than both sequences)"),
    "qwen2-bias": (
        "qwen2",
        dict(num_key_value_heads=2, tie_word_embeddings=True, use_sliding_window=False,
             rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        "qwen2, GQA 4/2, q/k/v bias (no o_proj bias)"),
    "qwen3-qknorm": (
        "qwen3",
        dict(num_key_value_heads=2, tie_word_embeddings=False, attention_bias=False, use_sliding_window=False,
             rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        "qwen3, GQA 4/2, per-head q/k RMSNorm before RoPE, untied"),
}

LENGTHS = (18, 11)
HOOKED = ("q_proj", "o_proj", "gate_proj", "down_proj")


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def randomize(model, seed):
    """Weights large enough that attention is peaked and logits spread over several units: a weak init (std 0.02)
    would make every position look alike and hide masking or RoPE mistakes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(fan_in)))


def build(model_type, extra):
    config_cls = transformers.CONFIG_MAPPING[model_type]
    config = config_cls(**COMMON, **extra)
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def layer0_inputs(model, ids):
    captured = {}
    layer = model.model.layers[0]
    modules = {"q_proj": layer.self_attn.q_proj, "o_proj": layer.self_attn.o_proj,
               "gate_proj": layer.mlp.gate_proj, "down_proj": layer.mlp.down_proj}
    handles = []
    for kind, module in modules.items():
        def hook(mod, args, kind=kind):
            captured[kind] = args[0].detach()[0].numpy().astype(np.float32).copy()
        handles.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].numpy().astype(np.float32)
    for h in handles:
        h.remove()
    return logits, captured


def tiny_fixtures():
    total = 0
    for index, (name, (model_type, extra, description)) in enumerate(FIXTURES.items()):
        torch.manual_seed(1000 + index)
        model = build(model_type, extra)
        randomize(model, 2000 + index)
        d = os.path.join(OUT, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        model.save_pretrained(d, safe_serialization=True)
        gen = os.path.join(d, "generation_config.json")
        if os.path.exists(gen):
            os.remove(gen)
        # reload from disk so the reference is computed from exactly the committed checkpoint
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        rng = np.random.default_rng(3000 + index)
        sequences = [rng.integers(0, COMMON["vocab_size"], size=n).tolist() for n in LENGTHS]
        tensors = {}
        for i, ids in enumerate(sequences):
            logits, captured = layer0_inputs(model, ids)
            tensors[f"logits.{i}"] = logits
            if i == 0:
                for kind in HOOKED:
                    tensors[f"hook.{kind}"] = captured[kind]
        tensors["inv_freq"] = model.model.rotary_emb.inv_freq.detach().numpy().astype(np.float32)
        save_file(tensors, os.path.join(d, "reference.safetensors"))
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"description": description, "sequences": sequences, "hooked_layer": 0,
                       "hooked_sequence": 0, "versions": versions()}, f, indent=1)
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        total += size
        print(f"{name}: {size} bytes; logits[0][0,:4]={tensors['logits.0'][0, :4]}")
    print(f"total {total} bytes")


SENTENCE = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine "
            "with her friends.")
EVAL_CODE_POINTS = 6000
PPL_SEQ_LEN = 128
PPL_WINDOWS = 4


def encode_with_bos(model_dir, text):
    """Ids as org.sparkquant.tokenizer produces them: tokenizer.json without its post-processor, then BOS when
    tokenizer_config.json says add_bos_token."""
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
        tc = json.load(f)
    ids = tok.encode(text, add_special_tokens=False).ids
    if tc.get("add_bos_token", False):
        ids = [tok.token_to_id(tc["bos_token"])] + ids
    return ids


def shared_references(shared):
    d = os.path.join(OUT, "shared")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(shared, "text", "eval.txt"), encoding="utf-8") as f:
        text = f.read()
    eval_slice = text[:EVAL_CODE_POINTS]  # python str slices by code point
    for name in ("stories260K", "dev-llama2-26m"):
        model_dir = os.path.join(shared, "models", name)
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        ids = encode_with_bos(model_dir, SENTENCE)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        lse = torch.logsumexp(logits, dim=-1)
        nll = (lse[:-1] - logits[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0])
        step = 16 if logits.shape[1] <= 8192 else 64
        vocab_index = list(range(0, logits.shape[1], step))
        tensors = {
            "logits.slice": logits[:8, vocab_index].float().numpy(),
            "logsumexp": lse.float().numpy(),
            "nll": nll.float().numpy(),
        }
        save_file(tensors, os.path.join(d, name + ".safetensors"))

        eval_ids = encode_with_bos(model_dir, eval_slice)
        need = PPL_SEQ_LEN * PPL_WINDOWS
        if len(eval_ids) < need:
            sys.exit(f"{name}: only {len(eval_ids)} tokens in the eval slice, need {need}")
        windows = torch.tensor(eval_ids[:need]).view(PPL_WINDOWS, PPL_SEQ_LEN)
        total = 0.0
        with torch.no_grad():
            for w in windows:
                out = model(input_ids=w[None]).logits[0]
                loss = torch.nn.functional.cross_entropy(out[:-1], w[1:], reduction="none")
                total += float(loss.double().sum())
        count = PPL_WINDOWS * (PPL_SEQ_LEN - 1)
        ppl = math.exp(total / count)
        ref = {
            "model": name,
            "tokens": ids,
            "logit_positions": 8,
            "vocab_index_step": step,
            "perplexity": {
                "text": "text/eval.txt", "code_points": EVAL_CODE_POINTS, "add_bos": True,
                "seq_len": PPL_SEQ_LEN, "windows": PPL_WINDOWS,
                "window_tokens": windows.tolist(), "nll_sum": total, "predicted_tokens": count, "ppl": ppl,
            },
            "versions": versions(),
        }
        with open(os.path.join(d, name + ".json"), "w") as f:
            json.dump(ref, f)
        print(f"{name}: {len(ids)} tokens, ppl {ppl:.6f} over {count} predicted tokens")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", help="directory with models/ and text/ (../shared): write real-model references")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.shared:
        shared_references(args.shared)
    else:
        tiny_fixtures()


if __name__ == "__main__":
    main()
