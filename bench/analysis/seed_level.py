"""A − B read at the seed level with Student's t, and the result type of every seed-aware test.

`SeedAware` is what the two-level bootstrap (bench.analysis.two_level) and the test of a quantity
measured once per seed (`seed_scalar`) both return, so `outcome`, Holm and `seeds_to_decide` read them
alike. `seed_df` and `studentised` read a difference and its standard error against t with
Welch–Satterthwaite degrees of freedom; docs/statistics.md says why t and not the bootstrap's percentiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from bench.analysis.equivalence import margin_for


@dataclass(frozen=True)
class SeedAware:
    """A − B as a statement about the *methods*: seeds and examples resampled (bench.analysis.two_level).

    `delta` is the difference of the means over seeds on all examples; `low`/`high` its 95 %
    interval, `p` the two-sided p, `eq_low`/`eq_high` the 90 % interval and `p_equiv` the TOST p of
    |A − B| >= margin, all studentised (or percentile) as `seed_aware`'s `calibration` says. `var_seeds` is the
    between-seed variance of one seed's difference, `var_examples` the variance from example
    resampling with the seeds held fixed: the inputs of `seeds_to_decide`."""

    delta: float
    low: float
    high: float
    p: float
    eq_low: float
    eq_high: float
    p_equiv: float
    margin: float
    pairing: str          # "paired seeds" | "unpaired seeds"
    n_seeds_a: int
    n_seeds_b: int
    n_examples: int
    b: int
    var_seeds: float
    var_examples: float


def seed_df(parts: list[tuple[float, int]], var_examples: float) -> float:
    """Welch–Satterthwaite degrees of freedom of a variance sum: `parts` are the seed terms (variance of
    a mean, its degrees of freedom), `var_examples` the example term, counted as known (thousands of
    examples). inf when the seed terms are all 0 (the example term alone)."""
    total = sum(v for v, _ in parts) + (var_examples if np.isfinite(var_examples) else 0.0)
    denom = sum(v * v / d for v, d in parts if d > 0)
    return float(total * total / denom) if denom > 0 else math.inf


def studentised(delta: float, se: float, df: float, margin: float, confidence: float = 0.95
                ) -> tuple[float, float, float, float, float, float]:
    """(low, high, two-sided p, 90 % low, 90 % high, TOST p) of delta / se against Student's t with df.
    se == 0: the interval is the point; p is 1 at delta == 0, else 0; TOST as the point lies."""
    if not (np.isfinite(delta) and np.isfinite(se)):
        nan = float("nan")
        return nan, nan, nan, nan, nan, nan
    if se == 0:
        p_eq = 0.0 if abs(delta) < margin else 1.0
        return delta, delta, 1.0 if delta == 0 else 0.0, delta, delta, p_eq
    tq, tq90 = sps.t.ppf(0.5 + confidence / 2, df), sps.t.ppf(0.95, df)
    p = float(min(1.0, 2 * sps.t.sf(abs(delta) / se, df)))
    p_eq = float(max(sps.t.sf((margin - delta) / se, df), sps.t.sf((margin + delta) / se, df)))
    return (float(delta - tq * se), float(delta + tq * se), p, float(delta - tq90 * se), float(delta + tq90 * se),
            p_eq)


def seed_difference(seeds_a, seeds_b, values_a, values_b) -> tuple[float, float, float, float, str]:
    """(delta, se, df, var_seeds, pairing) of mean(A) − mean(B) for one scalar per seed (no example level).

    Pairing as in `seed_replicates`: the same seed set on both sides pairs seed with seed (paired t:
    se = sd(d)/√k, df = k − 1); otherwise Welch (se² = s_a²/k_a + s_b²/k_b, Satterthwaite's df).
    `var_seeds` is the between-seed variance of one seed's difference, as in `SeedAware`."""
    sa, sb = [int(s) for s in seeds_a], [int(s) for s in seeds_b]
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    ka, kb = len(a), len(b)
    if ka != len(sa) or kb != len(sb):
        raise ValueError("one value per seed expected on each side")
    if ka < 2 or kb < 2:
        raise ValueError(f"a seed-aware test needs >= 2 seeds per method, got {ka} and {kb}")
    if sorted(sa) == sorted(sb) and len(set(sa)) == ka:
        d = a[np.argsort(sa)] - b[np.argsort(sb)]
        var = float(np.var(d, ddof=1))
        return float(d.mean()), math.sqrt(var / ka), float(ka - 1), var, "paired seeds"
    va, vb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    se, df = welch(va, ka, vb, kb)
    return float(a.mean() - b.mean()), se, df, va + vb, "unpaired seeds"


def welch(var_a: float, k_a: int, var_b: float, k_b: int) -> tuple[float, float]:
    """(se, df) of a difference of two means from their seed variances and counts: se² = s_a²/k_a + s_b²/k_b,
    Satterthwaite's df; with no spread on either side, the pooled count k_a + k_b − 2."""
    df = seed_df([(var_a / k_a, k_a - 1), (var_b / k_b, k_b - 1)], 0.0)
    return math.sqrt(var_a / k_a + var_b / k_b), df if math.isfinite(df) else float(k_a + k_b - 2)


def seed_scalar(name: str, seeds_a, seeds_b, values_a, values_b, margin: float | None = None,
                confidence: float = 0.95) -> SeedAware:
    """The seed-aware verdict's inputs for a quantity measured once per seed (retention: forgetting, drift,
    intruder dimensions), with no per-example level to resample.

    The two-level bootstrap has then only its seed level left, and a bootstrap over 3 seeds is no test:
    when all 3 differences share a sign every replicate does, so under no difference it calls 1 in 4
    pairs (paired) significant (docs/decisions.md, benchmarks/seed_scalar_calibration.py). The seed
    level is therefore read with the t distribution: paired t when both sides ran the same seeds, Welch
    otherwise (`seed_difference`); `low`/`high` the 95 % t interval, `p` two-sided, `eq_low`/`eq_high`
    the 90 % interval and `p_equiv` the TOST p of |A − B| >= margin (below alpha exactly when the 90 %
    interval lies inside ±margin), `var_examples` 0: the same fields as `seed_aware`, so `outcome`,
    Holm and `seeds_to_decide` read both alike. Identical per-seed differences (se 0) give p 1 for a
    zero delta and 0 otherwise. Needs >= 2 seeds per side (ValueError)."""
    delta, se, df, var_seeds, pairing = seed_difference(seeds_a, seeds_b, values_a, values_b)
    mg = margin_for(name, margin)
    lo, hi, p, eq_lo, eq_hi, p_eq = studentised(delta, se, df, mg, confidence)
    return SeedAware(delta, lo, hi, p, eq_lo, eq_hi, p_eq, mg, pairing, len(seeds_a), len(seeds_b), 0, 0,
                     var_seeds, 0.0)
