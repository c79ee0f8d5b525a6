"""What a finetuned model costs after training: latency, throughput, merging, extra length.

Why measured this way (docs/inference.md):
- The method's model and a *reference* (the same backbone freshly loaded + a head of the same shape)
  are timed in the same process, **interleaved** call by call (the order rotates every repeat), and
  the figure is the ratio of medians. Load drift on a shared machine then hits both alike; the
  per-repeat ratio's quartiles say how stable the ratio was.
- Warm-up calls (allocator growth, lazy init, first-call kernels) run before timing starts and are
  never in the samples. On CUDA every timed call is bracketed by CUDA events and synchronised, so
  asynchronous kernel launches are not mistaken for finished work; on CPU `time.perf_counter`.
- Inputs are synthetic: random vocabulary ids of exact token lengths, all attended, no
  token_type_ids, so every variant sees identical shapes (the record says so).
- The extra length a method adds is read from the shapes that reach the transformers model (a
  forward pre-hook), not from the config: prompt tuning lengthens the input (and so every
  activation), prefix tuning lengthens only the attended keys/values.
- Merging: peft methods that can merge (LoRA, IA3) are merged with `merge_and_unload` on a deep copy
  and the merged model's logits are checked against the unmerged ones; methods that only change
  existing weights (full, bitfit, head_only) are merged by nature; bottleneck adapters and prompt /
  prefix tuning cannot merge, and the record says why.
- The merged weights are then loaded into a *freshly built* model, as a saved merged checkpoint is
  when it is served. Timing the deep copy itself measured the copy, not the merge: on minilm at batch
  1 x 16 tokens (1 thread) a deep copy of the untouched reference ran 1.028x the reference, the merged
  deep copy 1.022x, the same merged weights loaded into a fresh build 1.004x (docs/inference.md).
- A/A floor: a second freshly built reference is timed as one more variant, so every record carries
  the ratio two identical models give (`overhead.aa`): the resolution of the other ratios.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from bench.config.schema import InferenceSettings, check_section
from bench.device import sync
from bench.inference.rounds import precision_section, protocol_text, ratio_interval, time_rounds
from bench.inference.variants import (
    INPUTS_NOTE,
    added_length,
    forward,
    inner_transformer,
    merged_and_checked,
    synthetic_inputs,
)
from bench.measure.memory import current_rss, reset_hwm, status_kb

#: the settings and their defaults, from the one schema (bench.config.schema.InferenceSettings)
DEFAULTS = {k: v for k, v in dataclasses.asdict(InferenceSettings()).items() if k != "enabled"}


# ------------------------------------------------------------------------------------------- timing

def _time_one(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call. CUDA: events around the call, then wait for the end event, so queued
    kernels are counted; the device is synchronised first so earlier work is not counted."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                     device: torch.device) -> dict[str, list[float]]:
    """`warmup` untimed rounds, then `repeats` timed rounds; each round calls every function once,
    the starting function rotating per round (A,B,C / B,C,A / ...), so no variant always runs first
    or always right after another. Returns the timed seconds per function, in round order (so
    samples with the same index were taken at nearly the same moment)."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    sync(device)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(_time_one(fns[n], device))
    return out


def summarize(samples: list[float], ref: list[float] | None = None) -> dict:
    """Median, p95 and IQR of one variant's seconds; with `ref`, the ratio of medians (the figure to
    quote) and the quartiles of the per-round ratio (its run-to-run spread)."""
    a = np.asarray(samples, float)
    q25, med, q75, p95 = np.percentile(a, [25, 50, 75, 95])
    out = {"median_ms": 1e3 * med, "p95_ms": 1e3 * p95, "iqr_ms": [1e3 * q25, 1e3 * q75], "n": len(a)}
    if ref is not None:
        r = np.asarray(ref, float)
        per_round = a / r
        out["ratio_vs_reference"] = float(med / np.median(r))
        out["ratio_per_round_quartiles"] = [float(x) for x in np.percentile(per_round, [25, 50, 75])]
        if len(a) >= 2:
            out["ratio_ci95"] = ratio_interval(a, r)
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------- memory

def _release_free_heap() -> bool:
    """glibc `malloc_trim(0)`: hand freed heap pages back to the kernel, so the next forward's
    activations show up as new resident memory instead of silently reusing pages kept from earlier
    calls (without it the figure reads 0 after the timing rounds; docs/inference.md). False where there
    is no glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def forward_memory(model: nn.Module, inputs: dict, device: torch.device, precision: str) -> dict:
    """Extra memory one forward at the throughput batch needs beyond what is resident before it
    (activations; weights excluded): kernel peak RSS reset before the call, and CUDA's allocator peak."""
    out = {"rss_extra_bytes": None, "cuda_extra_allocated_bytes": None, "heap_trimmed": _release_free_heap()}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = current_rss()
    hwm = reset_hwm()
    forward(model, inputs, device, precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        out["cuda_extra_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device) - before)
    if hwm:
        out["rss_extra_bytes"] = int(max(0, (status_kb("VmHWM") or rss0) - rss0))
    return out


def memory_section(variants: dict[str, nn.Module], inputs: dict, device: torch.device, precision: str) -> dict:
    """The record's `memory`: forward_memory of every variant at the throughput batch."""
    memory = {n: forward_memory(m, inputs, device, precision) for n, m in variants.items()}
    memory["process_rss_bytes"] = current_rss()
    memory["note"] = ("extra resident memory of one forward at the throughput batch beyond the resident set before "
                      "it (activations; freed heap returned to the kernel first with malloc_trim); the process "
                      "holds the trained model, the reference and any merged copy")
    return memory


# ------------------------------------------------------------------------------------------- the cell

def settings_from(icfg) -> dict:
    """Resolved `inference.*` settings with their defaults; ConfigError names a bad option (the
    rules are bench.config.schema.InferenceSettings', which the CLI checked before the cell)."""
    from omegaconf import OmegaConf

    given = OmegaConf.to_container(icfg, resolve=True) if OmegaConf.is_config(icfg) else dict(icfg or {})
    check_section("inference", given, InferenceSettings)
    s = dict(DEFAULTS)
    s.update({k: v for k, v in given.items() if k != "enabled"})
    s["lengths"] = list(s["lengths"])
    return s


def overheads(variants: list[str], latency: dict, batched: dict, merge_status: str) -> dict:
    """The section's `overhead`: each variant's latency ratios vs the reference (per length, their
    mean, batched); a natively merged method's merged figures are its own."""
    def overhead(variant):
        if variant not in variants:
            return None
        r1 = [latency[k][variant]["ratio_vs_reference"] for k in latency]
        return {"batch1_by_length": {k: latency[k][variant]["ratio_vs_reference"] for k in latency},
                "batch1_mean": float(np.mean(r1)) if r1 else None,
                "batched": batched[variant]["ratio_vs_reference"]}

    summary = {"method": overhead("method"), "merged": overhead("merged"), "aa": overhead("aa")}
    if merge_status == "native":
        summary["merged"] = summary["method"]
    return summary


def _variants(model: nn.Module, reference: nn.Module, fresh, s: dict, vocab: int, device: torch.device,
              precision: str) -> tuple[dict[str, nn.Module], dict, bool]:
    """The models timed side by side, the merge's record entry, and whether the merged model is the
    A/A control. A merged model loaded strictly into a fresh build of the reference has the
    reference's modules, shapes and layout: it is a second build of the reference, which is what the
    A/A control is, so it is timed once as both (a fourth variant would cost a quarter of every round)."""
    merged, merge = merged_and_checked(model, reference, fresh, s, vocab, device, precision)
    merged_is_aa = merged is not None and merge.get("fresh_build", False)
    aa = fresh().eval() if fresh is not None and not merged_is_aa else None
    variants = {"reference": reference, "method": model, **({"merged": merged} if merged is not None else {}),
                **({"aa": aa} if aa is not None else {})}
    return variants, merge, merged_is_aa


def _time_part(variants: dict[str, nn.Module], x: dict, device: torch.device, precision: str, rounds: dict,
               tag: str, lo: int, cap: int, warmup: int, target: float | None) -> dict:
    """One part (a batch-1 length, or the batched shape): interleaved rounds on the same inputs `x`;
    the rounds spent go into `rounds[tag]`, the summaries (ratios vs the reference) are returned."""
    fns = {n: (lambda m=m: forward(m, x, device, precision)) for n, m in variants.items()}
    t_part = time.perf_counter()
    times, rounds[tag] = time_rounds(fns, device, _time_one, warmup, lo, cap, target)
    rounds[tag]["seconds"] = time.perf_counter() - t_part
    return {n: summarize(times[n], None if n == "reference" else times["reference"]) for n in variants}


def measure(model: nn.Module, reference: nn.Module, settings: dict, device: torch.device,
            precision: str = "fp32", fresh: Callable[[], nn.Module] | None = None) -> dict:
    """The record's `inference` section for a finetuned `model` against `reference` (same backbone,
    fresh pretrained weights, same head shape). Both must already be on `device`. `fresh` builds
    another model like the reference (on `device`): it holds the merged weights and is the A/A
    control; without it neither is available (the record says so)."""
    t0 = time.perf_counter()
    s = settings
    model.eval()
    reference.eval()
    config = inner_transformer(model).config
    vocab, positions = int(config.vocab_size), int(getattr(config, "max_position_embeddings", 10**9))
    extra = added_length(model, vocab, device)
    variants, merge, merged_is_aa = _variants(model, reference, fresh, s, vocab, device, precision)
    budget = positions - extra["input_tokens"]
    t_setup = time.perf_counter() - t0

    target, rounds = s.get("target_halfwidth"), {}
    latency, skipped = {}, []
    for length in s["lengths"]:
        if length > budget:
            skipped.append(length)
            continue
        latency[str(length)] = _time_part(variants, synthetic_inputs(1, length, vocab, device), device, precision,
                                          rounds, str(length), s["min_repeats"], s["repeats"], s["warmup"], target)
    bl = min(s["batch_length"], budget)
    # The memory forwards (one per variant at the throughput batch, the same tensors) are the first
    # warm-up round of the throughput timing: each is a full untimed call at that shape, which is
    # all a warm-up round is; a batched call is the measurement's most expensive.
    # With target_halfwidth=null the order is the fixed protocol's: timing first, memory after.
    xb = synthetic_inputs(s["batch_size"], bl, vocab, device)
    first, t_mem = target is not None, time.perf_counter()
    memory = memory_section(variants, xb, device, precision) if first else None
    batched = _time_part(variants, xb, device, precision, rounds, "batched", s["batch_min_repeats"],
                         s["batch_repeats"], s["batch_warmup"] - first, target)
    for v in batched.values():
        v["samples_per_s"] = s["batch_size"] / (v["median_ms"] / 1e3)
    memory = memory or memory_section(variants, xb, device, precision)
    t_mem = time.perf_counter() - t_mem - rounds["batched"]["seconds"]

    summary = overheads(list(variants), latency, batched, merge["status"])
    if merged_is_aa:
        summary["aa"] = summary["merged"]
    del variants
    return {
        "inputs": INPUTS_NOTE,
        "device": str(device), "precision": precision, "threads": torch.get_num_threads(),
        "timer": ("CUDA events + synchronize per call" if device.type == "cuda" else "time.perf_counter per call"),
        "protocol": protocol_text(s),
        "precision_reached": precision_section(target, rounds),
        "seconds_by_part": {"setup": t_setup, **{k: v["seconds"] for k, v in rounds.items()}, "memory": t_mem},
        "reference": "the same backbone freshly loaded (pretrained weights) + a head of the same shape",
        "aa_control": _aa_note(fresh is not None, merged_is_aa),
        "settings": {k: s[k] for k in DEFAULTS},
        "added_length": extra,
        "merge": merge,
        "latency_batch1": latency,
        "lengths_skipped": skipped,
        "throughput": {"batch_size": s["batch_size"], "length": bl, **batched},
        "overhead": summary,
        "memory": memory,
        "seconds": time.perf_counter() - t0,
    }


def _aa_note(built: bool, merged_is_aa: bool) -> str:
    if not built:
        return "not measured (no builder given)"
    if merged_is_aa:
        return ("the merged model: a second fresh build of the reference (its merged weights loaded strictly, the "
                "same modules and shapes), timed like the others once: overhead.aa = overhead.merged is the ratio "
                "two identical architectures give (the measurement's floor)")
    return ("a second fresh build of the reference, timed like the others: overhead.aa is the ratio two "
            "identical models give (the measurement's floor)")


def _lazy_reference(model: nn.Module, fresh: Callable[[], nn.Module]) -> nn.Module | None:
    """A reference for merged_variant, built only where it is read: a peft model's merge never looks
    at it (a reused measurement then costs one model build, the merge target, not two)."""
    return None if getattr(model.backbone, "active_peft_config", None) is not None else fresh()


def measure_cell(cfg, model: nn.Module, num_labels: int, seed: int, device: torch.device, precision: str,
                 run_id: str | None = None) -> dict:
    """run.py's entry point: build the reference from the cell's own model config and measure, or
    reuse the measurement of the same structure (bench/inference/cache.py)."""
    from bench.models.backbones import build_model
    from bench.models.levers import weights_dtype

    settings = settings_from(cfg.get("inference"))
    dtype = weights_dtype(cfg.train)
    threads = torch.get_num_threads()
    if settings["threads"] is not None and device.type == "cpu":
        # One thread by default: per-core latency is what a CPU server with one request per core
        # sees, and on a shared machine multi-threaded timings collapse under contention (measured:
        # 2 threads at load 10 gave per-round ratio quartiles of 0.5-2.7, docs/inference.md).
        torch.set_num_threads(int(settings["threads"]))

    def fresh() -> nn.Module:
        torch_state = torch.get_rng_state()
        try:
            ref = build_model(cfg.model, num_labels, seed, dtype).model  # the base as the cell stores it
            return (ref.to(torch.bfloat16) if dtype == "bf16" else ref).to(device)
        finally:
            torch.set_rng_state(torch_state)

    try:
        if not settings.get("share", True):
            return measure(model, fresh(), settings, device, precision, fresh)
        from bench.inference import cache as share

        blob = share.structure_blob(cfg, num_labels, settings, device, precision)
        key = share.structure_key(blob)
        path = share.entry_path(cfg, key, settings)
        entry = share.load(path, blob)
        if entry is None:
            section = measure(model, fresh(), settings, device, precision, fresh)
            share.store(path, section, share.measured_by(cfg, seed, run_id), blob)
            return dict(section, shared={"from": None, "key": key, "why": "measured here; later cells with the same "
                                                                       "structure reuse it (bench/inference/cache.py)"})
        t0 = time.perf_counter()
        model.eval()
        vocab = int(inner_transformer(model).config.vocab_size)
        # Only the check runs here, so the merged deep copy is checked as it is (no fresh build to
        # time); the reference is needed only to tell native from not-applicable methods (shapes).
        _, merge = merged_and_checked(model, _lazy_reference(model, fresh), None, settings, vocab, device, precision)
        if merge.get("status") == "merged":
            merge["how"] += "; checked here on this cell's weights, timed (shared) as loaded into a fresh build"
        return share.reuse(entry, merge, time.perf_counter() - t0, key)
    finally:
        torch.set_num_threads(threads)
