"""The paired comparisons of the composition reports (bench/report/compose.py: soups, merges, transfer;
bench/report/compose_learned.py: learned combinations): one main-split reader, one test, one verdict
wording, in a module of their own so the two reports import it and not each other."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.analysis import equivalence, example_bootstrap, multiple_comparisons, resampled_metrics, two_level
from bench.records.schema import load_predictions

BOOT_SEED = 0
TEST = "paired bootstrap over dev examples, seeds pooled: these trained models (B={b}, null-centred p)"
SEED_TEST = ("seed-aware paired bootstrap, seed k with seed k, then dev examples (B={b}; delta/se against Student's t, "
             "Satterthwaite df)")


def main_split(rec: dict, notes: list[str]):
    """(ids, predictions, references) of the record's main eval split, or None with a note."""
    try:
        data = load_predictions(rec)
    except ValueError as exc:
        notes.append(f"predictions not used: {exc}")
        return None
    for sp in (data or {}).get("splits", {}).values():
        if isinstance(sp, dict) and sp.get("role", "eval") == "eval" and not sp.get("metric_suffix"):
            return np.asarray(sp["ids"]), np.asarray(sp["predictions"], float), np.asarray(sp["references"], float)
    return None


@dataclass(frozen=True)
class Compared:
    """One composition comparison: delta (A − B, means over seeds), 95 % interval, p, TOST p, which test."""

    delta: float
    low: float
    high: float
    p: float
    p_equiv: float
    n_examples: int
    test: str


def compare(metric: str, runs_a: list, runs_b: list, b: int, seeds: list | None = None,
             margin: float | None = None) -> Compared | None:
    """A's seed mean minus B's on the examples all runs share. With `seeds` (the seed number of each
    run, the same list for both sides, >= 2 of them) the seed-aware test (seed k of A with seed k of B,
    then examples: bench.analysis.two_level.seed_aware); otherwise the seeds-pooled bootstrap over examples,
    a statement about these trained models (a soup or a merged model is one model)."""
    ids = np.asarray(sorted(set.intersection(*(set(r[0].tolist()) for r in runs_a + runs_b))))
    if not len(ids):
        return None

    def aligned(runs):
        out, ref = [], None
        for r_ids, pred, r_ref in runs:
            order = np.argsort(r_ids, kind="stable")
            pos = order[np.searchsorted(r_ids, ids, sorter=order)]
            out.append(pred[pos])
            ref = r_ref[pos] if ref is None else ref
        return out, ref

    a, ref = aligned(runs_a)
    bb, ref_b = aligned(runs_b)
    if not np.array_equal(ref, ref_b):
        return None
    mg = equivalence.margin_for(metric, margin)
    idx = resampled_metrics.resample_indices(len(ids), b, BOOT_SEED)
    full_a, mat_a = resampled_metrics.seed_matrix(metric, a, ref, idx)
    full_b, mat_b = resampled_metrics.seed_matrix(metric, bb, ref, idx)
    if seeds is not None and len(seeds) >= 2 and len(a) == len(bb) == len(seeds):
        r = two_level.seed_aware(metric, seeds, seeds, full_a, full_b, mat_a, mat_b, len(ids), BOOT_SEED, mg)
        return Compared(r.delta, r.low, r.high, r.p, r.p_equiv, len(ids), SEED_TEST.format(b=b))
    samples = mat_a.mean(axis=0) - mat_b.mean(axis=0)
    r = example_bootstrap.paired_from_samples(float(full_a.mean() - full_b.mean()), samples, len(ids))
    return Compared(r.delta, r.low, r.high, r.p, example_bootstrap.pooled_equiv(samples, mg)[2], len(ids),
                    TEST.format(b=b))


def verdict(p_adj: float, low: float, high: float, delta: float, p_equiv_adj: float = float("nan")) -> str:
    """a better / b better / equivalent / undecided (bench.analysis.multiple_comparisons.outcome)."""
    if not math.isfinite(p_adj):
        return "not tested"
    o = multiple_comparisons.outcome(p_adj, low, high, delta, p_equiv_adj)
    return {"better": "a better", "worse": "b better"}.get(o, o)
