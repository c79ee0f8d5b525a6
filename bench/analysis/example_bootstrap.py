"""A − B over shared examples with the seeds pooled: the paired bootstrap, its null-centred p and TOST.

Every replicate resamples the example indices once and scores every seed of both methods on that same
resample (bench.analysis.resampled_metrics), so the example-to-example variation both methods share
cancels. This test treats the seeds as fixed: it says whether these runs differ, not whether the
methods do (bench.analysis.two_level does that).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.analysis.equivalence import tost_p
from bench.analysis.resampled_metrics import DEFAULT_B, resample_indices, seed_mean


@dataclass(frozen=True)
class Paired:
    """A − B on the same examples, pooled over seeds: delta, its CI, two-sided p (null-centred)."""

    delta: float
    low: float
    high: float
    p: float
    n_examples: int
    b: int


def paired_from_samples(observed: float, samples: np.ndarray, n_examples: int,
                        confidence: float = 0.95) -> Paired:
    """Interval and p-value from the observed delta and its paired bootstrap replicates.

    p is the shifted (null-centred) bootstrap test (Berg-Kirkpatrick et al. 2012, two-sided):
    the replicates centred on the observed delta approximate its sampling distribution under
    H0: delta = 0, and p = (1 + #{|d* − d| >= |d|}) / (B + 1). The +1 keeps p > 0 with finite B."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if not np.isfinite(observed) or len(samples) == 0:
        return Paired(float("nan"), float("nan"), float("nan"), float("nan"), n_examples, len(samples))
    lo, hi = np.quantile(samples, [0.5 - confidence / 2, 0.5 + confidence / 2])
    extreme = np.abs(samples - observed) >= abs(observed) - 1e-12
    p = (1 + int(extreme.sum())) / (len(samples) + 1)
    return Paired(float(observed), float(lo), float(hi), float(p), n_examples, len(samples))


def paired_bootstrap(name: str, runs_a, runs_b, ref, b: int = DEFAULT_B, seed: int = 0,
                     confidence: float = 0.95) -> Paired:
    """Paired bootstrap of mean_seeds(metric(A)) − mean_seeds(metric(B)) over shared examples.

    All runs must already be aligned to `ref` (same example order). Every replicate resamples
    the example indices once and scores every seed of both methods on that same resample."""
    ref = np.asarray(ref, dtype=float)
    if not len(runs_a) or not len(runs_b):
        raise ValueError("paired_bootstrap needs at least one run of each method")
    idx = resample_indices(len(ref), b, seed)
    observed = float(seed_mean(name, runs_a, ref)[0] - seed_mean(name, runs_b, ref)[0])
    samples = seed_mean(name, runs_a, ref, idx) - seed_mean(name, runs_b, ref, idx)
    return paired_from_samples(observed, samples, len(ref), confidence)


def pooled_equiv(samples: np.ndarray, margin: float) -> tuple[float, float, float]:
    """(90 % interval low, high, TOST p) of the pooled test's replicates, as for the seed-aware test."""
    ok = np.asarray(samples, dtype=float)
    ok = ok[np.isfinite(ok)]
    if not len(ok):
        return float("nan"), float("nan"), float("nan")
    lo, hi = np.quantile(ok, [0.05, 0.95])
    return float(lo), float(hi), tost_p(ok, margin)
