"""Stop-when-precise timing rounds and the structure cache's key (issue #26), on real workloads
(torch matmuls), real composed configs and real files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_inference import CPU, matmul_chain

from bench.inference import cache as share
from bench.inference.cost import _time_one, settings_from
from bench.inference.rounds import halfwidths, ratio_interval, time_rounds


def test_ratio_interval_covers_the_ratio_and_narrows_with_rounds():
    rng = np.random.default_rng(1)
    ref = 10 + rng.normal(0, 0.3, 200)
    method = 1.2 * ref * (1 + rng.normal(0, 0.02, 200))  # the method costs 1.2x, per-round noise 2 %
    lo, hi = ratio_interval(method, ref)
    assert lo < 1.2 < hi and hi - lo < 0.02
    lo10, hi10 = ratio_interval(method[:10], ref[:10])
    assert hi10 - lo10 > hi - lo  # fewer rounds, wider interval
    assert ratio_interval(method[:10], ref[:10]) == [lo10, hi10]  # seeded: reproducible from the samples
    with pytest.raises(ValueError, match="paired rounds"):
        ratio_interval([1.0], [1.0])


def test_rounds_stop_when_precise_and_run_to_the_cap_when_not():
    a, calls_a = matmul_chain(8)
    b, _ = matmul_chain(8)
    fns = {"reference": a, "same": b}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # cost proportional to work on a shared machine
    try:
        _rounds_cases(fns, calls_a)
    finally:
        torch.set_num_threads(before)


def _rounds_cases(fns, calls_a):
    # a loose target is met at the first look (after min_rounds), a tight one never is (loose enough
    # for a loaded machine: two identical workloads' ratio interval is nowhere near +-10)
    times, info = time_rounds(fns, CPU, _time_one, warmup=1, min_rounds=4, max_rounds=12, target=10.0)
    assert info == {"rounds": 4, "halfwidth": info["halfwidth"], "met": True} and info["halfwidth"] <= 10.0
    assert len(times["reference"]) == len(times["same"]) == 4 and calls_a[0] == 5  # 1 warm-up + 4 timed
    times, info = time_rounds(fns, CPU, _time_one, warmup=1, min_rounds=4, max_rounds=12, target=1e-9)
    assert info["rounds"] == 12 and info["met"] is False and info["halfwidth"] > 1e-9
    assert info["halfwidth"] == pytest.approx(max(halfwidths(times).values()))
    # no target: exactly max_rounds (the fixed protocol), its half-width still reported
    times, info = time_rounds(fns, CPU, _time_one, warmup=0, min_rounds=4, max_rounds=6, target=None)
    assert info["rounds"] == 6 and info["met"] is None and info["halfwidth"] > 0


def _cfg(**method):
    return OmegaConf.create({
        "model": {"name": "tiny_bert", "source": "bundled:tiny_bert", "pooling": "mean"},
        "method": {"_target_": "bench.methods.LoRA", "name": "lora", "lr": 1e-3, "r": 8, **method},
        "train": {"max_seq_len": 64, "seed": 0}, "task": {"name": "sst2"},
        "results_dir": "results", "sweep_name": "s"})


def test_structure_key_follows_what_decides_the_timing_only():
    s = settings_from({})
    key = share.structure_key(share.structure_blob(_cfg(), 2, s, CPU, "fp32"))
    # training-only settings, the seed and the task do not change the structure
    cfg = _cfg(lr=5e-4)
    cfg.train.seed, cfg.task.name = 3, "cola"
    assert share.structure_key(share.structure_blob(cfg, 2, s, CPU, "fp32")) == key
    assert share.structure_key(share.structure_blob(_cfg(), 2, dict(s, cache=False, share=True), CPU, "fp32")) == key
    # everything that does changes it: method structure, labels, lengths, target, precision, threads
    changed = [share.structure_blob(_cfg(r=16), 2, s, CPU, "fp32"), share.structure_blob(_cfg(), 1, s, CPU, "fp32"),
               share.structure_blob(_cfg(), 2, dict(s, lengths=[16]), CPU, "fp32"),
               share.structure_blob(_cfg(), 2, dict(s, target_halfwidth=0.02), CPU, "fp32"),
               share.structure_blob(_cfg(), 2, s, CPU, "bf16")]
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before != 1 else 2)
    try:
        changed.append(share.structure_blob(_cfg(), 2, s, CPU, "fp32"))
    finally:
        torch.set_num_threads(before)
    keys = [share.structure_key(b) for b in changed]
    assert key not in keys and len(set(keys)) == len(keys)
    blob = share.structure_blob(_cfg(), 2, s, CPU, "fp32")
    assert {"torch", "transformers", "peft", "device", "cpu_count", "protocol"} <= set(blob)


def test_cache_entry_is_json_and_read_only_under_its_own_key(tmp_path):
    s = settings_from({})
    blob = share.structure_blob(_cfg(), 2, s, CPU, "fp32")
    key = share.structure_key(blob)
    path = share.entry_path(_cfg(), key, s)
    assert path.parts[-2:] == (".inference_cache", f"{key}.json")
    assert share.entry_path(_cfg(), key, dict(s, cache=False)).parts[-3:] == ("s", ".inference_shared", f"{key}.json")
    path = tmp_path / f"{key}.json"
    section = {"latency_batch1": {"16": {}}, "overhead": {"method": None}, "merge": {"status": "merged"}, "other": 1}
    share.store(path, section, share.measured_by(_cfg(), 0, "run-1"), blob)
    entry = json.loads(path.read_text())  # plain JSON, not pickle
    assert entry["format"] == share.FORMAT and "other" not in entry and entry["measured_by"]["run_id"] == "run-1"
    assert share.load(path, blob) is not None
    assert share.load(path, dict(blob, torch="0.0")) is None  # other key inputs (a collision, an edit): a miss
    out = share.reuse(share.load(path, blob), {"status": "merged"}, 0.1, key)
    assert out["shared"]["from"] == "s / sst2 / seed 0" and out["shared"]["from_run_id"] == "run-1"
    path.write_text("{not json")
    assert share.load(path, blob) is None
