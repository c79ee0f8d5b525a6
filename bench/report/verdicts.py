"""Verdicts from per-example predictions: bootstrap intervals, pairwise tests, ranks, tuning curves.

Why: a table of means invites "A beats B" from differences that one more seed would reverse.
This module adds, per model and task, what is needed to say so with a stated error rate:

* a percentile bootstrap interval for cells with one seed (several seeds get the t interval
  from aggregate.py);
* for every pair of methods on the same examples, the method verdict: a paired two-level bootstrap
  (seeds, then examples, resampled; bench.analysis.two_level.seed_aware) read as better / worse /
  equivalent (within the metric's margin) / undecided, with the seeds an undecided pair would likely
  need; one seed on a side gives no method verdict. Beside it the seeds-pooled bootstrap over
  examples, which speaks for these trained models only. Holm over the pairs of that (model, task);
  ASO ε_min when both have >= 3 seeds;
* ranks with ties (bench.analysis.multiple_comparisons.rank_with_ties) and the methods tied with the best;
* expected best selection score versus number of tuning trials, from the study's trial records.

Records without predictions (schema 1) still get seed intervals; their pairs get no test and
`Aggregation.notes` says so. Statistics live in bench/analysis/ (docs/statistics.md names each module and
explains them).
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pandas as pd

from bench.analysis import (
    chance,
    equivalence,
    example_bootstrap,
    intervals,
    multiple_comparisons,
    power,
    resampled_metrics,
    score_distributions,
    two_level,
)
from bench.analysis.aggregate import Aggregation, is_metric
from bench.records.schema import load_predictions

BOOT_SEED = 0  # one fixed resampling seed: reports are reproducible and pairs share resamples
PAIR_COLUMNS = ["model", "task", "metric", "method_a", "method_b", "score_a", "score_b", "delta", "ci_low",
                "ci_high", "p", "p_adjusted", "eq_low", "eq_high", "margin", "p_equiv", "p_equiv_adjusted", "verdict",
                "seeds_to_decide", "var_seeds", "var_examples", "pairing", "test", "correction", "n_seeds_a",
                "n_seeds_b", "n_examples", "pooled_ci_low", "pooled_ci_high", "pooled_p", "pooled_p_adjusted",
                "pooled_eq_low", "pooled_eq_high", "pooled_p_equiv", "pooled_verdict", "pooled_test", "aso_eps"]
RANK_COLUMNS = ["model", "task", "method_label", "rank", "tied_best", "n_methods"]
BUDGET_COLUMNS = ["model", "task", "method_label", "study", "n_trials", "k", "expected_max", "std"]


def _load(kept: pd.DataFrame, notes: list[str], collapse: dict | None = None) -> dict[str, dict]:
    """Predictions of every ok record that names a file: {record path: {suffix: (ids, preds, refs)}};
    `collapse` (optional) is filled with {record path: bench.analysis.chance.collapse_section} of the same file."""
    out = {}
    ok = kept[(kept["status"] == "ok") & kept["predictions"].notna()] if "predictions" in kept else kept.iloc[:0]
    for r in ok.itertuples(index=False):
        try:
            data = load_predictions({"predictions": r.predictions, "_path": r.path, "run_id": r.run_id})
        except ValueError as exc:
            notes.append(f"predictions not used: {exc}")
            continue
        if collapse is not None:
            collapse[r.path] = chance.collapse_section(data)
        splits = {}
        for name, sp in data["splits"].items():
            if not isinstance(sp, dict) or sp.get("role", "eval") != "eval":
                continue
            try:
                ids = np.asarray(sp["ids"])
                pred = np.asarray(sp["predictions"], dtype=float)
                ref = np.asarray(sp["references"], dtype=float)
            except (KeyError, TypeError, ValueError) as exc:
                notes.append(f"predictions not used: {r.path}: split {name!r} lacks ids/predictions/references "
                             f"({type(exc).__name__}: {exc})")
                continue
            if not (len(ids) == len(pred) == len(ref)) or len(np.unique(ids)) != len(ids):
                notes.append(f"predictions not used: {r.path}: split {name!r} has {len(ids)} ids (unique: "
                             f"{len(np.unique(ids))}), {len(pred)} predictions, {len(ref)} references")
                continue
            splits[str(sp.get("metric_suffix", ""))] = (ids, pred, ref)
        out[r.path] = splits
    return out


def _base_and_suffix(q: str, headline_metric: str, suffixes) -> tuple[str, str] | None:
    """Which base metric and eval split a quantity is (`metrics.accuracy_mm` -> accuracy, "_mm")."""
    key = headline_metric if q == "headline" else q.split(".", 1)[1]
    if key in resampled_metrics.METRICS:
        return key, ""
    for s in sorted((s for s in suffixes if s), key=len, reverse=True):
        if key.endswith(s) and key[: -len(s)] in resampled_metrics.METRICS:
            return key[: -len(s)], s
    return None


def bootstrap_single_seed(agg: Aggregation, preds: dict, b: int) -> int:
    """Fill the CI columns of one-seed cells from that seed's predictions; returns cells filled."""
    cells, kept = agg.cells, agg.kept
    paths = kept[kept["status"] == "ok"].groupby(["model", "method_label", "task"])["path"].agg(list)
    metric_qs = [c[: -len("_ci_low")] for c in cells.columns if c.endswith("_ci_low") and is_metric(c[:-7])]
    filled = 0
    for i, c in cells[cells["headline_n"] == 1].iterrows():
        rec = paths.get((c["model"], c["method_label"], c["task"]), [])
        splits = preds.get(rec[0]) if len(rec) == 1 else None
        if not splits:
            continue
        done = False
        for q in metric_qs:
            which = _base_and_suffix(q, c["headline_metric"], splits)
            if c.get(f"{q}_n", 0) != 1 or which is None or which[1] not in splits:
                continue
            _, pred, ref = splits[which[1]]
            iv = intervals.bootstrap_ci(which[0], pred, ref, b=b, seed=BOOT_SEED)
            cells.loc[i, [f"{q}_ci_low", f"{q}_ci_high"]] = [iv.low, iv.high]
            done = True
        if done:
            cells.loc[i, "ci_method"] = f"bootstrap over examples (1 seed, B={b})"
            filled += 1
    return filled


DIRECTIONAL = ("a better", "b better")
ONE_SEED = "one seed: no method verdict"
SEED_TEST = ("paired two-level bootstrap, seeds then examples resampled ({pairing}, B={b}; delta/se against "
             "Student's t, Satterthwaite df; TOST for equivalence)")
POOLED_TEST = "paired bootstrap over examples, seeds pooled: these trained models (B={b}, null-centred p)"


def _aligned(model: str, task: str, method: str, runs: list, ids: np.ndarray) -> tuple[list, np.ndarray, list]:
    """Each seed's predictions in the order of `ids`, the references, the seed numbers."""
    aligned, ref, seeds = [], None, []
    for i, run in enumerate(runs):
        r_ids, pred, r_ref = run[:3]
        by_id = np.argsort(r_ids, kind="stable")
        order = by_id[np.searchsorted(r_ids, ids, sorter=by_id)]
        aligned.append(pred[order])
        ref = r_ref[order] if ref is None else ref
        if not np.array_equal(ref, r_ref[order]):
            raise ValueError(f"{model}/{task}/{method}: references differ between seeds on shared ids")
        seeds.append(int(run[3]) if len(run) > 3 and run[3] is not None else -1 - i)
    return aligned, ref, seeds


def _outcome_words(outcome: str) -> str:
    return {"better": "a better", "worse": "b better"}.get(outcome, outcome)


def _pairs_for_task(model: str, task: str, hm: str, runs: dict[str, list], scores: dict[str, list],
                    means: dict[str, float], b: int, notes: list[str], margin: float | None = None,
                    only_with: str | None = None) -> list[dict]:
    """Seed-aware and pooled paired tests for every pair of methods with predictions on this (model, task)
    (only the pairs that contain `only_with` when given: the family Holm corrects over).

    `runs[method]` holds (ids, predictions, references[, seed]) per seed; a run without a seed number
    counts as a seed of its own (never paired)."""
    cache: dict[tuple, tuple] = {}
    mg = equivalence.margin_for(hm, margin)

    def per_seed(method: str, ids: np.ndarray):
        key = (method, len(ids), hash(ids.tobytes()))
        if key not in cache:
            aligned, ref, seeds = _aligned(model, task, method, runs[method], ids)
            idx = resampled_metrics.resample_indices(len(ids), b, BOOT_SEED)
            cache[key] = (*resampled_metrics.seed_matrix(hm, aligned, ref, idx), seeds, ref)
        return cache[key]

    rows = []
    ranked = sorted(runs, key=lambda m: (-means.get(m, -np.inf), m))
    for a, bm in itertools.combinations(ranked, 2):
        if only_with is not None and only_with not in (a, bm):
            continue
        ids = np.asarray(sorted(set.intersection(*(set(r[0].tolist()) for r in runs[a] + runs[bm]))))
        if len(ids) == 0:
            notes.append(f"{model}/{task}: {a} and {bm} share no eval example ids; not compared")
            continue
        try:
            full_a, mat_a, seeds_a, ref_a = per_seed(a, ids)
            full_b, mat_b, seeds_b, ref_b = per_seed(bm, ids)
        except ValueError as exc:
            notes.append(f"not compared: {exc}")
            continue
        if not np.array_equal(ref_a, ref_b):
            notes.append(f"{model}/{task}: {a} and {bm} have different references on shared ids; not compared")
            continue
        pooled_samples = mat_a.mean(axis=0) - mat_b.mean(axis=0)
        pooled = example_bootstrap.paired_from_samples(float(full_a.mean() - full_b.mean()), pooled_samples, len(ids))
        pe_low, pe_high, pe_p = example_bootstrap.pooled_equiv(pooled_samples, mg)
        row = {"model": model, "task": task, "metric": hm, "method_a": a, "method_b": bm,
               "score_a": float(full_a.mean()), "score_b": float(full_b.mean()), "delta": pooled.delta,
               "margin": mg, "n_seeds_a": len(seeds_a), "n_seeds_b": len(seeds_b), "n_examples": len(ids),
               "pooled_ci_low": pooled.low, "pooled_ci_high": pooled.high, "pooled_p": pooled.p,
               "pooled_eq_low": pe_low, "pooled_eq_high": pe_high, "pooled_p_equiv": pe_p,
               "pooled_test": POOLED_TEST.format(b=b),
               "aso_eps": (score_distributions.aso_eps_min(scores[a], scores[bm], b=b, seed=BOOT_SEED)
                           if len(scores[a]) >= 3 and len(scores[bm]) >= 3 else np.nan)}
        if len(seeds_a) >= 2 and len(seeds_b) >= 2:
            sa = two_level.seed_aware(hm, seeds_a, seeds_b, full_a, full_b, mat_a, mat_b, len(ids), seed=BOOT_SEED,
                                      margin=mg)
            row |= {"ci_low": sa.low, "ci_high": sa.high, "p": sa.p, "eq_low": sa.eq_low, "eq_high": sa.eq_high,
                    "p_equiv": sa.p_equiv, "pairing": sa.pairing, "var_seeds": sa.var_seeds,
                    "var_examples": sa.var_examples, "test": SEED_TEST.format(pairing=sa.pairing, b=b)}
        else:  # the interval shown is the example-level one, for these trained models only
            row |= {"ci_low": pooled.low, "ci_high": pooled.high, "p": np.nan, "eq_low": np.nan, "eq_high": np.nan,
                    "p_equiv": np.nan, "pairing": "", "var_seeds": np.nan, "var_examples": np.nan,
                    "test": "one seed on a side: only the example-level interval (these trained models)"}
        rows.append(row)
    _decide(rows, model, task, b, notes)
    return rows


def _decide(rows: list[dict], model: str, task: str, b: int, notes: list[str]) -> None:
    """Holm over the family (seed-aware p, TOST p, pooled p and pooled TOST p each on their own),
    the four outcomes, and seeds_to_decide for the undecided seed-aware pairs."""
    if not rows:
        return
    family = f"Holm over the {len(rows)} pair(s) of {model}/{task}"
    adj = {k: multiple_comparisons.holm([r[k] for r in rows]) for k in ("p", "p_equiv", "pooled_p", "pooled_p_equiv")}
    tested = sum(np.isfinite(r["p"]) for r in rows)
    for warn_for, m in (("pairwise tests", tested), ("pooled pairwise tests", len(rows))):
        warn = multiple_comparisons.resolution_warning(m, b)
        if warn and m:
            notes.append(f"{model}/{task} {warn_for}: {warn}")
    for i, r in enumerate(rows):
        r["p_adjusted"], r["p_equiv_adjusted"] = adj["p"][i], adj["p_equiv"][i]
        r["pooled_p_adjusted"] = adj["pooled_p"][i]
        r["correction"] = family
        r["pooled_verdict"] = _outcome_words(multiple_comparisons.outcome(
            adj["pooled_p"][i], r["pooled_ci_low"], r["pooled_ci_high"], r["delta"], adj["pooled_p_equiv"][i]))
        if not np.isfinite(r["p"]):
            r["verdict"], r["seeds_to_decide"] = ONE_SEED, np.nan
            continue
        out = multiple_comparisons.outcome(r["p_adjusted"], r["ci_low"], r["ci_high"], r["delta"],
                                           r["p_equiv_adjusted"])
        r["verdict"] = _outcome_words(out)
        r["seeds_to_decide"] = (power.seeds_to_decide(r["delta"], r["var_seeds"], r["var_examples"], r["margin"],
                                                      m=tested) if out == "undecided" else np.nan)


def pairwise_tests(agg: Aggregation, preds: dict, b: int, notes: list[str],
                   margin: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """pairwise frame (PAIR_COLUMNS) and ranks frame (RANK_COLUMNS) for every (model, task)."""
    ok = agg.kept[agg.kept["status"] == "ok"]
    if not preds:  # e.g. only schema-1 records: one note instead of one per task
        notes.append(f"none of the {len(ok)} ok record(s) has a usable per-example predictions file "
                     "(schema-1 records or runs without one): intervals come from seeds only")
        return pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=RANK_COLUMNS)
    means = agg.cells.set_index(["model", "task", "method_label"])["headline_mean"]
    rows, ranks = [], []
    for (model, task), sub in ok.groupby(["model", "task"], sort=True):
        hm = sub["headline_metric"].mode().iloc[0]
        runs, scores, lacking = defaultdict(list), defaultdict(list), set()
        for r in sub.itertuples(index=False):
            if np.isfinite(r.headline):
                scores[r.method_label].append(r.headline)
            main = preds.get(r.path, {}).get("")
            if main is None:
                lacking.add(r.method_label)
            else:
                runs[r.method_label].append((*main, r.seed))
        if lacking:
            partial = sorted(m for m in lacking if m in runs)
            notes.append(f"{model}/{task}: no per-example predictions for "
                         + ", ".join(sorted(lacking - set(partial)) or ["-"])
                         + (f"; some seeds only for {', '.join(partial)} (tests use the seeds that have them)"
                            if partial else "") + ": pairs with these methods have no paired test")
        if hm not in resampled_metrics.METRICS:
            notes.append(f"{model}/{task}: headline metric {hm!r} cannot be recomputed; no pairwise test")
            continue
        m_means = {m: means.get((model, task, m), np.nan) for m in runs}
        task_rows = _pairs_for_task(model, task, hm, dict(runs), dict(scores), m_means, b, notes, margin)
        rows += task_rows
        if task_rows:
            better = {(r["method_a"], r["method_b"]) if r["verdict"] == "a better" else (r["method_b"], r["method_a"])
                      for r in task_rows if r["verdict"] in DIRECTIONAL}
            # a method with one seed has no method verdict, so no rank (never "tied with the best")
            seed_tested = [r for r in task_rows if r["verdict"] != ONE_SEED]
            tested = sorted({r["method_a"] for r in seed_tested} | {r["method_b"] for r in seed_tested})
            for m, rank in multiple_comparisons.rank_with_ties(tested, better).items():
                ranks.append({"model": model, "task": task, "method_label": m, "rank": rank,
                              "tied_best": rank == 1, "n_methods": len(tested)})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), pd.DataFrame(ranks, columns=RANK_COLUMNS)


def tuning_curves(trials: pd.DataFrame) -> pd.DataFrame:
    """Expected best selection score vs number of trials, per (model, task, method_label, study)."""
    if trials.empty or "study_selection_score" not in trials:
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    t = trials[(trials["status"] == "ok")].copy()
    if "study_rejected" in t:  # the seeds of a rate the stability check rejected: not trials of the budget
        t = t[t["study_rejected"].isna()]
    t["study_selection_score"] = pd.to_numeric(t["study_selection_score"], errors="coerce")
    t = t[np.isfinite(t["study_selection_score"].astype(float))]
    t["study_name"] = t["study_name"].fillna("")
    keys = ["model", "task", "method_label", "study_name"]
    # A rerun trial (same trial index and seed) counts once: the newest record.
    t = t.sort_values("finished_at", na_position="first", kind="stable")
    t = t.drop_duplicates(keys + ["study_trial_index", "study_trial_seed", "seed"], keep="last")
    rows = []
    for (model, task, label, study), g in t.groupby(keys, sort=True):
        mean, std = score_distributions.expected_max(g["study_selection_score"].to_numpy(float))
        rows += [{"model": model, "task": task, "method_label": label, "study": study, "n_trials": len(g),
                  "k": k + 1, "expected_max": mean[k], "std": std[k]} for k in range(len(g))]
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def add_verdicts(agg: Aggregation, b: int = resampled_metrics.DEFAULT_B, margin: float | None = None) -> Aggregation:
    """Compute everything above into `agg` (cells' CI columns, pairwise, ranks, tuning curves, notes)."""
    notes: list[str] = []
    if agg.kept.empty:
        agg.pairwise, agg.ranks = pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=RANK_COLUMNS)
        agg.tuning_curves, agg.notes = tuning_curves(agg.trials), notes
        return agg
    collapse: dict = {}
    preds = _load(agg.kept, notes, collapse)
    if preds:
        bootstrap_single_seed(agg, preds, b)
    agg.pairwise, agg.ranks = pairwise_tests(agg, preds, b, notes, margin)
    from .chance import add_chance  # trivial baselines, tests against chance, collapses

    add_chance(agg, preds, collapse, b, notes)
    agg.tuning_curves = tuning_curves(agg.trials)
    agg.notes = notes
    return agg
