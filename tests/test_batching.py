"""Batching: the vectorised collate against a row-by-row reference, padding to a multiple (the CUDA
default), length-sorted feature extraction, and fp32 master weights from half-precision checkpoints."""
from __future__ import annotations

import random

import pytest
import torch
from omegaconf import OmegaConf
from tiny import TINY_BERT

from bench.data.batching import Encoded, collate, padded_width
from bench.errors import ConfigError
from bench.models.backbones import build_model
from bench.recipe.runtime import pick_pad_multiple
from bench.training.forward import pooled_features


def reference_collate(data: Encoded, ids, pad_id, multiple=1):
    width = max(len(data.input_ids[i]) for i in ids)
    width = -(-width // multiple) * multiple
    rows, masks, tts = [], [], []
    for i in ids:
        s = data.input_ids[i]
        rows.append(s + [pad_id] * (width - len(s)))
        masks.append([1] * len(s) + [0] * (width - len(s)))
        if data.token_type_ids is not None:
            tts.append(data.token_type_ids[i] + [0] * (width - len(s)))
    return rows, masks, tts


@pytest.mark.parametrize("multiple", [1, 8])
@pytest.mark.parametrize("pairs", [False, True])
def test_collate_matches_row_by_row_reference(multiple, pairs):
    rng = random.Random(0)
    ids = [[101] + [rng.randint(1000, 2000) for _ in range(rng.randint(0, 40))] + [102] for _ in range(50)]
    tts = [[rng.randint(0, 1) for _ in s] for s in ids] if pairs else None
    data = Encoded(ids, tts, [rng.randint(0, 2) for _ in ids], False)
    batch_ids = rng.sample(range(50), 17)
    b = collate(data, batch_ids, 7, multiple)
    rows, masks, tt = reference_collate(data, batch_ids, 7, multiple)
    assert b["input_ids"].tolist() == rows
    assert b["attention_mask"].tolist() == masks
    assert b["labels"].tolist() == [data.labels[i] for i in batch_ids]
    assert b["input_ids"].shape[1] % multiple == 0
    if pairs:
        assert b["token_type_ids"].tolist() == tt
    else:
        assert "token_type_ids" not in b


def test_padded_width_and_pad_multiple_setting():
    assert [padded_width(n, 8) for n in (1, 8, 9, 128)] == [8, 8, 16, 128]
    assert padded_width(13, 1) == 13
    assert pick_pad_multiple("auto", torch.device("cpu")) == 1
    assert pick_pad_multiple("auto", torch.device("cuda")) == 8
    assert pick_pad_multiple(16, torch.device("cpu")) == 16
    for bad in (0, -8, "eight", True, 2.5):
        with pytest.raises(ConfigError, match="train.pad_to_multiple_of"):
            pick_pad_multiple(bad, torch.device("cpu"))


def tiny():
    return build_model(OmegaConf.create(TINY_BERT), 2, 0)


def test_length_sorted_features_land_in_file_order():
    built = tiny()
    rng = random.Random(1)
    ids = [[101] + [rng.randint(1000, 2000) for _ in range(rng.randint(1, 30))] + [102] for _ in range(37)]
    data = Encoded(ids, [[0] * len(s) for s in ids], [0] * 37, False)
    feats = pooled_features(built.model, data, 8, 0, torch.device("cpu"), "fp32", True)
    built.model.eval()
    with torch.no_grad():
        for i in (0, 5, 36):
            one = collate(data, [i], 0)
            f = built.model.features(one["input_ids"], one["attention_mask"], one["token_type_ids"])
            assert torch.allclose(feats[i], f[0], atol=1e-5)


def test_half_precision_checkpoint_loads_as_fp32(tmp_path):
    """transformers 5 keeps a checkpoint's dtype; training needs fp32 master weights."""
    built = tiny()
    built.model.backbone.half().save_pretrained(tmp_path)
    cfg = {"name": "half", "source": str(tmp_path), "tokenizer": "bundled:minilm", "pretrained": True,
           "pooling": "mean"}
    again = build_model(OmegaConf.create(cfg), 2, 0)
    assert {p.dtype for p in again.model.parameters()} == {torch.float32}


def test_group_size_is_a_setting():
    """train.group_mega_batches: rows are sorted by length within runs of that many batches of the
    shuffled order (absent: 50); a smaller run keeps more of the shuffle, so batches repeat less."""
    import random

    from bench.data.batching import MEGA_BATCHES, batch_order

    lengths = [random.Random(i).randint(3, 60) for i in range(640)]
    default = batch_order(lengths, 16, seed=1, epoch=0, group_by_length=True)
    assert default == batch_order(lengths, 16, seed=1, epoch=0, group_by_length=True, mega_batches=MEGA_BATCHES)
    small = batch_order(lengths, 16, seed=1, epoch=0, group_by_length=True, mega_batches=4)
    assert sorted(i for b in small for i in b) == list(range(640))  # every row once
    assert small != default

    def pairs(order):
        return {(a, b) for batch in order for a in batch for b in batch if a < b}

    def reuse(mega):
        e0 = batch_order(lengths, 16, 1, 0, True, mega_batches=mega)
        e1 = batch_order(lengths, 16, 1, 1, True, mega_batches=mega)
        return len(pairs(e0) & pairs(e1)) / len(pairs(e0))

    assert reuse(4) < reuse(40)  # larger sorted groups make nearly the same batches every epoch


def test_timing_batches_represent_the_epoch(glue_dir):
    """The cost pass times a few steps; the batches it picks (representative_batches) must have the
    sizes of the whole epoch, which the epoch's first batches do not. Real SST-2 rows (words per row as
    length), the default batch size and grouping."""
    import statistics

    from bench.data.batching import batch_order, representative_batches

    rows = (glue_dir / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:2001]
    lengths = [len(r.split("\t")[0].split()) + 2 for r in rows]
    order = batch_order(lengths, 32, seed=0, epoch=0, group_by_length=True)

    def size(batches):
        return statistics.mean(len(b) * max(lengths[i] for i in b) for b in batches)

    picked = representative_batches(order, lengths, 25, warmup=5)
    assert len(picked) == 25 and len({tuple(b) for b in picked}) == 25 and all(b in order for b in picked)
    whole = size(order)
    assert abs(size(picked[5:]) / whole - 1) < 0.03  # the timed 20 within 3 % of the epoch's mean size
    firsts = [abs(size(batch_order(lengths, 32, s, 0, True)[5:25]) / whole - 1) for s in range(5)]
    assert max(firsts) > 0.03  # what the first steps gave: off by more, for some seed
    assert representative_batches(order, lengths, len(order) + 3, 5) == order  # more than an epoch: all of it
