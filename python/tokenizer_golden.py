"""Small tokenizer fixtures and their reference ids for org.sparkquant.tokenizer.

Writes under src/test/resources/fixtures/tokenizer/:
  bytelevel/       byte-level BPE like Llama 3 (GPT-4 style split regex, ignore_merges, BOS added by the
                   tokenizer.json post-processor template; tokenizer_config.json has no add_bos_token)
  bytelevel-nobos/ the same BPE like Qwen: no template, no BOS (tokenizer_config.json: bos_token null)
  sentencepiece/   SentencePiece-style BPE like Llama 2 (normalizer Prepend "▁" + Replace " "→"▁", no
                   pre-tokenizer, <0x00>..<0xFF> byte fallback, add_bos_token true in tokenizer_config.json)
  cases.json       the fixture texts and, per tokenizer, the ids of the python `tokenizers` library for
                   tokenizer.json with add_special_tokens=False ("ids"), the ids with the BOS policy ("with_bos"),
                   the decoded text, and what transformers' AutoTokenizer returns ("transformers", for reference:
                   transformers 5 rebuilds Llama tokenizers from vocab/merges and may differ from tokenizer.json on
                   leading whitespace; org.sparkquant.tokenizer follows tokenizer.json).

The BPEs are trained on the text embedded below, so the script needs nothing but `tokenizers` (and
`transformers` for the informational column). Run from the repository root:
  /work/venv/bin/python python/tokenizer_golden.py
"""

import json
import os
import shutil

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "test", "resources", "fixtures", "tokenizer")

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her friends.
Quantization maps the weights of a neural network to a small set of values, which saves memory and time.
GPTQ quantizes one column at a time and updates the remaining columns to compensate for the error it made.
In 1969, the first people walked on the Moon; 384,400 kilometres away from the Earth, they planted a flag.
def forward(self, x):
    return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
The configuration file lists the hidden size, the number of layers and the vocabulary size of the model.
Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy.
She said: "It's not what you think!" and they'll never know what we've done, I'm sure.
Spark runs tasks on executors; each executor holds a partition of the data and a copy of the code.
Café, naïve, façade, résumé and über are words with accents; 東京 and 中文 are written in other scripts.
""".splitlines()

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "  two leading spaces and trailing  ",
    "line one\nline two\n\nparagraph after a blank line",
    "first document\n\nsecond document\n\nthird",
    "\n\nstarts with newlines",
    "tabs\tand\tspaces   mixed",
    "emoji 😀🚀 and a family 👨‍👩‍👧",
    "ünïcödé: Café naïve façade résumé über",
    "中文 and 東京, 日本語のテキスト",
    "numbers 1234567 and 3.14159, 1969 and 384,400",
    "don't won't they'll I'm we've she'd",
    "code: def f(x):\n    return x * 2\n",
    "special token text <s> in the middle </s>",
    "",
    " ",
    "a",
]

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_level():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 3, trainer)
    return tok


def with_template(tok, bos):
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]),
    ])
    return tok


def sentencepiece_style():
    # train on "▁"-joined words, then rebuild the vocabulary in Llama 2's layout: <unk> <s> </s>, the 256 byte
    # tokens, then the learned pieces; the merges are kept as learned
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=64,
                                  show_progress=False)
    trainer_tok.train_from_iterator(CORPUS * 3, trainer)
    learned = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def write(name, tok, config):
    d = os.path.join(OUT, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return d


def transformers_ids(d, text):
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(d)(text)["input_ids"]
    except Exception as e:  # informational only
        return f"unavailable: {e}"


def main():
    bl = byte_level()
    bl_bos = with_template(Tokenizer.from_str(bl.to_str()), "<|begin_of_text|>")
    bl_nobos = Tokenizer.from_str(bl.to_str())
    bl_nobos.post_processor = processors.ByteLevel(trim_offsets=False)
    sp = sentencepiece_style()
    dirs = {
        "bytelevel": (write("bytelevel", bl_bos, {
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>", "model_max_length": 8192}), bl_bos, "<|begin_of_text|>"),
        "bytelevel-nobos": (write("bytelevel-nobos", bl_nobos, {
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|end_of_text|>",
            "model_max_length": 8192}), bl_nobos, None),
        "sentencepiece": (write("sentencepiece", sp, {
            "tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "add_bos_token": True, "add_eos_token": False, "legacy": True, "model_max_length": 4096}), sp, "<s>"),
    }
    cases = {"texts": TEXTS, "tokenizers": {}}
    for name, (d, tok, bos) in dirs.items():
        entries = []
        for text in TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            with_bos = ([tok.token_to_id(bos)] if bos else []) + ids
            if name == "bytelevel":
                # the template is the BOS policy of this tokenizer: encode() with special tokens must agree
                assert tok.encode(text).ids == with_bos, (name, text)
            hf = transformers_ids(d, text)
            entries.append({"ids": ids, "with_bos": with_bos, "decoded": tok.decode(ids, skip_special_tokens=False),
                            "transformers": hf})
            if hf != with_bos:
                print(f"note: {name}: transformers differs from tokenizer.json for {text!r}: {hf} vs {with_bos}")
        vocab = tok.get_vocab_size(with_added_tokens=True)
        cases["tokenizers"][name] = {"vocab_size": vocab, "bos": bos, "bos_id": tok.token_to_id(bos) if bos else None,
                                     "cases": entries}
        print(f"{name}: vocab {vocab}, {os.path.getsize(os.path.join(d, 'tokenizer.json'))} bytes")
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
