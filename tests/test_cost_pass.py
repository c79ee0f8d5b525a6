"""The cost pass (bench/sweep/cost_pass.py): cells run side by side for their metrics, then their speed
figures are measured again alone. It must replace throughput, MFU and inference (keeping what it
replaced), leave metrics, predictions and memory alone, skip what it already measured, and name a
bad folder. Real cells on the tiny model, real records."""
from __future__ import annotations

import pytest
from clitools import TINY, records_in, run_bench, run_python

from bench.records import schema as R


@pytest.mark.slow
def test_cost_pass_remeasures_speed_and_keeps_metrics(tmp_path, glue_dir):
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,head_only", "sweep_name=par", "hydra/launcher=parallel",
                      "train.threads=1", "inference.enabled=false", "train.max_train_samples=160"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = {r["method"]: r for r in records_in(tmp_path / "par")}
    assert all(r["inference"] is None and "cost_pass" not in r for r in before.values())

    proc = run_python(["-m", "bench.sweep.cost_pass", tmp_path / "par", "--steps", "4", "--warmup", "1", "--inference"],
                      glue_dir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cost pass 2/2" in proc.stdout
    after = {r["method"]: r for r in records_in(tmp_path / "par")}
    for m, rec in after.items():
        old = before[m]
        cp = rec["cost_pass"]
        assert rec["metrics"] == old["metrics"] and rec["predictions"] == old["predictions"]
        assert rec["memory"] == old["memory"] and rec["config_hash"] == old["config_hash"]
        assert cp["replaced"]["throughput"] == old["throughput"] and cp["replaced"]["inference"] is None
        assert rec["throughput"]["train_samples_per_s"] > 0 and rec["throughput"] != old["throughput"]
        assert rec["inference"]["latency_batch1"] and rec["flops"]["mfu"] is not None
        assert rec["flops"]["train_flops"] == old["flops"]["train_flops"]  # the whole run's work, not the pass's
        R.read_record(rec["_path"])  # still a valid record
    assert after["lora"]["cost_pass"]["train_steps_timed"] == 4  # 1 warm-up + 4 timed of the 10-step run
    assert after["head_only"]["cost_pass"]["train_steps_timed"] == 10 - 1  # cached features: the whole (short) run

    again = run_python(["-m", "bench.sweep.cost_pass", tmp_path / "par"], glue_dir, timeout=120)
    assert again.returncode == 0 and "nothing to measure" in again.stdout
    bad = run_python(["-m", "bench.sweep.cost_pass", tmp_path / "nosuch"], glue_dir, timeout=120)
    assert bad.returncode == 2 and "nosuch: no such folder" in bad.stderr


@pytest.mark.slow
def test_inference_only_pass_measures_one_record_per_method(tmp_path, glue_dir):
    """The catalogue's cost pass: inference (and mergeability) for the lowest seed of each method
    only; the run's throughput stays, the other seeds are untouched."""
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora", "train.seed=0,1", "sweep_name=cat", "inference.enabled=false",
                      "train.max_train_samples=64", "train.epochs=1"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    moved = tmp_path / "shared_folder" / "cat"  # a results folder moved after the run (its configs name the old one)
    moved.parent.mkdir()
    (tmp_path / "cat").rename(moved)
    before = {r["seed"]: r for r in records_in(moved)}
    assert all(r["capabilities"]["mergeable"] is None for r in before.values())
    proc = run_python(["-m", "bench.sweep.cost_pass", moved, "--inference-only", "--one-per-method",
                       "--steps", "2", "--warmup", "1"], glue_dir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cost pass 1/1" in proc.stdout and "merge merged" in proc.stdout
    after = {r["seed"]: r for r in records_in(moved)}
    measured, untouched = after[0], after[1]
    assert measured["inference"]["merge"]["status"] == "merged" and measured["capabilities"]["mergeable"] is True
    assert measured["inference"]["merge"]["check"]["equal_within_atol"]
    assert measured["throughput"] == before[0]["throughput"] and measured["metrics"] == before[0]["metrics"]
    assert measured["cost_pass"]["replaced"] == {"inference": None}
    assert untouched["inference"] is None and "cost_pass" not in untouched
    R.read_record(measured["_path"])
    # the pass's shared measurements lie beside the records it measured (not where the config ran)
    assert list((moved / ".inference_shared").glob("*.json")) and not (tmp_path / "cat").exists()
