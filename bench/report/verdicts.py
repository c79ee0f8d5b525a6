"""Verdicts from per-example predictions: bootstrap intervals, pairwise tests, ranks, tuning curves.

Why: a table of means invites "A beats B" from differences that one more seed would reverse.
This module adds, per model and task, what is needed to say so with a stated error rate:

* a percentile bootstrap interval for cells with one seed (several seeds get the t interval
  from aggregate.py);
* a paired bootstrap test for every pair of methods on the same examples, pooled over seeds,
  Holm-adjusted over the pairs of that (model, task), plus ASO ε_min when both have >= 3 seeds;
* ranks with ties (bench.analysis.stats.rank_with_ties) and the methods tied with the best;
* expected best selection score versus number of tuning trials, from the study's trial records.

Records without predictions (schema 1) still get seed intervals; their pairs get no test and
`Aggregation.notes` says so. Statistics live in bench/analysis/stats.py; docs/statistics.md explains them.
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pandas as pd

from bench.analysis import chance, stats
from bench.analysis.aggregate import Aggregation, is_metric
from bench.records.schema import load_predictions

BOOT_SEED = 0  # one fixed resampling seed: reports are reproducible and pairs share resamples
PAIR_COLUMNS = ["model", "task", "metric", "method_a", "method_b", "score_a", "score_b", "delta", "ci_low",
                "ci_high", "p", "p_adjusted", "verdict", "test", "correction", "n_seeds_a", "n_seeds_b",
                "n_examples", "aso_eps"]
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
    if key in stats.METRICS:
        return key, ""
    for s in sorted((s for s in suffixes if s), key=len, reverse=True):
        if key.endswith(s) and key[: -len(s)] in stats.METRICS:
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
            iv = stats.bootstrap_ci(which[0], pred, ref, b=b, seed=BOOT_SEED)
            cells.loc[i, [f"{q}_ci_low", f"{q}_ci_high"]] = [iv.low, iv.high]
            done = True
        if done:
            cells.loc[i, "ci_method"] = f"bootstrap over examples (1 seed, B={b})"
            filled += 1
    return filled


def _pairs_for_task(model: str, task: str, hm: str, runs: dict[str, list], scores: dict[str, list],
                    means: dict[str, float], b: int, notes: list[str]) -> list[dict]:
    """Paired bootstrap for every pair of methods with predictions on this (model, task)."""
    cache: dict[tuple, tuple[float, np.ndarray]] = {}

    def samples(method: str, ids: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        aligned, ref = [], None
        for r_ids, pred, r_ref in runs[method]:
            by_id = np.argsort(r_ids, kind="stable")
            order = by_id[np.searchsorted(r_ids, ids, sorter=by_id)]
            aligned.append(pred[order])
            ref = r_ref[order] if ref is None else ref
            if not np.array_equal(ref, r_ref[order]):
                raise ValueError(f"{model}/{task}/{method}: references differ between seeds on shared ids")
        key = (method, len(ids), hash(ids.tobytes()))
        if key not in cache:
            idx = stats.resample_indices(len(ids), b, BOOT_SEED)
            cache[key] = (float(stats.seed_mean(hm, aligned, ref)[0]), stats.seed_mean(hm, aligned, ref, idx))
        return (*cache[key], ref)

    rows = []
    ranked = sorted(runs, key=lambda m: (-means.get(m, -np.inf), m))
    for a, bm in itertools.combinations(ranked, 2):
        ids = np.asarray(sorted(set.intersection(*(set(r[0].tolist()) for r in runs[a] + runs[bm]))))
        if len(ids) == 0:
            notes.append(f"{model}/{task}: {a} and {bm} share no eval example ids; not compared")
            continue
        try:
            obs_a, samp_a, ref_a = samples(a, ids)
            obs_b, samp_b, ref_b = samples(bm, ids)
        except ValueError as exc:
            notes.append(f"not compared: {exc}")
            continue
        if not np.array_equal(ref_a, ref_b):
            notes.append(f"{model}/{task}: {a} and {bm} have different references on shared ids; not compared")
            continue
        res = stats.paired_from_samples(obs_a - obs_b, samp_a - samp_b, len(ids))
        aso = (stats.aso_eps_min(scores[a], scores[bm], b=b, seed=BOOT_SEED)
               if len(scores[a]) >= 3 and len(scores[bm]) >= 3 else np.nan)
        rows.append({"model": model, "task": task, "metric": hm, "method_a": a, "method_b": bm,
                     "score_a": obs_a, "score_b": obs_b, "delta": res.delta, "ci_low": res.low,
                     "ci_high": res.high, "p": res.p,
                     "test": f"paired bootstrap over examples, seeds pooled (B={b}, null-centred p)",
                     "n_seeds_a": len(runs[a]), "n_seeds_b": len(runs[bm]), "n_examples": len(ids), "aso_eps": aso})
    p_adj = stats.holm([r["p"] for r in rows])
    warn = stats.resolution_warning(len(rows), b)
    if warn:
        notes.append(f"{model}/{task} pairwise tests: {warn}")
    for r, pa in zip(rows, p_adj):
        r["p_adjusted"] = pa
        r["correction"] = f"Holm over the {len(rows)} pair(s) of {model}/{task}"
        sig = stats.significant(pa, r["ci_low"], r["ci_high"])
        r["verdict"] = "tie" if not sig else ("a better" if r["delta"] > 0 else "b better")
    return rows


def pairwise_tests(agg: Aggregation, preds: dict, b: int, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
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
                runs[r.method_label].append(main)
        if lacking:
            partial = sorted(m for m in lacking if m in runs)
            notes.append(f"{model}/{task}: no per-example predictions for "
                         + ", ".join(sorted(lacking - set(partial)) or ["-"])
                         + (f"; some seeds only for {', '.join(partial)} (tests use the seeds that have them)"
                            if partial else "") + ": pairs with these methods have no paired test")
        if hm not in stats.METRICS:
            notes.append(f"{model}/{task}: headline metric {hm!r} cannot be recomputed; no pairwise test")
            continue
        m_means = {m: means.get((model, task, m), np.nan) for m in runs}
        task_rows = _pairs_for_task(model, task, hm, dict(runs), dict(scores), m_means, b, notes)
        rows += task_rows
        if task_rows:
            better = {(r["method_a"], r["method_b"]) if r["verdict"] == "a better" else (r["method_b"], r["method_a"])
                      for r in task_rows if r["verdict"] != "tie"}
            tested = sorted({r["method_a"] for r in task_rows} | {r["method_b"] for r in task_rows})
            for m, rank in stats.rank_with_ties(tested, better).items():
                ranks.append({"model": model, "task": task, "method_label": m, "rank": rank,
                              "tied_best": rank == 1, "n_methods": len(tested)})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), pd.DataFrame(ranks, columns=RANK_COLUMNS)


def tuning_curves(trials: pd.DataFrame) -> pd.DataFrame:
    """Expected best selection score vs number of trials, per (model, task, method_label, study)."""
    if trials.empty or "study_selection_score" not in trials:
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    t = trials[(trials["status"] == "ok")].copy()
    t["study_selection_score"] = pd.to_numeric(t["study_selection_score"], errors="coerce")
    t = t[np.isfinite(t["study_selection_score"].astype(float))]
    t["study_name"] = t["study_name"].fillna("")
    keys = ["model", "task", "method_label", "study_name"]
    # A rerun trial (same trial index and seed) counts once: the newest record.
    t = t.sort_values("finished_at", na_position="first", kind="stable")
    t = t.drop_duplicates(keys + ["study_trial_index", "study_trial_seed", "seed"], keep="last")
    rows = []
    for (model, task, label, study), g in t.groupby(keys, sort=True):
        mean, std = stats.expected_max(g["study_selection_score"].to_numpy(float))
        rows += [{"model": model, "task": task, "method_label": label, "study": study, "n_trials": len(g),
                  "k": k + 1, "expected_max": mean[k], "std": std[k]} for k in range(len(g))]
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def add_verdicts(agg: Aggregation, b: int = stats.DEFAULT_B) -> Aggregation:
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
    agg.pairwise, agg.ranks = pairwise_tests(agg, preds, b, notes)
    from .chance import add_chance  # trivial baselines, tests against chance, collapses (issue #25)

    add_chance(agg, preds, collapse, b, notes)
    agg.tuning_curves = tuning_curves(agg.trials)
    agg.notes = notes
    return agg
