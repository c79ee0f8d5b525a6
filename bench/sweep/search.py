"""The learning-rate search of a tuning study, as pure functions of rates and scores
(bench/sweep/study.py runs the trials; docs/protocol.md says why each rule is what it is).

* `initial_rates`: the first `study.search.initial` trials, log-evenly over the method's declared
  range (with `initial == trials`, the whole budget: the grid of a study without extension).
* `propose`: where the next trial of the budget goes. When the best full-length score sits at the
  lowest or highest rate tried, one step of the initial grid's spacing past it (a step that would
  cross the hard limit `range / max_factor .. range * max_factor` lands on the limit itself);
  otherwise the log-midpoint between the best rate and its better neighbour. Every method gets the
  same number of trials; only where they go depends on the scores.
* `position`: whether the chosen rate is interior, at the hard limit, or at an edge of the rates
  tried (and why), for the record and the edge count.
* `cut_plan`: the first rung's cut (successive halving) with the no-cut rule: a trial whose
  first-rung score is within noise of the best one is never cut, and when the best first-rung score
  is itself within noise of chance nothing is cut (one epoch has not separated the rates).
* `selection_noise`: the noise the cut is judged against, a paired bootstrap over the selection
  split's examples (bench.analysis.resampled_metrics), seeded so a resumed study makes the same cut.
"""
from __future__ import annotations

import math

import numpy as np

#: a proposal closer than this (relative, in log space) to a rate already tried counts as that rate
_SAME = 1e-6


def round_rate(x: float) -> float:
    """A rate to 3 significant digits, as the grid writes it (and as configs and records show it)."""
    return float(f"{x:.3g}")


def lr_grid(low: float, high: float, n: int) -> list[float]:
    """n rates evenly spaced on a log scale from low to high inclusive, to 3 significant digits."""
    if n == 1:
        return [round_rate(math.sqrt(low * high))]
    return [round_rate(low * (high / low) ** (i / (n - 1))) for i in range(n)]


def step_ratio(low: float, high: float, n: int) -> float:
    """The initial grid's spacing as a factor (4 rates over two decades: 10 ** (2/3) = 4.64); a
    one-rate grid steps by the range's square root."""
    return (high / low) ** (1.0 / (n - 1)) if n > 1 else math.sqrt(high / low)


def hard_limits(low: float, high: float, max_factor: float) -> tuple[float, float]:
    """The rates the search never passes: the declared range widened by `max_factor` on each side."""
    return round_rate(low / max_factor), round_rate(high * max_factor)


def best_index(scores: list[float | None]) -> int | None:
    """The best score's index (ties: the first, i.e. the order the caller lists rates in); None if none."""
    best = None
    for i, s in enumerate(scores):
        if s is not None and (best is None or s > scores[best]):
            best = i
    return best


def _tried(rates: list[float], x: float) -> bool:
    return any(abs(math.log(x / r)) < _SAME for r in rates)


def _best_by_rate(rates, scores) -> int | None:
    """Best full-length score; ties go to the smaller rate (the study's choice rule)."""
    order = sorted(range(len(rates)), key=lambda i: rates[i])
    b = best_index([scores[i] for i in order])
    return None if b is None else order[b]


def propose(rates: list[float], scores: list[float | None], limits: tuple[float, float], ratio: float,
            side_scores: list[float | None] | None = None) -> tuple[float, str] | None:
    """The next rate to try and why, or None when no untried rate is left to try.

    `rates`: every rate tried so far (pruned and failed ones included: they bound the search);
    `scores`: their full-length selection scores (None: pruned at the first rung, or failed);
    `side_scores`: first-rung scores, used only to say which neighbour of an interior best is the
    better one when a neighbour has no full-length score; `limits`: the hard limits; `ratio`: the step."""
    b = _best_by_rate(rates, scores)
    if b is None:
        return None
    lo_lim, hi_lim = limits
    best, low, high = rates[b], min(rates), max(rates)
    if best == high and best < hi_lim * (1 - _SAME):
        x = round_rate(min(best * ratio, hi_lim))
        if not _tried(rates, x):
            return x, "above the highest rate tried, where the best score lies"
    if best == low and best > lo_lim * (1 + _SAME):
        x = round_rate(max(best / ratio, lo_lim))
        if not _tried(rates, x):
            return x, "below the lowest rate tried, where the best score lies"
    side = side_scores or [None] * len(rates)

    def value(i: int) -> float:
        v = scores[i] if scores[i] is not None else side[i]
        return -math.inf if v is None else v

    below = [i for i in range(len(rates)) if rates[i] < best]
    above = [i for i in range(len(rates)) if rates[i] > best]
    near = [max(below, key=lambda i: rates[i])] if below else []
    near += [min(above, key=lambda i: rates[i])] if above else []
    for n in sorted(near, key=lambda i: (-value(i), rates[i])):  # the better neighbour first
        x = round_rate(math.sqrt(best * rates[n]))
        if not _tried(rates, x):
            return x, f"between the best rate and its {'lower' if rates[n] < best else 'higher'} neighbour"
    return None


def position(rates: list[float], scores: list[float | None], limits: tuple[float, float] | None,
             extended: bool = True) -> dict:
    """Where the chosen (best full-length) rate lies among the rates tried: `interior` (tried rates on
    both sides), `hard_limit` (at the edge of the rates tried, which is the hard limit), or `edge`
    (at the edge, limit not reached: the budget ran out, or the search did not extend), with `side`
    (low/high) and `reason` in words. `limits` None: the declared range was the only bound."""
    b = _best_by_rate(rates, scores)
    if b is None:
        return {"position": None, "side": None, "reason": "every trial failed"}
    best = rates[b]
    if min(rates) < best < max(rates):
        return {"position": "interior", "side": None,
                "reason": "tried rates on both sides score lower or failed"}
    side = "low" if best == min(rates) else "high"
    if len(rates) == 1:
        side = None
    if limits is not None and side is not None:
        lim = limits[0] if side == "low" else limits[1]
        if abs(math.log(best / lim)) < 1e-3:
            return {"position": "hard_limit", "side": side,
                    "reason": f"the search's hard limit ({lim:g}); the score may still rise past it"}
    why = ("the trial budget ran out before the search passed this edge" if extended
           else "the edge of the declared range; the search does not extend past it")
    return {"position": "edge", "side": side, "reason": why}


def cut_plan(scores: list[float | None], keep: int, noise: list[float] | float, chance: float | None = None,
             chance_noise: float | None = None) -> tuple[list[int], str]:
    """Which first-rung trials go on to the full length, and why.

    Cut rule: the best `keep` (ties to the smaller index) go on, and so does every trial whose score
    is within `noise[i]` of the best score (the difference is not separated from zero). No-cut rule:
    when the best score is within `chance_noise` of `chance` (the trials are near chance, so one
    rung has not separated them), every trial goes on. A failed trial (None) never goes on."""
    ok = [i for i, s in enumerate(scores) if s is not None]
    if not ok:
        return [], "every first-rung trial failed"
    noise = noise if isinstance(noise, list) else [noise] * len(scores)
    top = max(scores[i] for i in ok)
    if chance is not None and chance_noise is not None and top - chance <= chance_noise:
        return ok, f"no cut: the best first-rung score {top:.4f} is within noise of chance ({chance:.4f})"
    ranked = sorted(ok, key=lambda i: (-scores[i], i))
    kept = set(ranked[:keep]) | {i for i in ok if top - scores[i] <= noise[i]}
    if len(kept) == len(ok):
        return ok, "no cut: every first-rung score is within noise of the best"
    extra = len(kept) - min(keep, len(ok))
    why = f"cut: the best {min(keep, len(ok))}" + (f" and {extra} within noise of the best" if extra else "")
    return sorted(kept), why


def _score_samples(keys: list[str], pred: np.ndarray, ref: np.ndarray, idx: np.ndarray) -> np.ndarray:
    from bench.analysis import resampled_metrics

    return np.mean([resampled_metrics.batch_metric(k, pred, ref, idx) for k in keys], axis=0)


def selection_noise(keys: list[str], preds: list[np.ndarray | None], ref: np.ndarray, z: float = 2.0,
                    b: int = 500, seed: int = 0) -> tuple[list[float], float]:
    """Noise of the first rung from the trials' selection-split predictions (same rows for every
    trial: one trial seed): for each trial, `z` x the paired-bootstrap SD of (best score - its score);
    and `z` x the bootstrap SD of the best trial's own score (for the comparison with chance).
    A trial without predictions gets infinite noise (it is never cut on noise it cannot show)."""
    from bench.analysis import resampled_metrics

    ref = np.asarray(ref, dtype=float)
    idx = resampled_metrics.resample_indices(len(ref), b, seed)
    full = np.arange(len(ref))[None, :]
    point = [None if p is None else float(_score_samples(keys, p, ref, full)[0]) for p in preds]
    best = best_index(point)
    if best is None:
        return [math.inf] * len(preds), math.inf
    samples = {i: _score_samples(keys, p, ref, idx) for i, p in enumerate(preds) if p is not None}
    noise = [math.inf if i not in samples else float(z * np.nanstd(samples[best] - samples[i]))
             for i in range(len(preds))]
    return noise, float(z * np.nanstd(samples[best]))


def chance_score(keys: list[str], kind: str, ref: np.ndarray) -> float:
    """What a predictor that learned nothing scores on the selection split: the best constant's
    selection score (bench.analysis.chance; a constant's undefined correlation counts as 0)."""
    from bench.analysis import chance

    base = chance.trivial_baselines(kind, ref, keys)
    vals = []
    for k in keys:
        c = chance.chance_constant(base, k)
        v = None if c is None else c.scores.get(k)
        vals.append(0.0 if v is None or not math.isfinite(v) else float(v))
    return float(np.mean(vals)) if vals else 0.0
