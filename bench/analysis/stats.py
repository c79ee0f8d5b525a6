"""Statistics behind the report's verdicts: intervals, paired tests, ASO, Holm, expected max, ranks.

Why a module of its own: a benchmark's claims ("LoRA matches full finetuning") are only as good as
the uncertainty attached to them. One seed and one dev split give a number, not a verdict; the
functions here turn seeds and per-example predictions into intervals and tests, and are pure
numpy/scipy (no torch, no pandas) so that the report, the regression gate and scripts share one
definition of each. docs/statistics.md says what each function computes and cites the papers.

Metrics are recomputed here with vectorised copies of the formulas in
bench/data/metrics/glue_metric (one resample per row of an index matrix): a bootstrap needs ~1,000
evaluations per cell, and calling the `evaluate` module that often would take minutes. The tests
check these copies against bench.data.metrics.compute_metrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

METRICS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")
DEFAULT_B = 1000
ALPHA = 0.05
_CHUNK = 4_000_000  # index-matrix elements evaluated at once (~32 MB of float64 per array)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval and the words saying how it was computed."""

    estimate: float
    low: float
    high: float
    method: str


# ------------------------------------------------------------------------------------------ intervals


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


# --------------------------------------------------------------------------- metrics on resamples


def _check(name: str, pred: np.ndarray, ref: np.ndarray) -> None:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    if pred.shape != ref.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(f"{name}: predictions {pred.shape} and references {ref.shape} must be 1-d, "
                         "non-empty and of equal length")


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r; 0.0 for a constant row and NaN for non-finite input, as glue_metric."""
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, np.clip((x * y).sum(axis=1) / np.where(den > 0, den, 1.0), -1.0, 1.0), 0.0)
    return np.where(bad, np.nan, r)


def _rows(name: str, p: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    """The metric of every row of p (predictions) against r (references), both (rows, n)."""
    if name == "accuracy":
        return (p == r).mean(axis=1)
    if name == "f1":
        tp = ((p == 1) & (r == 1)).sum(axis=1)
        fp = ((p == 1) & (r != 1)).sum(axis=1)
        fn = ((p != 1) & (r == 1)).sum(axis=1)
        return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    if name == "matthews_correlation":  # p, r hold class codes 0..k-1 (see batch_metric)
        rows, n = p.shape
        codes = (r * k + p + (np.arange(rows) * k * k)[:, None]).ravel()
        cm = np.bincount(codes, minlength=rows * k * k).reshape(rows, k, k).astype(float)
        t_sum, p_sum = cm.sum(axis=2), cm.sum(axis=1)
        correct = np.trace(cm, axis1=1, axis2=2)
        cov_tp = correct * n - (t_sum * p_sum).sum(axis=1)
        cov_pp = n * n - (p_sum * p_sum).sum(axis=1)
        cov_tt = n * n - (t_sum * t_sum).sum(axis=1)
        den = cov_pp * cov_tt
        return np.where(den > 0, cov_tp / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)
    if name == "pearson":
        return _pearson_rows(p, r)
    return _pearson_rows(sps.rankdata(p, axis=1), sps.rankdata(r, axis=1))  # spearmanr


def batch_metric(name: str, pred, ref, idx: np.ndarray) -> np.ndarray:
    """metric(pred[idx[b]], ref[idx[b]]) for every row b of the index matrix `idx` (B, n)."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    _check(name, pred, ref)
    k = 0
    if name == "matthews_correlation":  # class values -> codes 0..k-1 for the confusion matrix
        classes, inv = np.unique(np.concatenate([ref, pred]), return_inverse=True)
        k = len(classes)
        ref, pred = inv[: len(ref)], inv[len(ref):]
    idx = np.atleast_2d(idx)
    step = max(1, _CHUNK // max(idx.shape[1], 1))
    return np.concatenate([_rows(name, pred[idx[i:i + step]], ref[idx[i:i + step]], k)
                           for i in range(0, len(idx), step)])


def metric_rows(name: str, preds, ref) -> np.ndarray:
    """metric(preds[b], ref) for every row b of a prediction matrix (B, n) against one reference:
    the score distribution of a randomised predictor (bench/analysis/chance.py), chunked like batch_metric."""
    preds, ref = np.atleast_2d(np.asarray(preds, dtype=float)), np.asarray(ref, dtype=float)
    _check(name, preds[0], ref)
    k = 0
    if name == "matthews_correlation":
        classes, inv = np.unique(np.concatenate([ref, preds.ravel()]), return_inverse=True)
        k = len(classes)
        ref, preds = inv[: len(ref)], inv[len(ref):].reshape(preds.shape)
    step = max(1, _CHUNK // max(preds.shape[1], 1))
    return np.concatenate([_rows(name, preds[i:i + step], np.broadcast_to(ref, preds[i:i + step].shape), k)
                           for i in range(0, len(preds), step)])


def metric(name: str, pred, ref) -> float:
    """The metric on all examples (same numbers as bench.data.metrics.compute_metrics)."""
    return float(batch_metric(name, pred, ref, np.arange(len(np.asarray(pred)))[None, :])[0])


def resample_indices(n: int, b: int = DEFAULT_B, seed: int = 0) -> np.ndarray:
    """(b, n) example indices drawn with replacement; the same seed gives the same matrix, which
    is what makes a bootstrap *paired* when two methods are scored on it."""
    if n < 1:
        raise ValueError("cannot resample zero examples")
    return np.random.default_rng(seed).integers(0, n, size=(b, n), dtype=np.int32)


def bootstrap_ci(name: str, pred, ref, b: int = DEFAULT_B, seed: int = 0, confidence: float = 0.95) -> Interval:
    """Percentile bootstrap interval of a metric over the eval examples of one run."""
    pred = np.asarray(pred, dtype=float)
    samples = batch_metric(name, pred, ref, resample_indices(len(pred), b, seed))
    lo, hi = np.nanquantile(samples, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(metric(name, pred, ref), float(lo), float(hi), f"bootstrap over examples (1 seed, B={b})")


# ------------------------------------------------------------------------------ paired comparison


@dataclass(frozen=True)
class Paired:
    """A − B on the same examples, pooled over seeds: delta, its CI, two-sided p (null-centred)."""

    delta: float
    low: float
    high: float
    p: float
    n_examples: int
    b: int


def seed_mean(name: str, runs, ref, idx: np.ndarray | None = None) -> np.ndarray:
    """Mean over seeds of the metric, per resample row of `idx` (or on all examples if None).

    `runs` holds one prediction array per seed, all aligned to `ref`."""
    ref = np.asarray(ref, dtype=float)
    if idx is None:
        idx = np.arange(len(ref))[None, :]
    return np.mean([batch_metric(name, r, ref, idx) for r in runs], axis=0)


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


# ------------------------------------------------------------------ seed-aware (two-level) comparison

#: equivalence margin per headline metric, on the metric's own scale (0.01 = 1 point of the ×100 tables),
#: and per retention quantity (docs/retention.md): forgetting 0.01 (1 point of the similarity Spearman,
#: or 0.01 nats of LM loss for decoders), drift 0.01 (1 point of 1 - CKA), intruders 0.5 (half a
#: dimension: counts are integers). Why these values: docs/decisions.md; a report CLI's --margin
#: overrides the metrics', --forgetting-margin the retention quantities'
MARGINS = {"accuracy": 0.01, "f1": 0.01, "matthews_correlation": 0.01, "pearson": 0.01, "spearmanr": 0.01,
           "retention.forgetting": 0.01, "retention.drift": 0.01, "retention.intruders": 0.5}
POWER = 0.8          # the chance of deciding that `seeds_to_decide` aims for
MAX_SEEDS = 1000     # seeds_to_decide above this reads "not within 1000 seeds" (inf)
OUTCOMES = ("better", "worse", "equivalent", "undecided")
CALIBRATIONS = ("t", "percentile")  # how seed_aware reads its replicates (its docstring)


def margin_for(name: str, override: float | None = None) -> float:
    """The equivalence margin of a metric: the override when given, else MARGINS (0.01 for unknown names)."""
    if override is not None:
        if not override > 0:
            raise ValueError(f"equivalence margin must be > 0, got {override}")
        return float(override)
    return MARGINS.get(name, 0.01)


@dataclass(frozen=True)
class SeedAware:
    """A − B as a statement about the *methods*: seeds and examples resampled (module docs).

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


def _tost_p(samples: np.ndarray, margin: float) -> float:
    """Bootstrap TOST p of H0 |delta| >= margin: the larger of the shares of replicates at or beyond
    +margin and at or beyond −margin (+1 smoothed). Below alpha ⇔ the (1 − 2·alpha) percentile
    interval lies inside ±margin."""
    n = len(samples)
    return max((1 + int((samples >= margin).sum())) / (n + 1), (1 + int((samples <= -margin).sum())) / (n + 1))


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
                     _tost_p(ok, mg) if len(ok) else float("nan"), mg, pairing,
                     ka, kb, n_examples, len(ok), var_seeds, var_ex)


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
    df = seed_df([(va / ka, ka - 1), (vb / kb, kb - 1)], 0.0)
    df = df if math.isfinite(df) else float(ka + kb - 2)  # no spread on either side: the pooled count
    return float(a.mean() - b.mean()), math.sqrt(va / ka + vb / kb), df, va + vb, "unpaired seeds"


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


def seed_matrix(name: str, runs, ref, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each seed's metric on all examples (k,), each seed's metric on every resample row of idx (k, B))."""
    ref = np.asarray(ref, dtype=float)
    full = np.arange(len(ref))[None, :]
    return (np.array([batch_metric(name, r, ref, full)[0] for r in runs]),
            np.array([batch_metric(name, r, ref, idx) for r in runs]))


def pooled_equiv(samples: np.ndarray, margin: float) -> tuple[float, float, float]:
    """(90 % interval low, high, TOST p) of the pooled test's replicates, as for the seed-aware test."""
    ok = np.asarray(samples, dtype=float)
    ok = ok[np.isfinite(ok)]
    if not len(ok):
        return float("nan"), float("nan"), float("nan")
    lo, hi = np.quantile(ok, [0.05, 0.95])
    return float(lo), float(hi), _tost_p(ok, margin)


def outcome(p_adjusted: float, low: float, high: float, delta: float, p_equiv_adjusted: float,
            alpha: float = ALPHA) -> str:
    """better / worse (adjusted p < alpha and the 95 % interval excludes 0, the sign of delta),
    equivalent (adjusted TOST p < alpha: the 90 % interval inside ±margin), else undecided."""
    if significant(p_adjusted, low, high, alpha):
        return "better" if delta > 0 else "worse"
    if np.isfinite(p_equiv_adjusted) and p_equiv_adjusted < alpha:
        return "equivalent"
    return "undecided"


def seeds_to_decide(delta: float, var_seeds: float, var_examples: float, margin: float, m: int = 1,
                    alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per method at which an undecided difference would likely be decided (normal approximation,
    the observed delta taken as the true one): the standard error with n seeds is
    sqrt(var_seeds/n + var_examples) (the example part held at its observed size); a directional verdict
    needs |delta| >= (z_{1−a/2} + z_power) · se and equivalence needs margin − |delta| >= (z_{1−a} + z_power) · se,
    with a = alpha/m (what Holm asks of the first of m comparisons). The smaller n of the two, rounded
    up; inf when neither is reached by seeds alone (the example part alone is too wide) or n > MAX_SEEDS."""
    if not (np.isfinite(delta) and np.isfinite(var_seeds) and np.isfinite(var_examples)):
        return float("nan")
    a = alpha / max(m, 1)
    zp = sps.norm.ppf(power)
    best = math.inf
    for gap, z in ((abs(delta), sps.norm.ppf(1 - a / 2)), (margin - abs(delta), sps.norm.ppf(1 - a))):
        if gap <= 0:
            continue
        room = (gap / (z + zp)) ** 2 - var_examples
        if room <= 0:
            continue
        best = min(best, var_seeds / room if var_seeds > 0 else 1.0)
    n = max(2, math.ceil(best)) if math.isfinite(best) else math.inf
    return float(n) if n <= MAX_SEEDS else math.inf


def seeds_to_decide_t(delta: float, var_seeds: float, margin: float, paired: bool, m: int = 1,
                      alpha: float = ALPHA, power: float = POWER) -> float:
    """`seeds_to_decide` for a quantity measured once per seed (`seed_scalar`), with the t quantiles its
    test uses: the smallest n whose standard error sqrt(var_seeds/n) lets a directional verdict
    (|delta| >= (t_{1−a/2} + t_power) · se) or equivalence (margin − |delta| >= (t_{1−a} + t_power) · se)
    through, df = n − 1 paired, 2(n − 1) unpaired (Welch with equal spread), a = alpha/m. The normal
    approximation would promise a decision at a number of seeds that has just failed to give one."""
    if not (np.isfinite(delta) and np.isfinite(var_seeds)):
        return float("nan")
    n = np.arange(2, MAX_SEEDS + 1)
    df = n - 1 if paired else 2 * (n - 1)
    se = np.sqrt(max(var_seeds, 0.0) / n)
    a = alpha / max(m, 1)
    tp = sps.t.ppf(power, df)
    ok = (abs(delta) >= (sps.t.ppf(1 - a / 2, df) + tp) * se) & (abs(delta) > 0)
    ok |= (margin - abs(delta) >= (sps.t.ppf(1 - a, df) + tp) * se) & (margin > abs(delta))
    return float(n[np.argmax(ok)]) if ok.any() else math.inf


# ------------------------------------------------------------------------- almost stochastic order


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


# --------------------------------------------------------------------------- multiple comparisons


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


def rank_with_ties(methods, better_pairs) -> dict[str, int]:
    """Rank = 1 + number of methods significantly better than this one (`better_pairs` holds
    (winner, loser) tuples). The best method, and every method not significantly worse than any
    other, gets rank 1: a method is only ranked below what it was shown to lose against."""
    methods = list(methods)
    return {m: 1 + sum(1 for w, loser in set(better_pairs) if loser == m and w in methods) for m in methods}


# ----------------------------------------------------------------------------- tuning budget


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
