"""Chance: what a predictor that learned nothing scores on a task, and whether a run collapsed.

Why: a verdict between methods means something only when the methods learned the task. On MRPC's
dev split (279 of 408 pairs "equivalent") always answering "equivalent" scores F1 81.2 and accuracy
68.4; a method at that level has learned nothing, and "tied with the best" among such methods says
nothing either. This module gives, from the evaluation labels alone (no training, no model):

* trivial baselines (`trivial_baselines`): `majority` (the most frequent class everywhere),
  `always_positive` (class 1 everywhere, where F1 is a metric and class 1 is not the majority: the
  constant that maximises F1), `label_prior` (each prediction drawn from the label distribution;
  its expected score and 95 % interval over seeded draws), and for regression `constant_mean` (the
  mean label everywhere; a correlation of a constant is undefined, which the baseline says) and
  `label_prior` (the labels in a random order);
* the constant a method is tested against (`chance_constant`): the best constant on the headline.
  No randomised predictor beats it in expectation on GLUE's metrics (accuracy: sum p_c^2 <= max p_c;
  MCC and correlations: 0; F1: 2pq/(p+q) grows with q, the share predicted positive, so q = 1 is
  best), so beating it is beating chance;
* collapse detection (`collapse_of`, `collapse_section`, `record_collapse`): predictions that are
  (nearly) all one class, or regression outputs with (nearly) no spread.

Pure numpy on top of bench.analysis.resampled_metrics; the report, the gate and the runner share these definitions.
docs/statistics.md ("Chance") says what each number is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.analysis import resampled_metrics

PRIOR_DRAWS = 2000        # draws of the label-prior predictor (seeded: reports are reproducible)
PRIOR_SEED = 0
COLLAPSE_SHARE = 0.98     # classification: at least this share of predictions in one class
COLLAPSE_STD_RATIO = 0.05  # regression: std of the outputs below this fraction of the labels' std
UNDEFINED_CONSTANT = "undefined for a constant predictor (no variance); counted as 0 in tests"


@dataclass
class Trivial:
    """One trivial baseline on one set of references: a score per metric, with an interval for a
    randomised baseline (low == high == score for a constant one); `undefined[m]` says why a metric
    has no value; `predictions` are the constant predictions a paired test uses (None: randomised)."""

    name: str
    description: str
    scores: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)
    predictions: np.ndarray | None = None


def _constant(name: str, description: str, value: float, ref: np.ndarray, metrics, regression: bool) -> Trivial:
    pred = np.full(len(ref), float(value))
    t = Trivial(name, description, predictions=pred)
    for m in metrics:
        if regression and m in ("pearson", "spearmanr"):
            t.scores[m] = t.low[m] = t.high[m] = float("nan")
            t.undefined[m] = UNDEFINED_CONSTANT
        else:
            t.scores[m] = t.low[m] = t.high[m] = resampled_metrics.metric(m, pred, ref)
    return t


def _prior_draws(ref: np.ndarray, regression: bool, draws: int, seed: int) -> np.ndarray:
    """(draws, n) predictions of the label-prior predictor: classes drawn from the references'
    class shares (classification), or the references in a random order (regression)."""
    rng = np.random.default_rng(seed)
    if regression:
        return rng.permuted(np.broadcast_to(ref, (draws, len(ref))).copy(), axis=1)
    classes, counts = np.unique(ref, return_counts=True)
    return classes[rng.choice(len(classes), size=(draws, len(ref)), p=counts / counts.sum())]


def label_prior(ref: np.ndarray, metrics, regression: bool, draws: int = PRIOR_DRAWS,
                seed: int = PRIOR_SEED) -> Trivial:
    """Expected score (mean over `draws` seeded draws) and the 2.5-97.5 % range of the draws."""
    what = ("the labels in a random order (a draw from the label distribution)" if regression
            else "each prediction drawn from the label distribution")
    t = Trivial("label_prior", f"{what}: mean and 95% range of {draws} seeded draws")
    # keep the draw matrix to ~4M entries on large dev sets (QQP: 40k examples -> 100 draws)
    draws = max(100, min(draws, 4_000_000 // max(len(ref), 1)))
    preds = _prior_draws(ref, regression, draws, seed)
    for m in metrics:
        v = resampled_metrics.metric_rows(m, preds, ref)
        t.scores[m] = float(np.mean(v))
        t.low[m], t.high[m] = (float(x) for x in np.quantile(v, [0.025, 0.975]))
    return t


def trivial_baselines(kind: str, references, metrics) -> list[Trivial]:
    """The trivial baselines of a task's evaluation references for the given base metrics
    (names from bench.analysis.resampled_metrics.METRICS). Regression: constant_mean, label_prior; classification:
    majority, always_positive (only where it differs from majority and F1 is a metric), label_prior."""
    ref = np.asarray(references, dtype=float)
    metrics = [m for m in metrics if m in resampled_metrics.METRICS]
    if len(ref) == 0 or not metrics:
        return []
    if kind == "regression":
        return [_constant("constant_mean", "the mean label everywhere", float(ref.mean()), ref, metrics, True),
                label_prior(ref, metrics, True)]
    classes, counts = np.unique(ref, return_counts=True)
    major = float(classes[np.argmax(counts)])  # ties: the smaller class index
    share = counts.max() / counts.sum()
    out = [_constant("majority", f"class {major:g} (the most frequent, {100 * share:.1f}%) everywhere", major, ref,
                     metrics, False)]
    if "f1" in metrics and major != 1.0:
        out.append(_constant("always_positive", "class 1 (F1's positive class) everywhere: the constant that "
                             "maximises F1", 1.0, ref, metrics, False))
    out.append(label_prior(ref, metrics, False))
    return out


def chance_constant(baselines: list[Trivial], metric: str) -> Trivial | None:
    """The constant baseline with the best score on `metric` (an undefined score counts as 0, as
    bench.analysis.resampled_metrics scores a constant's correlation): the predictor a method must beat."""
    const = [b for b in baselines if b.predictions is not None]
    if not const:
        return None

    def score(b: Trivial) -> float:
        v = b.scores.get(metric, float("nan"))
        return 0.0 if not np.isfinite(v) else v

    return max(const, key=score)  # max keeps the first of equals: majority before always_positive


# ------------------------------------------------------------------------------------------ collapse


def collapse_of(kind: str, predictions, references) -> dict:
    """Whether one split's predictions collapsed, with the numbers behind the call.

    Classification: `top_class`, `top_share` (share of predictions in the most predicted class),
    `reference_share` (share of references in that class); collapsed when top_share >= COLLAPSE_SHARE.
    Regression: `std_ratio` = std(predictions) / std(references); collapsed when < COLLAPSE_STD_RATIO."""
    p, r = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
    p, r = p[np.isfinite(p)], r[np.isfinite(r)]
    if len(p) == 0:
        return {"n": 0, "collapsed": False}
    if kind == "regression":
        ratio = float(np.std(p) / np.std(r)) if len(r) and np.std(r) > 0 else float("nan")
        return {"n": len(p), "std_ratio": ratio, "collapsed": bool(np.isfinite(ratio) and ratio < COLLAPSE_STD_RATIO)}
    classes, counts = np.unique(p, return_counts=True)
    top = float(classes[np.argmax(counts)])
    share = float(counts.max() / len(p))
    ref_share = float(np.mean(r == top)) if len(r) else float("nan")
    return {"n": len(p), "top_class": top, "top_share": share, "reference_share": ref_share,
            "collapsed": share >= COLLAPSE_SHARE}


def describe_collapse(split: str, c: dict) -> str:
    """One line for a collapsed split: what was predicted against what the labels hold."""
    if "std_ratio" in c:
        return (f"{split}: outputs (nearly) constant, std {c['std_ratio']:.3f} x the labels' std "
                f"(< {COLLAPSE_STD_RATIO}) on {c['n']} examples")
    return (f"{split}: {100 * c['top_share']:.1f}% of {c['n']} predictions are class {c['top_class']:g} "
            f"(references: {100 * c['reference_share']:.1f}%)")


def collapse_section(payload: dict | None) -> dict | None:
    """The record's `collapse` field from a predictions payload (bench.recipe.finetune.prediction_payload or a
    loaded predictions file): the rule, every split's numbers, and one warning per collapsed split."""
    if not isinstance(payload, dict) or not isinstance(payload.get("splits"), dict):
        return None
    kind = payload.get("kind") or "classification"
    splits, warnings = {}, []
    for name, sp in payload["splits"].items():
        if not isinstance(sp, dict) or "predictions" not in sp or "references" not in sp:
            continue
        try:
            c = collapse_of(kind, sp["predictions"], sp["references"])
        except (TypeError, ValueError):
            continue
        c["role"] = sp.get("role", "eval")
        splits[name] = c
        if c["collapsed"]:
            warnings.append("collapsed: " + describe_collapse(name, c))
    rule = (f"regression: std(outputs) < {COLLAPSE_STD_RATIO} x std(labels)" if kind == "regression"
            else f"classification: >= {100 * COLLAPSE_SHARE:g}% of predictions in one class")
    return {"kind": kind, "rule": rule, "splits": splits, "warnings": warnings}


def record_collapse(rec: dict) -> dict | None:
    """A record's collapse section: its own `collapse` field, else computed from its predictions
    file (records written before the field existed); None when neither is available."""
    if isinstance(rec.get("collapse"), dict):
        return rec["collapse"]
    if rec.get("status") != "ok" or not rec.get("predictions"):
        return None
    from bench.records.schema import load_predictions

    try:
        return collapse_section(load_predictions(rec))
    except ValueError:
        return None


def collapse_warnings(rec: dict) -> list[str]:
    """The collapse warnings of a record ([] when none or unknown)."""
    c = record_collapse(rec)
    return list(c.get("warnings") or []) if c else []
