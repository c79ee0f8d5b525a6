#!/usr/bin/env python3
"""Build the two tiny decoder tokenizers shipped in bench/model_configs/tiny-gpt2 and tiny-llama.

Why shipped and why tiny: offline there is no hub, and the tiny test decoders have a 512-token
vocabulary (so their embedding tables stay small and tests stay fast), which no real tokenizer fits.
Both are byte-level BPE (as GPT-2's and SmolLM2's are: any text encodes, no unknown characters),
trained here on the first 20,000 SST-2 training sentences, 512 tokens each:

- tiny-gpt2 behaves like GPT-2's tokenizer: `<|endoftext|>` (id 0) is bos, eos and unk, nothing is
  added around the text, a sentence pair is the two texts concatenated, and there is no pad token;
- tiny-llama behaves like a Llama tokenizer: `<unk>` 0, `<s>` 1, `</s>` 2, `<s>` is added before each
  text (pair: `<s> A <s> B`, as LlamaTokenizerFast builds it), and there is no pad token.

Neither defines a pad token on purpose: the harness must set one (bench/methods/architectures.py), as it must for
the real GPT-2 and SmolLM2. Rerun (`python scripts/make_tiny_tokenizers.py`) only to change them; the
files it writes are the shipped ones (about 30 KB each).

Usage: BENCH_GLUE_DIR=../shared/data/glue python scripts/make_tiny_tokenizers.py
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "model_configs"
VOCAB = 512
SENTENCES = 20_000


def sentences(glue_dir: Path) -> list[str]:
    with open(glue_dir / "SST-2" / "train.tsv", encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [r["sentence"].strip() for _, r in zip(range(SENTENCES), rows, strict=False)]


def train(texts: list[str], specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def main() -> int:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    glue = Path(os.environ.get("BENCH_GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue")))
    texts = sentences(glue)
    gpt2 = train(texts, ["<|endoftext|>"])
    PreTrainedTokenizerFast(tokenizer_object=gpt2, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=512).save_pretrained(str(OUT / "tiny-gpt2"))
    llama = train(texts, ["<unk>", "<s>", "</s>"])
    llama.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                         special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=llama, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            model_max_length=512).save_pretrained(str(OUT / "tiny-llama"))
    for name in ("tiny-gpt2", "tiny-llama"):
        print(name, sorted(p.name for p in (OUT / name).iterdir()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
