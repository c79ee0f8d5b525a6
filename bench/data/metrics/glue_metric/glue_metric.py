"""GLUE metrics as an `evaluate` module that lives in this repository.

Kept local (loaded with `evaluate.load(<this folder>)`) so a run never fetches metric code from
the Hugging Face hub: results must not depend on network access or on a hub script that can
change under us. The arithmetic is plain numpy/scipy so the tests can check it against
scikit-learn/scipy independently.

Degenerate inputs (why they do not crash):
- matthews_correlation is 0.0 when predictions or references are constant (sklearn's convention).
- f1 is 0.0 when there are no true positives (precision or recall undefined), as sklearn's
  default `zero_division` gives.
- pearson / spearmanr are 0.0 when predictions or references are constant: the correlation is
  undefined (scipy returns nan and warns), and a model that outputs one value carries no signal;
  0.0 keeps means over seeds and JSON records finite. Non-finite predictions (a diverged run)
  give nan, so that failure stays visible.
All values are plain Python floats on a 0-1 scale (correlations in -1..1), never percentages.
"""
from __future__ import annotations

import datasets
import evaluate
import numpy as np
from scipy.stats import rankdata

METRICS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")

_DESCRIPTION = "GLUE metrics: accuracy, binary f1 (positive class 1), Matthews correlation, Pearson, Spearman."
_CITATION = """@inproceedings{wang2019glue,
  title={GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={ICLR}, year={2019}}"""
_KWARGS = """
Args:
    predictions: class indices (classification) or float scores (regression).
    references: gold class indices or float scores, same length.
    metrics: list of metric names to compute, from: accuracy, f1, matthews_correlation, pearson, spearmanr.
Returns:
    dict mapping each requested name to a Python float.
"""


def accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(pred == ref))


def f1(pred: np.ndarray, ref: np.ndarray) -> float:
    """Binary F1 of the positive class (index 1), as reported for MRPC and QQP."""
    tp = float(np.sum((pred == 1) & (ref == 1)))
    fp = float(np.sum((pred == 1) & (ref != 1)))
    fn = float(np.sum((pred != 1) & (ref == 1)))
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if tp > 0 else 0.0


def matthews_correlation(pred: np.ndarray, ref: np.ndarray) -> float:
    """Multiclass MCC (Gorodkin's R_K), the same formula as sklearn.metrics.matthews_corrcoef."""
    classes, inv = np.unique(np.concatenate([ref, pred]), return_inverse=True)
    k, n = len(classes), len(ref)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (inv[:n], inv[n:]), 1.0)
    t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
    correct, total = np.trace(cm), cm.sum()
    cov_tp = correct * total - np.dot(t_sum, p_sum)
    cov_pp = total * total - np.dot(p_sum, p_sum)
    cov_tt = total * total - np.dot(t_sum, t_sum)
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def pearson(pred: np.ndarray, ref: np.ndarray) -> float:
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(ref))):
        return float("nan")
    x, y = pred - pred.mean(), ref - ref.mean()
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denom == 0:
        return 0.0
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0))


def spearmanr(pred: np.ndarray, ref: np.ndarray) -> float:
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(ref))):
        return float("nan")
    return pearson(rankdata(pred), rankdata(ref))


_FUNCS = {f.__name__: f for f in (accuracy, f1, matthews_correlation, pearson, spearmanr)}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class GlueMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, metrics=None):
        if not metrics:
            raise ValueError(f"pass metrics=[...], a list of names from {list(METRICS)}")
        unknown = [m for m in metrics if m not in _FUNCS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
        pred = np.asarray(predictions, dtype=np.float64)
        ref = np.asarray(references, dtype=np.float64)
        if pred.shape != ref.shape or pred.ndim != 1:
            raise ValueError(f"predictions {pred.shape} and references {ref.shape} must be 1-d and equal length")
        if len(pred) == 0:
            raise ValueError("no predictions to score")
        return {m: _FUNCS[m](pred, ref) for m in metrics}
