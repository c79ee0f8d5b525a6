"""Interleaved timing rounds that stop when every ratio is precise enough.

Why: a fixed number of rounds spends the same time whether the ratios settled after a few rounds or
never do; on a quiet CPU most of it confirms what the first rounds already showed. Rounds run until
the 95 % interval of every variant's ratio to the reference has a half-width of at most
`inference.target_halfwidth` (absolute, in ratio units: 0.01 = +-1 % of the reference), or until
the cap; the record says the half-width reached and the rounds spent (`inference.precision_reached`).

The interval: a percentile bootstrap of the quoted figure itself, the ratio of medians, resampling
whole *rounds* (a round's calls ran at nearly the same moment, so the pairing that makes the ratio
robust to load drift is kept). Stopping when an interval is first narrow enough makes that interval
slightly optimistic (a run that happened to look quiet stops early); the `min` rounds before the
first look, the cap, and the A/A variant (an interval that should contain 1.0) bound that, and the
two ways of measuring were compared on the default sweep's structures (docs/inference.md).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: bootstrap resamples of a recorded interval, and of a look of the stopping rule
RESAMPLES, CHECK_RESAMPLES = 2000, 1000
INTERVAL_NOTE = ("95 % percentile bootstrap of the ratio of medians, resampling whole rounds (paired), "
                 f"{RESAMPLES} resamples")


def _intervals(times: dict[str, list[float]], reference: str, level: float, resamples: int,
               seed: int) -> dict[str, list[float]]:
    """[low, high] per non-reference variant, all from the same resampled rounds (one draw of
    round indices, the reference's medians computed once)."""
    r = np.asarray(times[reference], float)
    if len(r) < 2 or any(len(v) != len(r) for v in times.values()):
        raise ValueError("ratio_interval needs >= 2 paired rounds")
    idx = np.random.default_rng(seed).integers(0, len(r), size=(resamples, len(r)))
    ref_med = np.median(r[idx], axis=1)
    out = {}
    for name, samples in times.items():
        if name != reference:
            boot = np.median(np.asarray(samples, float)[idx], axis=1) / ref_med
            lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
            out[name] = [float(lo), float(hi)]
    return out


def ratio_interval(samples, ref, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """[low, high] of the `level` interval of median(samples) / median(ref), rounds resampled
    together (same index = same round). Seeded, so a record's interval is reproducible from its
    samples."""
    return _intervals({"ref": ref, "x": samples}, "ref", level, resamples, seed)["x"]


def halfwidths(times: dict[str, list[float]], reference: str = "reference",
               resamples: int = CHECK_RESAMPLES) -> dict[str, float]:
    """Half-width of each non-reference variant's ratio interval (the stopping rule's look: fewer
    resamples than the recorded interval, so looking every round stays cheap next to a round)."""
    return {n: (hi - lo) / 2 for n, (lo, hi) in _intervals(times, reference, 0.95, resamples, 0).items()}


def _looks(min_rounds: int, max_rounds: int) -> set[int]:
    """Round counts after which the intervals are looked at: every round up to 16, then every
    second, then every third (a look costs a few ms; a 16-token round of four variants ~30 ms)."""
    return {n for n in range(min_rounds, max_rounds + 1) if n <= 16 or (n <= 24 and n % 2 == 0) or n % 3 == 0}


def time_rounds(fns: dict[str, Callable[[], object]], device: torch.device, time_one, warmup: int,
                min_rounds: int, max_rounds: int, target: float | None) -> tuple[dict[str, list[float]], dict]:
    """`warmup` untimed rounds, then timed rounds (each calls every function once, the starting one
    rotating per round, as bench.inference.cost.time_interleaved) until every ratio's half-width is <=
    `target` (looked at after `min_rounds` and then after the rounds `_looks` lists) or `max_rounds` ran.
    `target=None`: exactly `max_rounds` rounds (the fixed protocol). Returns the seconds per function
    in round order and {rounds, halfwidth (the widest), met}."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out: dict[str, list[float]] = {n: [] for n in names}
    widest, looks = None, _looks(min_rounds, max_rounds)
    for r in range(max_rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(time_one(fns[n], device))
        if target is not None and r + 1 in looks and len(names) > 1:
            widest = max(halfwidths(out).values())
            if widest <= target:
                break
    if widest is None and len(names) > 1 and len(out[names[0]]) >= 2:
        widest = max(halfwidths(out).values())
    rounds = len(out[names[0]])
    return out, {"rounds": rounds, "halfwidth": widest,
                 "met": None if target is None or widest is None else bool(widest <= target)}


def protocol_text(s: dict) -> str:
    if s.get("target_halfwidth") is None:
        how = (f"{s['repeats']} timed rounds at batch 1 ({s['batch_warmup']} + {s['batch_repeats']} at batch "
               f"{s['batch_size']}, then the memory forwards)")
    else:
        how = ("timed rounds at batch 1 until every ratio's 95 % interval has a half-width <= "
               f"{s['target_halfwidth']:g} "
               f"({s['min_repeats']}-{s['repeats']} rounds; at batch {s['batch_size']}: {s['batch_warmup']} warm-up "
               "(the memory forwards the first), "
               f"{s['batch_min_repeats']}-{s['batch_repeats']})")
    return (f"{s['warmup']} untimed warm-up rounds, then {how}; each round calls every variant once in rotating "
            "order; figures are ratios of medians vs the reference")


def precision_section(target: float | None, rounds: dict) -> dict:
    """The record's `inference.precision_reached`: the target, and per part (each batch-1 length and
    `batched`) the rounds spent and the widest ratio half-width reached."""
    reached = [v["halfwidth"] for v in rounds.values() if v["halfwidth"] is not None]
    return {"target_halfwidth": target, "interval": INTERVAL_NOTE,
            "rounds": {k: v["rounds"] for k, v in rounds.items()},
            "halfwidth": {k: v["halfwidth"] for k, v in rounds.items()},
            "halfwidth_max": max(reached) if reached else None,
            "met": None if target is None else all(v["met"] for v in rounds.values())}
