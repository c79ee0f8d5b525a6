"""Tokenise once, then batch with dynamic padding (and optionally length grouping).

Dynamic padding pads each batch to its longest sequence only; length grouping sorts examples by
length inside shuffled mega-batches so batches hold similar lengths, which cuts padding (measured
in docs/performance.md) without making the order deterministic across epochs.
"""
from __future__ import annotations

import hashlib
import logging
import random
import zipfile
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("bench")


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


CACHE_FORMAT = 1  # layout of a tokenised-split cache file (below); another value is rebuilt, not read


def cache_path(examples, tokenizer, max_len: int, is_regression: bool, cache_dir: str) -> Path:
    """The cache file of a split: keyed by the exact texts, labels, tokenizer vocabulary and max length."""
    h = hashlib.sha256()
    h.update(f"{tokenizer_identity(tokenizer)}|{max_len}|{is_regression}|{len(examples)}".encode())
    for e in examples:
        h.update(f"\x00{e.text_a}\x01{e.text_b}\x02{e.label}".encode())
    return Path(cache_dir) / "tokenized" / f"{h.hexdigest()[:32]}.npz"


def save_encoded(path: Path, data: Encoded) -> None:
    """Write `data` as an .npz of plain integer/float arrays (rows concatenated, with offsets):
    numbers only, so loading it can never run code, whoever could write the cache folder."""
    from bench.records.schema import atomic_write

    offsets = np.cumsum([0] + data.lengths, dtype=np.int64)
    arrays = {"format": np.array(CACHE_FORMAT, dtype=np.int64), "offsets": offsets,
              "input_ids": np.fromiter(chain.from_iterable(data.input_ids), dtype=np.int32, count=int(offsets[-1])),
              "labels": np.asarray(data.labels, dtype=np.float64 if data.is_regression else np.int64),
              "is_regression": np.array(bool(data.is_regression))}
    if data.token_type_ids is not None:
        arrays["token_type_ids"] = np.fromiter(chain.from_iterable(data.token_type_ids), dtype=np.int8,
                                               count=int(offsets[-1]))
    atomic_write(path, "wb", lambda fh: np.savez(fh, **arrays))


def load_encoded(path: Path) -> Encoded:
    """Read a cache file written by `save_encoded`. `allow_pickle=False`: a file that holds a pickle
    (an old cache, or one planted in a shared cache folder) is refused with ValueError, never run."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80":  # a pickle's first byte (protocol 2 and later)
        raise ValueError("the file holds a pickle: refused as data, never unpickled")
    if head != b"PK":
        raise ValueError("not an .npz archive")
    with np.load(path, allow_pickle=False) as z:
        if not hasattr(z, "files") or int(z["format"]) != CACHE_FORMAT:
            raise ValueError(f"not a peft-bench tokenisation cache of format {CACHE_FORMAT}")
        off = z["offsets"].tolist()
        ids = z["input_ids"].tolist()
        tt = z["token_type_ids"].tolist() if "token_type_ids" in z.files else None
        rows = [ids[off[i]:off[i + 1]] for i in range(len(off) - 1)]
        return Encoded(rows, [tt[off[i]:off[i + 1]] for i in range(len(off) - 1)] if tt is not None else None,
                       z["labels"].tolist(), bool(z["is_regression"]))


def encode_cached(examples, tokenizer, max_len: int, is_regression: bool,
                  cache_dir: str | None) -> tuple[Encoded, bool]:
    """`encode` with an on-disk cache keyed by the exact texts, labels, tokenizer vocabulary and
    max length, so a changed file or tokenizer can never hit a stale entry. Returns (data, hit).
    It pays for large splits: loading SST-2 train's entry takes a fraction of tokenising it
    (measured in docs/performance.md).

    The cache is data, not code: .npz arrays read with allow_pickle=False. A damaged or foreign file
    is rebuilt with a warning; a pickled entry (`<key>.pkl`) is never opened, only named once and left
    for the user to delete."""
    if not cache_dir:
        return encode(examples, tokenizer, max_len, is_regression), False
    path = cache_path(examples, tokenizer, max_len, is_regression, cache_dir)
    if path.exists():
        try:
            return load_encoded(path), True
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("tokenisation cache %s: not a data-only cache file (%s); ignored and rebuilt", path, exc)
    old = path.with_suffix(".pkl")
    if old.exists() and str(old) not in _WARNED:
        _WARNED.add(str(old))
        log.warning("tokenisation cache %s: a pickle from an older peft-bench; not loaded (pickles can run code), "
                    "rebuilt as %s; delete the old .pkl files", old, path.name)
    data = encode(examples, tokenizer, max_len, is_regression)
    save_encoded(path, data)
    return data, False


_WARNED: set[str] = set()


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
    the first steps of a length-grouped epoch are not a fair sample of its batch sizes (measured in
    docs/performance.md, "Does the pass measure what a serial run measures?")."""
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
