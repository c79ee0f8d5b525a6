"""The paired per-example test of the gate: statistics only (docs/regress.md, "The paired test").

Why a paired test: baseline and candidate are scored on the same dev examples, so the difference of
a metric can be judged example by example (the paired bootstrap), which is far more sensitive than
comparing two means when a regression acts the same way on every seed. Why not *only* that: the
seeds are not paired. Two healthy runs with different seeds (or with the same seed numbers after a
change that consumes random numbers differently) differ by more than example resampling explains,
because a seed shifts the whole model, not single examples; a test that ignores this fails healthy
code (measured: docs/regress.md). So the standard error of the difference has two parts:

- examples: the paired bootstrap over examples (one resample of example ids shared by every seed of
  both sides) of D = mean over candidate seeds - mean over baseline seeds;
- seeds: the between-seed spread, with seeds as the unit. When both sides ran the same seed numbers
  (`matched`), from the per-seed differences d_s = cand_s - base_s (near 0 when the rerun replays
  the same random stream, so a consistent regression stands out); otherwise (`unmatched`) the pooled
  per-seed standard deviation, s^2 (1/n_b + 1/n_c).

t = D / sqrt(V_seeds + V_examples) against a t distribution with Satterthwaite's degrees of freedom
(V_examples counted as exactly known), one-sided in the direction of harm (direction `higher`) or
two-sided (`both`). Holm's step-down correction runs across the gated cells.

Design `two-level` is the report's seed-aware test (bench.analysis.two_level.seed_replicates): per
replicate the seeds are drawn with replacement (the matched seeds as blocks, otherwise each side its
own), then one example resample is shared by both sides; the replicates' spread is the standard error,
and t = D / se is read against Student's t with Satterthwaite's degrees of freedom (as the report's
seed-aware test: with a few seeds the bootstrap's own tails are too thin), one-sided for `higher`,
two-sided for `both`.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from bench.analysis import multiple_comparisons, resampled_metrics, seed_level, two_level

METRICS = resampled_metrics.METRICS
DESIGNS = ("seeds+examples", "examples", "seeds", "two-level")
_CHUNK_CELLS = 2_000_000  # resampled example indices held at once (rows x examples), ~8 MB


# The metrics on resamples come from bench.analysis.resampled_metrics (batch_metric: one resample per row of an index
# matrix), the same vectorised copies of bench/data/metrics/glue_metric that the report's paired tests
# use, so the gate and the report cannot disagree on what "accuracy on a resample" is.

def metric_value(metric: str, predictions, references) -> float:
    """The metric on the data as it is (no resampling)."""
    return resampled_metrics.metric(metric, np.asarray(predictions, float), np.asarray(references, float))


# ------------------------------------------------------------------------------ the test

@dataclass
class PairedResult:
    metric: str
    design: str            # the variance design (DESIGNS)
    pairing: str           # matched (same seed numbers) | unmatched
    n_examples: int
    seeds_base: list[int]
    seeds_cand: list[int]
    delta: float           # candidate - baseline, mean over the seeds used
    se_seeds: float
    se_examples: float
    se: float
    df: float
    p: float               # one-sided (harm) or two-sided, before Holm
    per_seed_base: dict = field(default_factory=dict)
    per_seed_cand: dict = field(default_factory=dict)
    p_adj: float | None = None


def stable_seed(text: str) -> int:
    """Bootstrap RNG seed from a cell id: the same inputs always give the same verdict."""
    return zlib.crc32(text.encode())


def bootstrap_deltas(metric: str, refs: np.ndarray, base: Mapping[int, np.ndarray], cand: Mapping[int, np.ndarray],
                     n_boot: int, rng: np.random.Generator, matched: list[int] | None = None) -> np.ndarray:
    """D* for `n_boot` resamples of the examples, each resample shared by every seed of both sides."""
    N = len(refs)
    out = np.empty(n_boot)
    step = max(1, _CHUNK_CELLS // max(N, 1))
    bseeds = matched if matched is not None else sorted(base)
    cseeds = matched if matched is not None else sorted(cand)
    for lo in range(0, n_boot, step):
        idx = rng.integers(0, N, size=(min(step, n_boot - lo), N), dtype=np.int32)
        mb = np.mean([resampled_metrics.batch_metric(metric, base[s], refs, idx) for s in bseeds], axis=0)
        mc = np.mean([resampled_metrics.batch_metric(metric, cand[s], refs, idx) for s in cseeds], axis=0)
        out[lo:lo + len(idx)] = mc - mb
    return out


def harm_p(delta: float, se: float, df: float, direction: str) -> float:
    """p of a change `delta` (negative = harm) with standard error `se` against Student's t with df: one-sided
    toward harm for direction `higher`, two-sided for `both`. A non-finite delta (a diverged run) is never a
    pass (0); with se 0, 1 when nothing changed or only a gain (under `higher`), else 0."""
    if not math.isfinite(delta):
        return 0.0
    if se == 0:
        return 1.0 if delta == 0 or (direction == "higher" and delta > 0) else 0.0
    t = delta / se
    return _t_sf(-t, df) if direction == "higher" else min(1.0, 2 * _t_sf(abs(t), df))


def _t_sf(t: float, df: float) -> float:
    from scipy.stats import norm
    from scipy.stats import t as tdist
    return float(norm.sf(t) if not math.isfinite(df) else tdist.sf(t, df))


@dataclass
class Components:
    """What every design is computed from: the pairing, D, and both variance parts."""
    metric: str
    pairing: str
    n_examples: int
    seeds_base: list[int]
    seeds_cand: list[int]
    delta: float
    var_seeds: float       # nan when the seeds give no spread estimate (1 seed per side, unmatched)
    df_seeds: float
    var_examples: float    # nan when not bootstrapped
    per_seed_base: dict
    per_seed_cand: dict
    two_level: np.ndarray | None = None  # the two-level replicates of D (design two-level)


def components(metric: str, refs, base: Mapping[int, np.ndarray], cand: Mapping[int, np.ndarray],
               n_boot: int = 2000, rng_seed: int = 0, bootstrap: bool = True,
               two_level: bool = False) -> Components | str:
    """D and its variance parts (module docstring); a string says why there is nothing to test.
    `two_level` also draws the two-level replicates (design two-level; >= 2 seeds per side)."""
    if metric not in METRICS:
        return f"metric {metric} has no paired form"
    refs = np.asarray(refs, float)
    base = {int(s): np.asarray(v, float) for s, v in base.items()}
    cand = {int(s): np.asarray(v, float) for s, v in cand.items()}
    if not base or not cand:
        return "no seeds on one side"
    common = sorted(set(base) & set(cand))
    vb = {s: metric_value(metric, base[s], refs) for s in base}
    vc = {s: metric_value(metric, cand[s], refs) for s in cand}
    if len(common) >= 2:
        pairing, sb, sc = "matched", common, common
        d = np.array([vc[s] - vb[s] for s in common])
        var_seeds, df_seeds = float(d.var(ddof=1)) / len(d), len(d) - 1
    else:
        pairing, sb, sc = "unmatched", sorted(base), sorted(cand)
        nb, nc = len(sb), len(sc)
        df_seeds = nb + nc - 2
        ss = sum((vb[s] - np.mean([vb[t] for t in sb])) ** 2 for s in sb) + \
            sum((vc[s] - np.mean([vc[t] for t in sc])) ** 2 for s in sc)
        var_seeds = ss / df_seeds * (1 / nb + 1 / nc) if df_seeds > 0 else float("nan")
    if var_seeds < 1e-24:  # equal per-seed differences up to rounding: no seed spread at all
        var_seeds = 0.0
    delta = float(np.mean([vc[s] for s in sc]) - np.mean([vb[s] for s in sb]))
    var_ex, two = float("nan"), None
    if bootstrap:
        boots = bootstrap_deltas(metric, refs, base, cand, n_boot, np.random.default_rng(rng_seed),
                                 common if pairing == "matched" else None)
        var_ex = float(np.var(boots, ddof=1))
        if two_level and len(sb) >= 2 and len(sc) >= 2:
            two = _two_level(metric, refs, base, cand, sb, sc, n_boot, rng_seed)
    return Components(metric, pairing, len(refs), sb, sc, delta, var_seeds, df_seeds, var_ex,
                      {s: vb[s] for s in sb}, {s: vc[s] for s in sc}, two)


def _two_level(metric: str, refs: np.ndarray, base: Mapping[int, np.ndarray], cand: Mapping[int, np.ndarray],
               sb: list[int], sc: list[int], n_boot: int, rng_seed: int) -> np.ndarray:
    """Replicates of D (candidate − baseline) with seeds and examples resampled (module docstring)."""
    idx = np.random.default_rng(rng_seed + 1).integers(0, len(refs), size=(n_boot, len(refs)), dtype=np.int32)
    mat_b = np.array([resampled_metrics.batch_metric(metric, base[s], refs, idx) for s in sb])
    mat_c = np.array([resampled_metrics.batch_metric(metric, cand[s], refs, idx) for s in sc])
    return two_level.seed_replicates(sc, sb, mat_c, mat_b, np.random.default_rng(rng_seed + 2))[0]


def _finish_two_level(c: Components, direction: str) -> PairedResult | str:
    """The two-level design's p from its replicates (module docstring)."""
    if c.two_level is None:
        return (f"{len(c.seeds_base)} baseline and {len(c.seeds_cand)} candidate seed(s): the two-level test needs "
                "2 seeds on each side")
    d = c.two_level[np.isfinite(c.two_level)]
    se = float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")
    df = seed_level.seed_df([(c.var_seeds, c.df_seeds)], c.var_examples) if math.isfinite(c.var_seeds) else float("nan")
    p = harm_p(c.delta, se, df, direction) if math.isfinite(se) else 0.0
    return PairedResult(c.metric, "two-level", c.pairing, c.n_examples, c.seeds_base, c.seeds_cand, c.delta,
                        math.sqrt(max(c.var_seeds, 0.0)) if math.isfinite(c.var_seeds) else float("nan"),
                        math.sqrt(c.var_examples), se, df, p, c.per_seed_base, c.per_seed_cand)


def finish(c: Components, design: str = "seeds+examples", direction: str = "higher") -> PairedResult | str:
    """The test of one design from the components: t = D / se, Satterthwaite df, p one-sided
    (direction `higher`: small p = a drop) or two-sided (`both`)."""
    if design not in DESIGNS:
        raise ValueError(f"design {design!r}: expected one of {', '.join(DESIGNS)}")
    if design == "two-level":
        return _finish_two_level(c, direction)
    v_s, df_s = (0.0, math.inf) if design == "examples" else (c.var_seeds, c.df_seeds)
    v_e = 0.0 if design == "seeds" else c.var_examples
    if not df_s > 0 or math.isnan(v_s):
        return (f"{len(c.seeds_base)} baseline and {len(c.seeds_cand)} candidate seed(s): the seed spread needs "
                "2 matched seeds or 3 in all")
    if math.isnan(v_e):
        raise ValueError("components were computed without the bootstrap")
    var = v_s + v_e
    df = math.inf if v_s == 0 else var ** 2 / (v_s ** 2 / df_s)
    se = math.sqrt(var)
    p = harm_p(c.delta, se, df, direction)
    return PairedResult(c.metric, design, c.pairing, c.n_examples, c.seeds_base, c.seeds_cand, c.delta,
                        math.sqrt(v_s), math.sqrt(v_e), se, df, p, c.per_seed_base, c.per_seed_cand)


def paired_test(metric: str, refs, base: Mapping[int, np.ndarray], cand: Mapping[int, np.ndarray],
                direction: str = "higher", design: str = "seeds+examples", n_boot: int = 2000,
                rng_seed: int = 0) -> PairedResult | str:
    """Paired test of `metric` between baseline and candidate seeds on the same examples.

    `base`/`cand`: {seed: predictions aligned with `refs`}. Returns a PairedResult, or a string
    saying why the test cannot run (designs with a seed term need 2 matched seeds, or 3 seeds in all).
    """
    c = components(metric, refs, base, cand, n_boot, rng_seed, bootstrap=design != "seeds",
                   two_level=design == "two-level")
    return c if isinstance(c, str) else finish(c, design, direction)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values by key (family-wise error across the gated cells)."""
    keys = list(pvalues)
    return dict(zip(keys, (float(v) for v in multiple_comparisons.holm([pvalues[k] for k in keys]))))


def fails(res: PairedResult, alpha: float, min_effect: float, direction: str) -> bool:
    """A cell fails when the Holm-adjusted p is below alpha AND the change is larger than min_effect
    in the harmful direction (any direction for `both`)."""
    p = res.p_adj if res.p_adj is not None else res.p
    big = -res.delta > min_effect if direction == "higher" else abs(res.delta) > min_effect
    return bool(p < alpha and big) or not math.isfinite(res.delta)
