"""Distributions of scores over seeds or trials: Almost Stochastic Order between two methods, and the
expected best of n tuning trials."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from bench.analysis.resampled_metrics import DEFAULT_B


def _violation_ratio(sa: np.ndarray, sb: np.ndarray, dt: float) -> np.ndarray:
    """ε_W2 of Dror et al. (2019), eq. 4-5, per row of sorted score matrices sa (R, na), sb (R, nb):
    the share of the squared Wasserstein-2 distance between the quantile functions where A's
    quantile lies below B's (stochastic order A ≥ B violated). 0.5 when the distance is 0."""
    t = np.arange(dt, 1.0, dt)
    fa = sa[:, np.clip(np.ceil(sa.shape[1] * t).astype(int) - 1, 0, sa.shape[1] - 1)]
    gb = sb[:, np.clip(np.ceil(sb.shape[1] * t).astype(int) - 1, 0, sb.shape[1] - 1)]
    diff2 = (gb - fa) ** 2 * dt
    total = diff2.sum(axis=1)
    viol = np.where(fa < gb, diff2, 0.0).sum(axis=1)
    return np.where(total > 0, viol / np.where(total > 0, total, 1.0), 0.5)


def aso_eps_min(scores_a, scores_b, confidence: float = 0.95, b: int = DEFAULT_B, dt: float = 0.005,
                seed: int = 0) -> float:
    """ε_min of Almost Stochastic Order (Dror et al. 2019; del Barrio et al. 2018): an upper
    confidence bound on how far A's score distribution violates dominating B's.

    Same procedure as deepsig.aso (bootstrap of the empirical quantile functions to estimate σ of
    the violation ratio, then ε_min = ε̂ − σ̂/√(nm/(n+m)) · Φ⁻¹(1−confidence), clipped to [0, 1]),
    vectorised: deepsig needs ~2 s per call. ε_min < 0.5: A is better; near 0: A dominates."""
    a = np.sort(np.asarray(scores_a, dtype=float))
    bb = np.sort(np.asarray(scores_b, dtype=float))
    if len(a) == 0 or len(bb) == 0 or not (np.isfinite(a).all() and np.isfinite(bb).all()):
        raise ValueError("ASO needs non-empty, finite score lists for both methods")
    observed = float(_violation_ratio(a[None, :], bb[None, :], dt)[0])
    rng = np.random.default_rng(seed)
    ra = np.sort(a[rng.integers(0, len(a), size=(b, len(a)))], axis=1)
    rb = np.sort(bb[rng.integers(0, len(bb), size=(b, len(bb)))], axis=1)
    const = math.sqrt(len(a) * len(bb) / (len(a) + len(bb)))
    sigma = float(np.std(const * (_violation_ratio(ra, rb, dt) - observed)))
    return float(np.clip(observed - sigma / const * sps.norm.ppf(1 - confidence), 0.0, 1.0))


def expected_max(values) -> tuple[np.ndarray, np.ndarray]:
    """Expected best score (and its std) of n trials drawn without replacement from the N observed
    ones, for n = 1..N: the unbiased order-statistics estimator (Tang et al. 2020) of Dodge et
    al.'s (2019) expected validation performance. With v_(1) <= ... <= v_(N),
    P(max of n = v_(i)) = C(i−1, n−1) / C(N, n)."""
    v = np.sort(np.asarray(values, dtype=float))
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError("expected_max needs a non-empty list of finite scores")
    big_n = len(v)
    means, stds = np.empty(big_n), np.empty(big_n)
    for n in range(1, big_n + 1):
        total = math.comb(big_n, n)
        w = np.array([math.comb(i - 1, n - 1) / total for i in range(1, big_n + 1)])
        means[n - 1] = float(w @ v)
        stds[n - 1] = math.sqrt(max(float(w @ (v * v)) - means[n - 1] ** 2, 0.0))
    return means, stds
