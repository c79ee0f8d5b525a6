"""Headline metrics recomputed on example resamples: one resample per row of an index matrix.

A bootstrap needs ~1,000 evaluations per cell, and calling the `evaluate` module that often would take
minutes, so the formulas of bench/data/metrics/glue_metric are copied here in vectorised form (pure
numpy/scipy: no torch, no pandas). tests/test_stats.py checks these copies against
bench.data.metrics.compute_metrics. docs/statistics.md says what each function computes.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sps

METRICS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")
DEFAULT_B = 1000  # bootstrap resamples unless a caller asks for more
_CHUNK = 4_000_000  # index-matrix elements evaluated at once (~32 MB of float64 per array)


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


def seed_mean(name: str, runs, ref, idx: np.ndarray | None = None) -> np.ndarray:
    """Mean over seeds of the metric, per resample row of `idx` (or on all examples if None).

    `runs` holds one prediction array per seed, all aligned to `ref`."""
    ref = np.asarray(ref, dtype=float)
    if idx is None:
        idx = np.arange(len(ref))[None, :]
    return np.mean([batch_metric(name, r, ref, idx) for r in runs], axis=0)


def seed_matrix(name: str, runs, ref, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each seed's metric on all examples (k,), each seed's metric on every resample row of idx (k, B))."""
    ref = np.asarray(ref, dtype=float)
    full = np.arange(len(ref))[None, :]
    return (np.array([batch_metric(name, r, ref, full)[0] for r in runs]),
            np.array([batch_metric(name, r, ref, idx) for r in runs]))
