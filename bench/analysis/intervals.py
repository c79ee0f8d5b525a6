"""Intervals of one method's score: the t interval over seeds and the percentile bootstrap over examples."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from bench.analysis.resampled_metrics import DEFAULT_B, batch_metric, metric, resample_indices


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval and the words saying how it was computed."""

    estimate: float
    low: float
    high: float
    method: str


def t_bounds(mean, std, n, confidence: float = 0.95):
    """Vectorised t interval mean ± t_{(1+c)/2, n-1} · std/√n; NaN where n < 2 or std is NaN.

    Takes means/stds/counts already aggregated (a report has them per cell), so thousands of
    cells cost one scipy call."""
    mean, std, n = (np.asarray(x, dtype=float) for x in (mean, std, n))
    ok = n >= 2
    tq = sps.t.ppf(0.5 + confidence / 2, np.where(ok, n - 1, 1))
    half = np.where(ok, tq * std / np.sqrt(np.where(ok, n, 1)), np.nan)
    return mean - half, mean + half


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean over seeds; needs n >= 2 finite values (else ValueError)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {len(v)}")
    lo, hi = t_bounds(v.mean(), v.std(ddof=1), len(v), confidence)
    return Interval(float(v.mean()), float(lo), float(hi), f"t over seeds (n={len(v)})")


def bootstrap_ci(name: str, pred, ref, b: int = DEFAULT_B, seed: int = 0, confidence: float = 0.95) -> Interval:
    """Percentile bootstrap interval of a metric over the eval examples of one run."""
    pred = np.asarray(pred, dtype=float)
    samples = batch_metric(name, pred, ref, resample_indices(len(pred), b, seed))
    lo, hi = np.nanquantile(samples, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(metric(name, pred, ref), float(lo), float(hi), f"bootstrap over examples (1 seed, B={b})")
