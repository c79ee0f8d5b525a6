"""Inference measurements (issue #14), on real tiny models and real peft: the timer, merging, the
measured added length, and the record section's shape."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_methods import TRAIN, _toy_data, build

from bench.inference.cost import DEFAULTS, measure, settings_from, summarize, time_interleaved
from bench.inference.variants import added_length, check_merged, merged_variant
from bench.training.loop import train_model

CPU = torch.device("cpu")


@pytest.fixture
def one_thread():
    """One thread: the machine is shared, and a single thread makes cost proportional to work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def matmul_chain(units: int, heavy_first: int = 1):
    """A sleep-free workload whose cost is `units` 256x256 matmuls; the first call does
    `heavy_first` times as much (like a first call that builds kernels or grows the allocator).
    Calls last tens of milliseconds, many scheduler slices, so on a loaded machine short and long
    calls are preempted in the same proportion (with ~1 ms calls the long ones were hit far more
    often: 29x the time for 4x the work at load average 9)."""
    a = torch.randn(256, 256) / 16
    calls = [0]

    def run():
        calls[0] += 1
        n = units * (heavy_first if calls[0] == 1 else 1)
        x = a
        for _ in range(n):
            x = x @ a
        return x

    return run, calls


def test_timer_follows_the_work_and_excludes_warmup(one_thread):
    short, short_calls = matmul_chain(16, heavy_first=40)
    long, long_calls = matmul_chain(64)
    times = time_interleaved({"short": short, "long": long}, repeats=15, warmup=1, device=CPU)
    assert len(times["short"]) == len(times["long"]) == 15
    assert short_calls[0] == long_calls[0] == 16  # 1 warm-up + 15 timed calls each
    ratio = np.median(times["long"]) / np.median(times["short"])
    assert 2.5 < ratio < 6.4, f"4x the work took {ratio:.2f}x the time"
    # The first call costs 40x a normal one; had it been timed, the maximum would show it.
    assert max(times["short"]) < 10 * np.median(times["short"])


def test_without_warmup_the_heavy_first_call_is_visible(one_thread):
    """Negative control for the test above: the same check fails when the first call is timed."""
    short, _ = matmul_chain(16, heavy_first=40)
    times = time_interleaved({"short": short}, repeats=15, warmup=0, device=CPU)
    assert max(times["short"]) > 10 * np.median(times["short"])


def test_summarize_ratio_of_medians_and_spread():
    ref = [1.0, 2.0, 3.0, 4.0, 100.0]
    s = summarize([2.0, 4.0, 6.0, 8.0, 200.0], ref)
    assert s["ratio_vs_reference"] == pytest.approx(2.0)
    assert s["ratio_per_round_quartiles"] == pytest.approx([2.0, 2.0, 2.0])
    assert s["median_ms"] == pytest.approx(6000.0)
    assert s["n"] == 5


def _trained(name: str, **settings):
    built, method = build("tiny-bert", {"_target_": name, "name": name, "lr": 5e-2, **settings})
    train_model(built.model, method, _toy_data(), TRAIN, CPU, pad_id=0)
    built.model.eval()
    return built, method


def _reference():
    built, _ = build("tiny-bert", {"_target_": "head_only", "name": "head_only"})
    return built.model.eval()


@pytest.mark.parametrize("fresh", [False, True], ids=["deep-copy", "loaded-into-fresh-build"])
@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_merged_and_unmerged_predictions_agree(name, fresh):
    built, _ = _trained(name)
    builds = []

    def fresh_build():
        builds.append(_reference())
        return builds[-1]

    merged, how = merged_variant(built.model, _reference(), fresh_build if fresh else None)
    assert how["status"] == "merged", how
    if fresh:  # the merged weights now live in the freshly built model (a served checkpoint's layout)
        assert len(builds) == 1 and merged is builds[0] and "freshly built" in how["how"]
    assert type(merged.backbone).__name__ == "BertModel"  # plain transformers model, no peft layers
    assert not any("lora_" in n or "ia3_" in n for n, _ in merged.named_parameters())
    check = check_merged(built.model, merged, 30522, CPU, "fp32", atol=1e-4)
    assert check["equal_within_atol"], check
    assert check["argmax_agreement"] == 1.0
    # the check can fail: a perturbed merged model is caught (random noise: a constant shift would
    # vanish against LayerNorm's zero-mean outputs)
    with torch.no_grad():
        w = merged.backbone.encoder.layer[0].attention.self.value.weight
        w.add_(0.1 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    assert not check_merged(built.model, merged, 30522, CPU, "fp32", atol=1e-4)["equal_within_atol"]
    # merging worked on a copy: the trained model still has its LoRA/IA3 layers
    assert type(built.model.backbone).__name__.startswith("Peft")


@pytest.mark.parametrize("name,status,why", [
    ("adapter", "not_applicable", "nonlinear"),
    ("prompt_tuning", "not_applicable", "prepends"),
    ("prefix_tuning", "not_applicable", "key/value"),
    ("full", "native", None),
    ("bitfit", "native", None),
])
def test_merge_status_of_methods_that_cannot_or_need_not_merge(name, status, why):
    built, _ = build("tiny-bert", {"_target_": name, "name": name})
    merged, how = merged_variant(built.model.eval(), _reference())
    assert merged is None and how["status"] == status, how
    if why:
        assert why in how["why"]


@pytest.mark.parametrize("name,n,input_extra,kv_extra", [
    ("prompt_tuning", 7, 7, 7),
    ("prompt_tuning", 3, 3, 3),
    ("prefix_tuning", 5, 0, 5),
    ("lora", None, 0, 0),
    ("adapter", None, 0, 0),
])
def test_added_length_is_measured_from_shapes(name, n, input_extra, kv_extra):
    settings = {"num_virtual_tokens": n} if n else {}
    built, _ = build("tiny-bert", {"_target_": name, "name": name, **settings})
    extra = added_length(built.model.eval(), 30522, CPU)
    assert (extra["input_tokens"], extra["key_value_tokens"]) == (input_extra, kv_extra)


def test_measure_writes_a_complete_section(one_thread):
    built, _ = _trained("prompt_tuning", num_virtual_tokens=4)
    s = settings_from({"lengths": [8, 16], "repeats": 5, "warmup": 1, "batch_size": 4, "batch_length": 16,
                       "batch_repeats": 3, "batch_warmup": 1})
    sec = measure(built.model, _reference(), s, CPU, fresh=_reference)
    assert set(sec["latency_batch1"]) == {"8", "16"}
    # the A/A control: a second fresh build timed like the others gives a finite ratio near 1
    aa = sec["overhead"]["aa"]
    assert set(aa["batch1_by_length"]) == {"8", "16"} and math.isfinite(aa["batched"])
    assert "second fresh build" in sec["aa_control"]
    assert measure(built.model, _reference(), s, CPU)["overhead"]["aa"] is None
    assert sec["added_length"]["input_tokens"] == 4
    assert sec["merge"]["status"] == "not_applicable" and sec["overhead"]["merged"] is None
    for length in ("8", "16"):
        m = sec["latency_batch1"][length]["method"]
        assert m["n"] == 5 and math.isfinite(m["ratio_vs_reference"]) and m["median_ms"] > 0
    assert sec["throughput"]["method"]["samples_per_s"] > 0
    assert sec["settings"]["repeats"] == 5 and "synthetic" in sec["inputs"]
    # stop when precise (issue #26): min_repeats (default 8) above the cap of 5 -> the cap; every
    # ratio carries its interval, the section the rounds spent and the half-width reached
    prec = sec["precision_reached"]
    assert prec["rounds"] == {"8": 5, "16": 5, "batched": 3} and prec["target_halfwidth"] == DEFAULTS["target_halfwidth"]
    lo, hi = sec["latency_batch1"]["8"]["method"]["ratio_ci95"]
    assert lo <= sec["latency_batch1"]["8"]["method"]["ratio_vs_reference"] <= hi
    assert prec["halfwidth_max"] == max(prec["halfwidth"].values()) > 0
    fixed = measure(built.model, _reference(), dict(s, target_halfwidth=None, repeats=4), CPU)
    assert fixed["precision_reached"]["rounds"]["8"] == 4 and fixed["precision_reached"]["met"] is None
    loose = measure(built.model, _reference(), dict(s, target_halfwidth=50.0, min_repeats=3, repeats=30), CPU)
    assert loose["precision_reached"]["rounds"]["8"] == 3 and loose["precision_reached"]["met"] is True


def test_a_merged_fresh_build_is_timed_once_as_the_aa_control(one_thread):
    """A LoRA model merged into a fresh build of the reference is a second reference build: it is
    timed once and serves as the A/A floor (three variants a round, not four; issue #26)."""
    built, _ = _trained("lora")
    builds = []

    def fresh_build():
        builds.append(_reference())
        return builds[-1]

    s = settings_from({"lengths": [8], "repeats": 4, "min_repeats": 3, "warmup": 1, "batch_size": 2,
                       "batch_length": 8, "batch_repeats": 3, "batch_warmup": 1})
    sec = measure(built.model, _reference(), s, CPU, fresh=fresh_build)
    assert sec["merge"]["status"] == "merged" and sec["merge"]["fresh_build"] is True
    assert len(builds) == 1  # the merge target only: no separate A/A build
    assert set(sec["latency_batch1"]["8"]) == {"reference", "method", "merged"}
    assert sec["overhead"]["aa"] == sec["overhead"]["merged"] and "merged model" in sec["aa_control"]
    # without a fresh build the merged model is a deep copy of the peft model: no A/A control then
    copy_sec = measure(built.model, _reference(), s, CPU)
    assert copy_sec["merge"]["fresh_build"] is False and copy_sec["overhead"]["aa"] is None


@pytest.mark.parametrize("bad,option", [({"lengths": [0]}, "inference.lengths"), ({"repeats": 1}, "inference.repeats"),
                                        ({"merge_atol": -1}, "inference.merge_atol")])
def test_bad_settings_name_the_option(bad, option):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        settings_from(bad)


def test_forward_memory_grows_with_the_batch(one_thread):
    from bench.inference.cost import forward_memory
    from bench.inference.variants import synthetic_inputs

    model = _reference()
    for b in (2, 128):  # warm-up: first calls also allocate caches and thread pools
        forward_memory(model, synthetic_inputs(b, 64, 30522, CPU), CPU, "fp32")
    small = forward_memory(model, synthetic_inputs(2, 64, 30522, CPU), CPU, "fp32")["rss_extra_bytes"]
    big = forward_memory(model, synthetic_inputs(128, 64, 30522, CPU), CPU, "fp32")["rss_extra_bytes"]
    assert big is not None and big > max(small, 1) * 4, (small, big)


def test_multi_adapter_script_counts_memory_exactly(tmp_path, one_thread):
    """benchmarks/bench_multi_adapter.py on tiny BERT: N merged models hold N backbones; one backbone
    with N LoRA adapters holds one backbone plus N small adapters; every setup was timed."""
    import importlib.util
    import json

    from clitools import REPO

    spec = importlib.util.spec_from_file_location("bench_multi_adapter", REPO / "benchmarks" / "bench_multi_adapter.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "ma.json"
    assert mod.main(["--model", "tiny_bert", "--ns", "1", "2", "--batches", "1", "--repeats", "3", "--warmup", "1",
                     "--threads", "1", "--length", "16", "--out", str(out)]) == 0
    res = {r["n"]: r for r in json.loads(out.read_text())["results"]}
    ref = res[1]["memory"]["reference"]["param_bytes"]
    assert res[2]["memory"]["merged_models"]["param_bytes"] == 2 * res[1]["memory"]["merged_models"]["param_bytes"]
    lora1, lora2 = res[1]["memory"]["lora_switch"]["param_bytes"], res[2]["memory"]["lora_switch"]["param_bytes"]
    assert ref < lora1 < lora2 < 1.5 * ref  # adapters are small next to a second backbone
    for n in (1, 2):
        for name in ("reference", "lora_switch", "adapter_switch", "merged_models"):
            assert res[n]["latency"]["1"][name]["median_ms"] > 0
    # switching really switches: task 0 and task 1 give different outputs, and switching back reproduces task 0
    from bench.inference.variants import synthetic_inputs
    x = synthetic_inputs(2, 16, 30522, CPU)
    for build_fn, arg in ((mod.build_lora_switch, 8), (mod.build_adapter_switch, 16)):
        select, _ = build_fn(mod.load_model_cfg("tiny_bert"), 2, arg)
        with torch.no_grad():
            a, b, a2 = select(0)(**x), select(1)(**x), select(0)(**x)
        assert not torch.allclose(a, b, atol=1e-5) and torch.equal(a, a2), build_fn.__name__
