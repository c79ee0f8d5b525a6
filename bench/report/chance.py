"""The report's chance layer: trivial-baseline rows, every method tested against chance, collapses.

Why: a verdict among methods that learned nothing is not a verdict. For every (model,
task) this module derives, from the evaluation references the records' prediction files carry,

* the trivial baselines of bench/analysis/chance.py as reference rows (`Aggregation.baselines`, table.csv
  rows with `row_type` "chance" and method `majority`, `label_prior`, ...);
* a paired bootstrap of each method (seeds pooled, as the pairwise tests) against the best constant
  on the headline (`Aggregation.chance`; cells' `above_chance`, `chance_p`, `chance_p_adjusted`):
  above chance when the Holm-adjusted p (over the task's methods) is < 0.05, the difference's CI
  excludes 0 and the difference is positive;
* which seeds collapsed (cells' `collapsed_seeds`, `collapse_warnings`; notes).

A method not above chance is never marked tied with the best, and a task whose best method is not
above chance gets no verdict (`Aggregation.no_verdict`). Records without predictions get none of
this (columns left empty) and a note says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import chance, example_bootstrap, multiple_comparisons, resampled_metrics
from bench.analysis.aggregate import Aggregation

BOOT_SEED = 0
CHANCE_COLUMNS = ["model", "task", "method_label", "metric", "baseline", "score", "baseline_score", "delta",
                  "ci_low", "ci_high", "p", "p_adjusted", "above_chance", "n_seeds", "n_examples", "test"]
NO_LEARNING = "no method learned this task at this budget"


def _references(runs: dict[str, list]) -> tuple[np.ndarray, np.ndarray] | None:
    """Union of the eval ids of every run of a task with their references (None if they disagree)."""
    ref_of: dict[int, float] = {}
    for seeds in runs.values():
        for ids, _, ref in seeds:
            for i, r in zip(ids.tolist(), ref.tolist()):
                if ref_of.setdefault(i, r) != r:
                    return None
    ids = np.asarray(sorted(ref_of))
    return ids, np.asarray([ref_of[i] for i in ids.tolist()], dtype=float)


def _base_metrics(cells: pd.DataFrame) -> list[str]:
    """The task's base metrics on its main split (metrics.<m> columns with values)."""
    out = []
    for m in resampled_metrics.METRICS:
        col = f"metrics.{m}_n"
        if col in cells and cells[col].fillna(0).sum() > 0:
            out.append(m)
    return out


def baseline_rows(model: str, task: str, kind: str, hm: str, base: list[chance.Trivial], n: int) -> list[dict]:
    """table.csv rows of one task's trivial baselines (scores on the 0-1 scale, as cells)."""
    rows = []
    for b in base:
        row = {"row_type": "chance", "model": model, "method": b.name, "method_label": b.name, "task": task,
               "headline_metric": hm, "status": "ok", "n_seeds": 0, "n_ok": 0, "n_failed": 0, "n_missing": 0,
               "errors": "", "ci_method": b.description, "chance_examples": n, "task_kind": kind,
               "chance_note": "; ".join(f"{m}: {why}" for m, why in b.undefined.items())}
        for q, m in [("headline", hm)] + [(f"metrics.{m}", m) for m in b.scores]:
            row[f"{q}_mean"] = b.scores.get(m, np.nan)
            row[f"{q}_ci_low"], row[f"{q}_ci_high"] = b.low.get(m, np.nan), b.high.get(m, np.nan)
            row[f"{q}_n"] = 1
        rows.append(row)
    return rows


def _aligned(seeds: list, ids: np.ndarray) -> list[np.ndarray]:
    out = []
    for r_ids, pred, _ in seeds:
        by_id = np.argsort(r_ids, kind="stable")
        out.append(pred[by_id[np.searchsorted(r_ids, ids, sorter=by_id)]])
    return out


def test_against(model: str, task: str, hm: str, runs: dict[str, list], ref_ids: np.ndarray, ref: np.ndarray,
                 const: chance.Trivial, b: int) -> list[dict]:
    """Paired bootstrap of every method (its seeds on the ids they share) against the constant."""
    rows = []
    value = float(const.predictions[0])
    for label in sorted(runs):
        seeds = runs[label]
        ids = seeds[0][0]
        for s in seeds[1:]:
            ids = np.intersect1d(ids, s[0])
        ids = np.intersect1d(ids, ref_ids)
        if len(ids) < 2:
            continue
        r = ref[np.searchsorted(ref_ids, ids)]
        res = example_bootstrap.paired_bootstrap(hm, _aligned(seeds, ids), [np.full(len(ids), value)], r, b=b,
                                                 seed=BOOT_SEED)
        rows.append({"model": model, "task": task, "method_label": label, "metric": hm, "baseline": const.name,
                     "score": res.delta + resampled_metrics.metric(hm, np.full(len(ids), value), r),
                     "baseline_score": resampled_metrics.metric(hm, np.full(len(ids), value), r), "delta": res.delta,
                     "ci_low": res.low, "ci_high": res.high, "p": res.p, "n_seeds": len(seeds),
                     "n_examples": len(ids),
                     "test": f"paired bootstrap vs {const.name}, seeds pooled (B={b}, null-centred p)"})
    for row, pa in zip(rows, multiple_comparisons.holm([x["p"] for x in rows])):
        row["p_adjusted"] = pa
        row["above_chance"] = bool(multiple_comparisons.significant(pa, row["ci_low"], row["ci_high"])
                                   and row["delta"] > 0)
    return rows


def _collapse_cells(agg: Aggregation, collapse: dict, notes: list[str]) -> None:
    """cells' collapsed_seeds / collapse_warnings from each ok record's collapse section."""
    ok = agg.kept[agg.kept["status"] == "ok"]
    found: dict[tuple, list[str]] = {}
    for r in ok.itertuples(index=False):
        sec = collapse.get(r.path)
        if sec and sec.get("warnings"):
            key = (r.model, r.method_label, r.task)
            found.setdefault(key, []).extend(f"seed {r.seed}: {w}" for w in sec["warnings"])
            notes.append(f"{r.model}/{r.task}/{r.method_label} seed {r.seed}: " + "; ".join(sec["warnings"]))
    keys = list(zip(agg.cells["model"], agg.cells["method_label"], agg.cells["task"]))
    agg.cells["collapsed_seeds"] = [len({w.split(":", 1)[0] for w in found.get(k, [])}) for k in keys]
    agg.cells["collapse_warnings"] = ["; ".join(found.get(k, [])) for k in keys]


def _apply(agg: Aggregation, tests: pd.DataFrame) -> None:
    """Cells' chance columns; ranks: not above chance is never tied best; tasks with no verdict."""
    cols = {"above_chance": "above_chance", "p": "chance_p", "p_adjusted": "chance_p_adjusted",
            "baseline": "chance_baseline", "delta": "chance_delta"}
    idx = tests.set_index(["model", "method_label", "task"]) if not tests.empty else None
    keys = list(zip(agg.cells["model"], agg.cells["method_label"], agg.cells["task"]))
    for src, dst in cols.items():
        vals = [idx[src].get(k) if idx is not None and k in idx.index else None for k in keys]
        agg.cells[dst] = pd.Series(vals, index=agg.cells.index,
                                   dtype=object if src in ("above_chance", "baseline") else float)
    agg.no_verdict = {}
    means = agg.cells.set_index(["model", "task", "method_label"])["headline_mean"]
    for (model, task), sub in tests.groupby(["model", "task"]) if not tests.empty else []:
        best = max(sub["method_label"], key=lambda m: (means.get((model, task, m), -np.inf), m))
        if not bool(sub.set_index("method_label").loc[best, "above_chance"]):
            any_above = bool(sub["above_chance"].any())
            agg.no_verdict[(model, task)] = (
                f"the best-scoring method, {best}, is not above chance ({sub['baseline'].iloc[0]}): no verdict"
                if any_above else NO_LEARNING)
    if agg.ranks.empty:
        return
    above = {(r.model, r.task, r.method_label): r.above_chance for r in tests.itertuples(index=False)}
    r = agg.ranks
    r["above_chance"] = [above.get(k) for k in zip(r["model"], r["task"], r["method_label"])]
    r["tied_best"] = [bool(t) and a is not False and (m, tk) not in agg.no_verdict
                      for t, a, m, tk in zip(r["tied_best"], r["above_chance"], r["model"], r["task"])]


def add_chance(agg: Aggregation, preds: dict, collapse: dict, b: int, notes: list[str]) -> None:
    """Fill agg.baselines, agg.chance, the cells' chance/collapse columns, ranks and no_verdict."""
    rows, tests = [], []
    ok = agg.kept[agg.kept["status"] == "ok"]
    for (model, task), sub in ok.groupby(["model", "task"], sort=True):
        hm = sub["headline_metric"].mode().iloc[0]
        runs: dict[str, list] = {}
        for r in sub.itertuples(index=False):
            main = preds.get(r.path, {}).get("")
            if main is not None:
                runs.setdefault(r.method_label, []).append(main)
        got = _references(runs) if runs else None
        if got is None:
            if runs:
                notes.append(f"{model}/{task}: eval references differ between records on shared ids; no chance rows")
            continue
        ref_ids, ref = got
        kinds = {(collapse.get(p) or {}).get("kind") for p in sub["path"]} - {None}
        kind = (kinds.pop() if len(kinds) == 1
                else "regression" if hm in ("pearson", "spearmanr") else "classification")
        cells = agg.cells[(agg.cells["model"] == model) & (agg.cells["task"] == task)]
        base = chance.trivial_baselines(kind, ref, list(dict.fromkeys([hm] + _base_metrics(cells))))
        rows += baseline_rows(model, task, kind, hm, base, len(ref))
        const = chance.chance_constant(base, hm) if hm in resampled_metrics.METRICS else None
        if const is not None:
            mine = test_against(model, task, hm, runs, ref_ids, ref, const, b)
            warn = multiple_comparisons.resolution_warning(len(mine), b)
            if warn:
                notes.append(f"{model}/{task} tests against chance: {warn}")
            tests += mine
    agg.baselines = pd.DataFrame(rows)
    agg.chance = pd.DataFrame(tests, columns=CHANCE_COLUMNS)
    _collapse_cells(agg, collapse, notes)
    _apply(agg, agg.chance)
    for (model, task), why in sorted(agg.no_verdict.items()):
        notes.append(f"{model}/{task}: {why}")
