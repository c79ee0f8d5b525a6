"""Many comparisons at once: Holm's adjustment, its resolution floor with B resamples, the four
outcomes of a comparison, and ranks with ties."""
from __future__ import annotations

import math

import numpy as np

from bench.analysis.resampled_metrics import DEFAULT_B

ALPHA = 0.05
OUTCOMES = ("better", "worse", "equivalent", "undecided")


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: sort ascending, multiply the i-th (0-based) by
    m − i, make the sequence non-decreasing (running max) and cap at 1. NaNs stay NaN and do
    not count towards m. Controls the family-wise error rate without independence assumptions."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adj = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adj, 1.0)
    return out


def holm_floor(m: int, b: int) -> float:
    """The smallest Holm-adjusted p that m bootstrap p-values with B resamples can reach: each raw p
    is at least 1/(B+1) (paired_from_samples), and Holm multiplies the smallest by m. When it is not
    below alpha, no comparison of the family can be significant however large the effect."""
    return min(1.0, m / (b + 1)) if m > 0 else float("nan")


def min_resamples(m: int, alpha: float = ALPHA, margin: float = 10.0) -> int:
    """Smallest B whose Holm floor over m comparisons is at most alpha/margin, rounded up to a
    multiple of 1,000 and never below DEFAULT_B. margin 10 leaves a clear effect room to reach
    p < alpha after the step-down (a floor just under alpha still loses most of the power)."""
    if m <= 0:
        return DEFAULT_B
    need = math.ceil(margin * m / alpha) - 1
    return max(DEFAULT_B, 1000 * math.ceil(need / 1000))


def resolution_warning(m: int, b: int, alpha: float = ALPHA) -> str | None:
    """Words for a report's notes when B, not the data, limits a Holm family of m bootstrap tests
    (floor at least alpha/2); None when the floor leaves room."""
    floor = holm_floor(m, b)
    if m <= 0 or floor < alpha / 2:
        return None
    what = (f"cannot reach p < {alpha}, so none can be significant" if floor >= alpha else
            "leaves little room below alpha: only comparisons that no resample reverses can be significant")
    return (f"Holm over {m} comparisons with B={b} resamples {what} (smallest adjusted p {floor:.3g}); "
            f"rerun the report with --bootstrap-samples {min_resamples(m, alpha)} for full power")


def significant(p_adjusted: float, low: float, high: float, alpha: float = ALPHA) -> bool:
    """A difference counts only when the adjusted p is below alpha AND its CI excludes 0."""
    return bool(np.isfinite(p_adjusted) and p_adjusted < alpha and (low > 0 or high < 0))


def outcome(p_adjusted: float, low: float, high: float, delta: float, p_equiv_adjusted: float,
            alpha: float = ALPHA) -> str:
    """better / worse (adjusted p < alpha and the 95 % interval excludes 0, the sign of delta),
    equivalent (adjusted TOST p < alpha: the 90 % interval inside ±margin), else undecided."""
    if significant(p_adjusted, low, high, alpha):
        return "better" if delta > 0 else "worse"
    if np.isfinite(p_equiv_adjusted) and p_equiv_adjusted < alpha:
        return "equivalent"
    return "undecided"


def rank_with_ties(methods, better_pairs) -> dict[str, int]:
    """Rank = 1 + number of methods significantly better than this one (`better_pairs` holds
    (winner, loser) tuples). The best method, and every method not significantly worse than any
    other, gets rank 1: a method is only ranked below what it was shown to lose against."""
    methods = list(methods)
    return {m: 1 + sum(1 for w, loser in set(better_pairs) if loser == m and w in methods) for m in methods}
