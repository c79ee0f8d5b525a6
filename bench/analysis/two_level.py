"""The seed-aware (two-level) bootstrap: A − B as a statement about the methods, not about these runs.

Each replicate draws seeds with replacement (as blocks when both methods ran the same seeds) and scores
the drawn seeds on one example resample shared by both sides; the replicates give the standard error
that `studentised` (bench.analysis.seed_level) reads against t. docs/statistics.md has the derivation.
"""
from __future__ import annotations

import math

import numpy as np

from bench.analysis.equivalence import margin_for, tost_p
from bench.analysis.example_bootstrap import paired_from_samples
from bench.analysis.seed_level import SeedAware, seed_df, studentised

CALIBRATIONS = ("t", "percentile")  # how seed_aware reads its replicates (its docstring)


def _draw_means(m: np.ndarray, draws: np.ndarray, rescale: bool) -> np.ndarray:
    """Per replicate b, the mean over the drawn seeds draws[b] of m[:, b] (m: (k, B) per-seed metric on
    replicate b's example resample). With `rescale` the seed deviations are widened by sqrt(k/(k−1)),
    so the seed part of the variance is s²/k (ddof 1) instead of the plug-in (k−1)/k · s²/k."""
    k, nb = m.shape
    drawn = m[draws, np.arange(nb)[:, None]].mean(axis=1)
    if not rescale or k < 2:
        return drawn
    centre = m.mean(axis=0)
    return centre + math.sqrt(k / (k - 1)) * (drawn - centre)


def seed_replicates(seeds_a, seeds_b, mat_a: np.ndarray, mat_b: np.ndarray, rng: np.random.Generator,
                    rescale: bool = True) -> tuple[np.ndarray, bool]:
    """The two-level replicates of mean(A) − mean(B) (one per column of mat_*, (k, B): each seed's metric on
    the example resamples shared by both sides) and whether the seeds were paired: the same seed set
    on both sides draws the same seed numbers for both (blocks), otherwise each side draws its own."""
    sa, sb = list(seeds_a), list(seeds_b)
    ka, kb, nb = len(sa), len(sb), mat_a.shape[1]
    if sorted(sa) == sorted(sb) and len(set(sa)) == ka:
        oa, ob = np.argsort(sa), np.argsort(sb)
        return _draw_means(mat_a[oa] - mat_b[ob], rng.integers(0, ka, size=(nb, ka)), rescale), True
    return (_draw_means(mat_a, rng.integers(0, ka, size=(nb, ka)), rescale)
            - _draw_means(mat_b, rng.integers(0, kb, size=(nb, kb)), rescale)), False


def seed_aware(name: str, seeds_a, seeds_b, scores_a: np.ndarray, scores_b: np.ndarray, mat_a: np.ndarray,
               mat_b: np.ndarray, n_examples: int, seed: int = 0, margin: float | None = None,
               rescale: bool = True, confidence: float = 0.95, calibration: str = "t") -> SeedAware:
    """Paired two-level bootstrap from per-seed metrics (see `seed_matrix`).

    `scores_*` (k,): each seed's metric on all examples; `mat_*` (k, B): each seed's metric on the
    B example resamples shared by every seed of both methods. Replicate b draws seeds with
    replacement (the same seed numbers for both methods when both ran the same seed set, as blocks;
    independently otherwise) and takes the difference of the drawn seeds' means on resample b.
    Needs >= 2 seeds on each side (ValueError otherwise: one seed gives no method verdict).

    `calibration="t"` (the default, the method verdict): the replicates give the standard error of
    the difference and the interval, p and TOST read delta / se against Student's t with
    Welch–Satterthwaite degrees of freedom (`seed_df`), because with a handful of seeds the bootstrap's
    percentiles treat the seed variance as known and are too narrow. `"percentile"`: the plain
    bootstrap's percentile interval and null-centred p (kept for the A/A comparison)."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r}: expected one of {', '.join(CALIBRATIONS)}")
    sa, sb = [int(s) for s in seeds_a], [int(s) for s in seeds_b]
    ka, kb = len(sa), len(sb)
    if ka < 2 or kb < 2:
        raise ValueError(f"a seed-aware test needs >= 2 seeds per method, got {ka} and {kb}")
    if mat_b.shape[1] != mat_a.shape[1]:
        raise ValueError("both methods must be scored on the same example resamples")
    samples, paired = seed_replicates(sa, sb, mat_a, mat_b, np.random.default_rng(seed), rescale)
    if paired:
        oa, ob = np.argsort(sa), np.argsort(sb)
        var_seeds = float(np.var(scores_a[oa] - scores_b[ob], ddof=1))
    else:
        var_seeds = float(np.var(scores_a, ddof=1) + np.var(scores_b, ddof=1))
    observed = float(scores_a.mean() - scores_b.mean())
    ok = samples[np.isfinite(samples)]
    mg = margin_for(name, margin)
    var_ex = float(np.nanvar(mat_a.mean(axis=0) - mat_b.mean(axis=0), ddof=1))
    pairing = "paired seeds" if paired else "unpaired seeds"
    if calibration == "t":
        parts = ([(var_seeds / ka, ka - 1)] if paired else
                 [(float(np.var(scores_a, ddof=1)) / ka, ka - 1), (float(np.var(scores_b, ddof=1)) / kb, kb - 1)])
        se = float(np.std(ok, ddof=1)) if len(ok) > 1 else float("nan")
        low, high, p, eq_low, eq_high, p_eq = studentised(observed, se, seed_df(parts, var_ex), mg, confidence)
        return SeedAware(observed, low, high, p, eq_low, eq_high, p_eq, mg, pairing, ka, kb, n_examples, len(ok),
                         var_seeds, var_ex)
    res = paired_from_samples(observed, samples, n_examples, confidence)
    eq = np.quantile(ok, [0.05, 0.95]) if len(ok) else (np.nan, np.nan)
    return SeedAware(res.delta, res.low, res.high, res.p, float(eq[0]), float(eq[1]),
                     tost_p(ok, mg) if len(ok) else float("nan"), mg, pairing,
                     ka, kb, n_examples, len(ok), var_seeds, var_ex)
