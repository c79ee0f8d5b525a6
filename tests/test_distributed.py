"""Data parallel (issue #27): the same cell on 2 CPU processes (gloo, loopback) and on 1 trains the
same model. Dropout is off in the model, the head and LoRA, so both compute the same function; what
differs is how each step's rows are split (2 shares, each padded to its own longest row) and the
order of the gradient sums (DDP's all-reduce), so the losses agree to float rounding, not bitwise.

The tolerance: relative 1e-4 on the final loss. fp32 rounding of a gradient summed in another order
is ~1e-7 relative, and three AdamW steps at lr 1e-3 keep a difference of that order far below 1e-4
(measured 2026-12-02: 0.7070350646972656 on 1 process, 0.7070351243019104 on 2, relative 8.4e-08).
33 training rows at batch 16 make steps of 16, 16 and 1 rows: the 1-row step leaves rank 1 an empty
share (its zero-weight pass), and the 16-row steps give each rank 8. Marked slow: 114 s on the shared
2-core machine at load ~11 (26 s of CPU; three processes start torch, transformers and peft).
"""
from __future__ import annotations

import json

import pytest

from bench.training.data_parallel import DataParallel
from tests.clitools import TINY, run_bench

NO_DROPOUT = ["model.head_dropout=0.0", "method.dropout=0.0",
              "+model.config_overrides.hidden_dropout_prob=0.0",
              "+model.config_overrides.attention_probs_dropout_prob=0.0"]
CELL = [*TINY, "task=rte", "method=lora", "train.max_train_samples=33", "train.max_eval_samples=32",
        "train.warmup_steps_excluded=0", "train.lr=1e-3", "inference.enabled=false", "progress.mode=off",
        *NO_DROPOUT]


def _records(folder) -> dict[int, dict]:
    out = {}
    for path in sorted((folder / "adhoc").glob("*.json")):
        rec = json.loads(path.read_text())
        out[int(rec["config"]["train"]["nproc"])] = rec
    return out


@pytest.mark.slow
def test_two_processes_train_like_one(glue_dir, tmp_path):
    proc = run_bench(["-m", *CELL, "train.nproc=1,2"], glue_dir, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = _records(tmp_path)
    one, two = recs[1], recs[2]
    assert one["status"] == two["status"] == "ok"
    assert one["train"]["steps"] == two["train"]["steps"] == 3  # the global batch: one process's steps
    assert two["train"]["effective_batch_size"] == one["train"]["effective_batch_size"] == 16
    assert two["train"]["final_loss"] == pytest.approx(one["train"]["final_loss"], rel=1e-4)
    for key, value in one["metrics"].items():  # the same weights predict the same eval rows
        assert two["metrics"][key] == pytest.approx(value, abs=1e-9)
    dist = two["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo" and len(dist["per_rank"]) == 2
    ranks = dist["per_rank"]
    assert all(r["memory"]["peak_rss_bytes"] > 0 for r in ranks)
    assert two["throughput"]["train_samples_per_s"] == pytest.approx(
        sum(r["throughput"]["train_samples_per_s"] for r in ranks))
    assert [r["timed_steps"] for r in ranks] == [3, 3]  # every rank joins every step (rank 1's last share is empty)
    assert "distributed" not in one
    assert len(list((tmp_path / "adhoc").glob("*.json"))) == 2  # rank 1 wrote nothing of its own
    print(f"\nfinal loss: 1 process {one['train']['final_loss']!r}, 2 processes {two['train']['final_loss']!r}, "
          f"relative difference {abs(two['train']['final_loss'] - one['train']['final_loss']) / one['train']['final_loss']:.2e}")


class _Shards(DataParallel):
    """DataParallel's share rule without a process group."""

    def __init__(self, rank: int, size: int):  # no DDP: only the rule under test
        self.rank, self.size = rank, size


@pytest.mark.parametrize("n,size", [(16, 2), (15, 2), (1, 2), (10, 4), (3, 4)])
def test_shares_cover_the_step_once_and_differ_by_at_most_one(n, size):
    ids = list(range(100, 100 + n))
    shares = [_Shards(r, size).shard(ids) for r in range(size)]
    assert [i for s in shares for i in s] == ids  # contiguous, in order, each row once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize(("device", "match"), [
    ("mps", "not on MPS"),
    ("cuda", "one GPU per process"),
])
def test_a_data_parallel_cell_that_cannot_run_here_is_refused_by_the_check(device, match):
    """bench.recipe.validate.check hands check_nproc the typed train settings it built: the refusal names
    the setting (and is skipped where the machine has the GPUs)."""
    import torch

    from bench.errors import ConfigError
    from bench.params import compose_config
    from bench.recipe.validate import check

    if device == "cuda" and torch.cuda.device_count() >= 64:
        pytest.skip("this machine has the GPUs")
    cfg = compose_config([*TINY, "method=lora", "train.nproc=64", f"train.device={device}"])
    with pytest.raises(ConfigError, match=rf"train.nproc=64: .*{match}"):
        check(cfg)
