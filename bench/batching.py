"""Tokenise once, then batch with dynamic padding (and optionally length grouping).

Dynamic padding pads each batch to its longest sequence only; length grouping sorts examples by
length inside shuffled mega-batches so batches hold similar lengths, which cuts padding (measured
in docs/performance.md) without making the order deterministic across epochs.
"""
from __future__ import annotations

import hashlib
import pickle
import random
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import torch


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list
    is_regression: bool

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


def encode(examples, tokenizer, max_len: int, is_regression: bool) -> Encoded:
    a = [e.text_a for e in examples]
    pair = any(e.text_b is not None for e in examples)
    b = [e.text_b or "" for e in examples] if pair else None
    enc = tokenizer(a, b, truncation=True, max_length=max_len, padding=False)
    tt = enc.get("token_type_ids")
    return Encoded(list(enc["input_ids"]), list(tt) if tt is not None else None,
                   [e.label for e in examples], is_regression)


def tokenizer_identity(tokenizer) -> str:
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(repr(sorted(vocab.items())).encode()).hexdigest()[:16]
    return f"{type(tokenizer).__name__}:{len(vocab)}:{digest}:{tokenizer.padding_side}"


def encode_cached(examples, tokenizer, max_len: int, is_regression: bool, cache_dir: str | None) -> tuple[Encoded, bool]:
    """`encode` with an on-disk cache keyed by the exact texts, labels, tokenizer vocabulary and
    max length, so a changed file or tokenizer can never hit a stale entry. Returns (data, hit).
    Pays for large splits (SST-2 train, 67k rows: ~3 s to tokenise, milliseconds to load)."""
    if not cache_dir:
        return encode(examples, tokenizer, max_len, is_regression), False
    h = hashlib.sha256()
    h.update(f"{tokenizer_identity(tokenizer)}|{max_len}|{is_regression}|{len(examples)}".encode())
    for e in examples:
        h.update(f"\x00{e.text_a}\x01{e.text_b}\x02{e.label}".encode())
    path = Path(cache_dir) / "tokenized" / f"{h.hexdigest()[:32]}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh), True
        except (OSError, pickle.UnpicklingError, EOFError):
            pass  # a damaged entry is rebuilt
    data = encode(examples, tokenizer, max_len, is_regression)
    from bench.records import atomic_write

    atomic_write(path, "wb", lambda fh: pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL))
    return data, False


MEGA_BATCHES = 50  # batches per sorted group when train.group_mega_batches is absent (the first default)


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool,
                shuffle: bool = True, mega_batches: int | None = None) -> list[list[int]]:
    """Indices per batch for one epoch, a pure function of (seed, epoch).

    Grouping sorts each run of `mega_batches` batches of the shuffled order by length. The size of that
    run is the trade: a large one cuts padding most but, when it holds most of the train set, makes
    nearly the same batches every epoch (the sort undoes the shuffle); docs/performance.md measures it.
    """
    idx = list(range(len(lengths)))
    rng = random.Random(f"{seed}-{epoch}")
    if shuffle:
        rng.shuffle(idx)
    if group_by_length:
        mega = batch_size * int(mega_batches or MEGA_BATCHES)
        grouped = []
        for i in range(0, len(idx), mega):
            chunk = sorted(idx[i:i + mega], key=lambda j: lengths[j], reverse=True)
            grouped.extend(chunk)
        idx = grouped
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if shuffle and group_by_length:
        rng.shuffle(batches)
    return batches


def representative_batches(batches: list[list[int]], lengths: list[int], n: int, warmup: int = 0) -> list[list[int]]:
    """`n` of an epoch's batches whose cost spread matches the whole epoch's, for a short timing run
    (the cost pass): the n - warmup timed batches sit at evenly spaced quantiles of the batches' padded
    size (rows x longest row), and the `warmup` untimed ones first at quantiles of what is left. Why:
    the first steps of a length-grouped epoch are not a fair sample (measured on the default sweep:
    SST-2's first 25 batches held 10 tokens per row against 13.2 over the run, which put the cost
    pass's samples/s 12 % above the whole run's at the median cell, up to 34 %)."""
    if n >= len(batches):
        return list(batches)

    def quantiles(pool: list[int], k: int) -> list[int]:
        return sorted({pool[min(len(pool) - 1, int((q + 0.5) * len(pool) / k))] for q in range(k)}) if k > 0 else []

    by_size = sorted(range(len(batches)), key=lambda i: (len(batches[i]) * max(lengths[j] for j in batches[i]), i))
    timed = quantiles(by_size, n - warmup)
    chosen = set(timed)
    warm = quantiles([i for i in by_size if i not in chosen], min(warmup, n))
    return [batches[i] for i in warm] + [batches[i] for i in timed]


def padded_width(longest: int, multiple: int) -> int:
    return -(-longest // multiple) * multiple if multiple > 1 else longest


def collate(data: Encoded, ids: list[int], pad_id: int, multiple: int = 1) -> dict:
    """Pad a batch to its longest row, rounded up to `multiple` (8 on CUDA: each new sequence
    length costs the GPU a new attention/matmul plan, and a multiple of 8 suits tensor cores).

    One tensor is built from the concatenated rows and scattered through the mask, instead of one
    small tensor per row: the per-row version cost ~130 us per batch more than a hand-written loop.
    """
    seqs = [data.input_ids[i] for i in ids]
    lens = torch.tensor([len(s) for s in seqs])
    width = padded_width(int(lens.max()), multiple)
    keep = torch.arange(width)[None, :] < lens[:, None]
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    input_ids[keep] = torch.tensor(list(chain.from_iterable(seqs)), dtype=torch.long)
    labels = [data.labels[i] for i in ids]
    label_t = torch.tensor(labels, dtype=torch.float32 if data.is_regression else torch.long)
    batch = {"input_ids": input_ids, "attention_mask": keep.long(), "labels": label_t}
    if data.token_type_ids is not None:
        tt = torch.zeros((len(ids), width), dtype=torch.long)
        tt[keep] = torch.tensor(list(chain.from_iterable(data.token_type_ids[i] for i in ids)), dtype=torch.long)
        batch["token_type_ids"] = tt
    return batch
