"""The report's data-budget part: which method to pick for the data you have.

From the records of `experiment=budget` (each names its training-set size K in `config.budget_k`
and carries it in its method label, `lora@k=300`), per (model, task):

* the curve: headline metric versus K on a log axis, one line per method, mean over seeds with the
  95 % t interval as a band (bench.analysis.intervals.t_bounds, as the main tables);
* the paired tests at each K (bench.report.verdicts: the seed-aware two-level bootstrap, seeds then
  eval examples, Holm over the pairs of that (model, task, K); the seeds-pooled test beside it);
* the crossover table: for every ordered pair (A, B), the smallest K from which A is significantly
  better than B at that K and at every larger K measured, or "never in range";
* trainable parameters, train time, steps, epochs (the training-length rule) and rates per point;
* the ranking at each K and its agreement with the largest K's ranking (Kendall tau-b).

Like every report part it reads records only. The plotted x is the number of examples actually
trained on (`data.train_examples`; "full" is the train pool), the point's name is `budget_k`.
`python -m bench.report.data_budget RESULTS [--compare OTHER] --out DIR` writes this part alone; with
--compare (e.g. a `study.enabled=false` run reusing each method's default rate) it adds what the
per-K search changed (score and tuning time).
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import intervals, multiple_comparisons, resampled_metrics
from bench.records.results import newest_per_seed

from .verdicts import DIRECTIONAL, ONE_SEED

KEY = ["model", "task", "method", "k_label"]
POINT_COLUMNS = KEY + ["k", "n_seeds", "headline_metric", "mean", "std", "ci_low", "ci_high", "trainable_params",
                       "train_s", "tuning_s", "steps", "epochs", "lr", "lr_source"]
CROSS_COLUMNS = ["model", "task", "method_a", "method_b", "crossover_k", "a_better_at", "b_better_at", "tested_at"]
RANK_COLUMNS = ["model", "task", "k_label", "k", "method", "mean", "rank_by_mean", "rank_significant",
                "kendall_tau_vs_largest", "tau_p", "largest_k"]
NEVER = "never in range"


def _get(rec: dict, dotted: str):
    node = rec
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def is_budget(rec: dict) -> bool:
    return isinstance(rec.get("config"), dict) and rec["config"].get("budget_k") is not None


def budget_frame(records: list[dict]) -> pd.DataFrame:
    """One row per kept ok budget record (newest per model, label, task, seed); study trials are
    left out here (they feed `tuning_s`)."""
    recs = [r for r in records if is_budget(r) and r.get("status") == "ok"
            and _get(r, "study.role") != "trial"]
    kept, _ = newest_per_seed(recs)
    rows = []
    for r in kept:
        label = str(r.get("method_label") or r.get("method"))
        head = r.get("headline_metric")
        rows.append({
            "model": str(r.get("model")), "task": str(r.get("task")), "method": label.rsplit("@k=", 1)[0],
            "k_label": str(r["config"]["budget_k"]), "k": _num(_get(r, "data.train_examples")),
            "seed": int(r.get("seed")), "status": "ok", "headline_metric": head,
            "headline": _num((r.get("metrics") or {}).get(head)),
            "trainable_params": _num(_get(r, "params.trainable")), "train_s": _num(_get(r, "time.train_s")),
            "steps": _num(_get(r, "train.steps")), "epochs": _num(_get(r, "train.epochs")),
            "lr": _num(_get(r, "train.lr")),
            "lr_source": "selected on the selection split" if _get(r, "study.role") == "final" else "fixed",
            "path": r.get("_path"), "run_id": r.get("run_id"), "predictions": r.get("predictions") or None})
    return pd.DataFrame(rows)


def tuning_seconds(records: list[dict]) -> dict[tuple, float]:
    """Total time of the learning-rate trials behind each point: what the per-K search cost."""
    out: dict[tuple, float] = defaultdict(float)
    for r in records:
        if is_budget(r) and _get(r, "study.role") == "trial" and r.get("status") == "ok":
            label = str(r.get("method_label") or r.get("method"))
            key = (str(r.get("model")), str(r.get("task")), label.rsplit("@k=", 1)[0], str(r["config"]["budget_k"]))
            out[key] += _num(_get(r, "time.total_s")) if math.isfinite(_num(_get(r, "time.total_s"))) else 0.0
    return dict(out)


def points(frame: pd.DataFrame, tuning: dict | None = None) -> pd.DataFrame:
    """One row per (model, task, method, K): mean over seeds, t interval, cost and the rates used."""
    if frame.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    rows = []
    for key, g in frame.groupby(KEY, sort=False):
        v = g["headline"].dropna().to_numpy(float)
        mean = float(v.mean()) if len(v) else math.nan
        std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        low, high = intervals.t_bounds(np.array([mean]), np.array([std]), np.array([len(v)]))
        rows.append(dict(zip(KEY, key)) | {
            "k": float(g["k"].median()), "n_seeds": len(v), "headline_metric": g["headline_metric"].iloc[0],
            "mean": mean, "std": std, "ci_low": float(low[0]), "ci_high": float(high[0]),
            "trainable_params": float(g["trainable_params"].mean()), "train_s": float(g["train_s"].mean()),
            "tuning_s": (tuning or {}).get(tuple(key), math.nan), "steps": float(g["steps"].mean()),
            "epochs": float(g["epochs"].mean()), "lr": ";".join(f"{x:.3g}" for x in sorted(g["lr"].dropna().unique())),
            "lr_source": ";".join(sorted(g["lr_source"].unique()))})
    return pd.DataFrame(rows, columns=POINT_COLUMNS).sort_values(["model", "task", "method", "k"], ignore_index=True)


def pair_tests(frame: pd.DataFrame, b: int = resampled_metrics.DEFAULT_B, notes: list | None = None,
               margin: float | None = None) -> pd.DataFrame:
    """The report's paired tests (bench.report.verdicts: seed-aware verdict, seeds-pooled test beside it),
    run at each K separately."""
    from .verdicts import PAIR_COLUMNS, _load, _pairs_for_task

    notes = [] if notes is None else notes
    cols = ["k_label", "k"] + PAIR_COLUMNS
    if frame.empty:
        return pd.DataFrame(columns=cols)
    preds = _load(frame, notes)
    rows = []
    for (model, task, k_label), sub in frame.groupby(["model", "task", "k_label"], sort=False):
        runs, scores = defaultdict(list), defaultdict(list)
        for r in sub.itertuples(index=False):
            if np.isfinite(r.headline):
                scores[r.method].append(r.headline)
            main = preds.get(r.path, {}).get("")
            if main is not None:
                runs[r.method].append((*main, r.seed))
        hm = sub["headline_metric"].mode().iloc[0]
        if hm not in resampled_metrics.METRICS or len(runs) < 2:
            continue
        means = {m: float(np.mean(v)) for m, v in scores.items()}
        for row in _pairs_for_task(model, task, hm, dict(runs), dict(scores), means, b, notes, margin):
            rows.append({"k_label": k_label, "k": float(sub["k"].median())} | row)
    return pd.DataFrame(rows, columns=cols)


def crossover_k(ks: list, wins: list[bool]):
    """The smallest K from which A wins at that K and every larger K (ks ascending), else None."""
    first = None
    for k, w in zip(ks, wins):
        if w and first is None:
            first = k
        elif not w:
            first = None
    return first


def crossover(pairs: pd.DataFrame, pts: pd.DataFrame) -> pd.DataFrame:
    """Every ordered pair of methods per (model, task): crossover K (k_label) or "never in range"."""
    rows = []
    for (model, task), sub in pts.groupby(["model", "task"], sort=False):
        ks = sub.drop_duplicates("k_label").sort_values("k")["k_label"].tolist()
        p = pairs[(pairs["model"] == model) & (pairs["task"] == task)] if not pairs.empty else pairs
        better, tested = defaultdict(set), defaultdict(set)
        for r in p.itertuples(index=False):
            tested[frozenset((r.method_a, r.method_b))].add(r.k_label)
            if r.verdict in DIRECTIONAL:
                better[(r.method_a, r.method_b) if r.verdict == "a better" else (r.method_b, r.method_a)].add(r.k_label)
        methods = sorted(sub["method"].unique())
        for a in methods:
            for bm in methods:
                if a == bm:
                    continue
                done = [k for k in ks if k in tested[frozenset((a, bm))]]
                cross = crossover_k(done, [k in better[(a, bm)] for k in done]) if done else None
                rows.append({"model": model, "task": task, "method_a": a, "method_b": bm,
                             "crossover_k": cross if cross is not None else NEVER,
                             "a_better_at": ",".join(k for k in ks if k in better[(a, bm)]) or "-",
                             "b_better_at": ",".join(k for k in ks if k in better[(bm, a)]) or "-",
                             "tested_at": ",".join(done) or "-"})
    return pd.DataFrame(rows, columns=CROSS_COLUMNS)


def kendall_tau(x, y) -> tuple[float, float]:
    """Kendall tau-b (ties handled) and its p-value; NaN with fewer than 2 pairs or no variation."""
    from scipy.stats import kendalltau

    if len(x) < 2:
        return math.nan, math.nan
    res = kendalltau(x, y)
    return float(res.statistic), float(res.pvalue)


def rankings(pts: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Rank at each K (by mean; and 1 + number of significantly better methods) and Kendall tau-b
    of the means at each K against the means at the largest K (methods present at both)."""
    rows = []
    for (model, task), sub in pts.groupby(["model", "task"], sort=False):
        largest = sub.sort_values("k")["k_label"].iloc[-1]
        ref = sub[sub["k_label"] == largest].set_index("method")["mean"]
        for k_label, g in sub.groupby("k_label", sort=False):
            g = g.set_index("method")
            common = [m for m in g.index if m in ref.index and np.isfinite(g.at[m, "mean"]) and np.isfinite(ref[m])]
            tau, p = kendall_tau([g.at[m, "mean"] for m in common], [ref[m] for m in common])
            by_mean = g["mean"].rank(ascending=False, method="min")
            pk = pairs[(pairs["model"] == model) & (pairs["task"] == task) & (pairs["k_label"] == k_label)] \
                if not pairs.empty else pairs
            better = {(r.method_a, r.method_b) if r.verdict == "a better" else (r.method_b, r.method_a)
                      for r in pk.itertuples(index=False) if r.verdict in DIRECTIONAL}
            sig = multiple_comparisons.rank_with_ties(list(g.index), better)
            for m in g.index:
                rows.append({"model": model, "task": task, "k_label": k_label, "k": g.at[m, "k"], "method": m,
                             "mean": g.at[m, "mean"],
                             "rank_by_mean": int(by_mean[m]) if np.isfinite(by_mean[m]) else None,
                             "rank_significant": sig.get(m), "kendall_tau_vs_largest": tau, "tau_p": p,
                             "largest_k": largest})
    out = pd.DataFrame(rows, columns=RANK_COLUMNS)
    return out.sort_values(["model", "task", "k", "rank_by_mean"], ignore_index=True) if len(out) else out


def plot_curves(pts: pd.DataFrame, out: Path) -> list:
    """One figure per (model, task): metric x100 versus K (log axis), a line and band per method."""
    import matplotlib.pyplot as plt

    from .plots import Plot, _colors, _save, safe_name

    (Path(out) / "plots").mkdir(parents=True, exist_ok=True)
    made = []
    for (model, task), sub in pts.groupby(["model", "task"], sort=False):
        methods = sorted(sub["method"].unique())
        colors = _colors(methods)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in methods:
            g = sub[sub["method"] == m].sort_values("k")
            ax.plot(g["k"], g["mean"] * 100, marker="o", color=colors[m], label=m)
            band = g[np.isfinite(g["ci_low"])]
            if len(band):
                ax.fill_between(band["k"], band["ci_low"] * 100, band["ci_high"] * 100, color=colors[m], alpha=0.18,
                                linewidth=0)
        ks = sub.drop_duplicates("k_label").sort_values("k")
        ax.set_xscale("log")
        ax.set_xticks(ks["k"].tolist())
        ax.set_xticklabels([f"{lbl}\n({k:,.0f})" if lbl == "full" else f"{k:,.0f}"
                            for lbl, k in zip(ks["k_label"], ks["k"])])
        ax.minorticks_off()
        metric = sub["headline_metric"].iloc[0]
        ax.set_xlabel("training examples K (log scale)")
        ax.set_ylabel(f"{metric} ×100 (mean over seeds; band: 95% t interval)")
        title = f"{model} / {task}: {metric} vs training-set size"
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        png, svg = _save(fig, Path(out), f"budget__{safe_name(model)}__{safe_name(task)}")
        seeds = ", ".join(sorted({str(n) for n in sub["n_seeds"]}))
        made.append(Plot(model, "budget", title, png, svg, note=f"seeds per point: {seeds}"))
    return made


def _cell(col: str, v) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if col in ("mean", "std", "ci_low", "ci_high"):
            return f"{100 * v:.2f}"
        if col in ("k", "trainable_params", "steps"):
            return f"{v:,.0f}"
        return f"{v:.3g}" if col in ("kendall_tau_vs_largest", "tau_p", "epochs") else f"{v:.1f}"
    return str(v)


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c, v))}</td>" for c, v in zip(frame.columns, r)) + "</tr>"
                   for r in frame.itertuples(index=False))
    return f'<div class="scroll"><table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table></div>'


def _md_table(frame: pd.DataFrame) -> list[str]:
    return (["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
            + ["| " + " | ".join(_cell(c, v) for c, v in zip(frame.columns, r)) + " |"
               for r in frame.itertuples(index=False)] + [""])


def reuse_cost(tuned: pd.DataFrame, reused: pd.DataFrame, tuned_frame: pd.DataFrame | None = None,
               reused_frame: pd.DataFrame | None = None, b: int = resampled_metrics.DEFAULT_B,
               notes: list | None = None, margin: float | None = None) -> pd.DataFrame:
    """Per point present in both: the per-K search's score minus the reused rate's, and its time.
    With the per-seed frames, each difference gets the report's seed-aware paired bootstrap (seeds,
    then eval examples; the two arms share the subsample of each seed, so seed k pairs with seed k)
    and Holm over the points of a (model, task): the family is "does the search change this point".
    A point with one seed on an arm gets the example-level interval and no verdict."""
    from .verdicts import _load, _pairs_for_task

    cols = KEY + ["k", "mean_tuned", "mean_reused", "delta", "ci_low", "ci_high", "p", "p_adjusted", "p_equiv",
                  "p_equiv_adjusted", "verdict", "lr_tuned", "lr_reused", "tuning_s"]
    if tuned.empty or reused.empty:
        return pd.DataFrame(columns=cols)
    m = tuned.merge(reused, on=KEY, suffixes=("_tuned", "_reused"))
    m = m.assign(k=m["k_tuned"], delta=m["mean_tuned"] - m["mean_reused"], tuning_s=m["tuning_s_tuned"],
                 ci_low=math.nan, ci_high=math.nan, p=math.nan, p_adjusted=math.nan, p_equiv=math.nan,
                 p_equiv_adjusted=math.nan, verdict="")
    if tuned_frame is None or reused_frame is None or tuned_frame.empty or reused_frame.empty:
        return m[cols]
    notes = [] if notes is None else notes
    both = pd.concat([tuned_frame.assign(arm="tuned"), reused_frame.assign(arm="reused")], ignore_index=True)
    preds = _load(both, notes)
    by_point = dict(tuple(both.groupby(KEY)))
    for i, row in m.iterrows():
        sub = by_point[tuple(row[k] for k in KEY)]
        runs, scores = {"tuned": [], "reused": []}, {"tuned": [], "reused": []}
        for r in sub.itertuples(index=False):
            main = preds.get(r.path, {}).get("")
            if main is not None:
                runs[r.arm].append((*main, r.seed))
                scores[r.arm].append(r.headline)
        hm = sub["headline_metric"].iloc[0]
        if hm not in resampled_metrics.METRICS or not runs["tuned"] or not runs["reused"]:
            continue
        res = _pairs_for_task(row["model"], row["task"], hm, runs, scores, {"tuned": 1.0, "reused": 0.0}, b, notes,
                              margin)
        if res:
            m.loc[i, ["ci_low", "ci_high", "p", "p_equiv"]] = [res[0][k] for k in ("ci_low", "ci_high", "p", "p_equiv")]
            m.loc[i, "verdict"] = ONE_SEED if not np.isfinite(res[0]["p"]) else ""
    words = {"better": "search better", "worse": "reuse better"}
    for _, g in m[m["p"].notna()].groupby(["model", "task"]):
        adj = multiple_comparisons.holm(g["p"].to_numpy(float))
        adj_eq = multiple_comparisons.holm(g["p_equiv"].to_numpy(float))
        m.loc[g.index, "p_adjusted"], m.loc[g.index, "p_equiv_adjusted"] = adj, adj_eq
        outs = (multiple_comparisons.outcome(pa, lo, hi, d, pe)
                for pa, lo, hi, d, pe in zip(adj, g["ci_low"], g["ci_high"], g["delta"], adj_eq))
        m.loc[g.index, "verdict"] = [words.get(o, o) for o in outs]
    return m[cols]


def write_budget(records: list[dict], out: Path, plots: list, b: int = resampled_metrics.DEFAULT_B,
                 compare: list[dict] | None = None, margin: float | None = None) -> tuple[dict[str, Path], str]:
    """Write budget_*.csv and budget.md, append the curves to `plots`, return (tables, HTML section).
    Nothing (and "") when no record is a budget record."""
    frame = budget_frame(records)
    if frame.empty:
        return {}, ""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    pts = points(frame, tuning_seconds(records))
    pairs = pair_tests(frame, b, notes, margin)
    cross = crossover(pairs, pts)
    ranks = rankings(pts, pairs)
    tables = {"budget_points": out / "budget_points.csv", "budget_pairs": out / "budget_pairs.csv",
              "budget_crossover": out / "budget_crossover.csv", "budget_ranks": out / "budget_ranks.csv"}
    for name, df in (("budget_points", pts), ("budget_pairs", pairs), ("budget_crossover", cross),
                     ("budget_ranks", ranks)):
        df.to_csv(tables[name], index=False)
    reuse = pd.DataFrame()
    if compare:
        other = budget_frame(compare)
        reuse = reuse_cost(pts, points(other), frame, other, b, notes, margin)
        tables["budget_reuse"] = out / "budget_reuse.csv"
        reuse.to_csv(tables["budget_reuse"], index=False)
    plots += plot_curves(pts, out)
    shown_pts = pts.drop(columns=["headline_metric", "lr_source"])
    tau = ranks.drop_duplicates(["model", "task", "k_label"])[["model", "task", "k_label", "kendall_tau_vs_largest",
                                                              "tau_p", "largest_k"]]
    rank_wide = ranks.pivot_table(index=["model", "task", "method"], columns="k_label", values="rank_significant",
                                  aggfunc="first").reset_index() if len(ranks) else ranks
    if len(ranks):  # K columns in size order, not text order
        k_order = ranks.drop_duplicates("k_label").sort_values("k")["k_label"].tolist()
        rank_wide = rank_wide[["model", "task", "method"] + [k for k in k_order if k in rank_wide.columns]]
    md = ["# Data-budget curves", "", "Points (metrics ×100; ci: 95 % t interval over seeds):", ""]
    md += _md_table(shown_pts) + [("Crossover (smallest K from which A is significantly better than B at every "
                                   "larger K; seed-aware paired bootstrap, Holm per (task, K)):"), ""]
    md += _md_table(cross) + ["Ranking agreement with the largest K (Kendall tau-b of the means):", ""]
    md += _md_table(tau) + ["Significance rank at each K (1 + methods significantly better):", ""]
    md += _md_table(rank_wide)
    if len(reuse):
        md += [("Per-K search vs reused rates (delta = tuned − reused; seed-aware paired bootstrap, seeds then eval "
                "examples, Holm over the points of a task):"), "", *_md_table(reuse)]
    md += [f"- {n}" for n in notes]
    tables["budget_md"] = out / "budget.md"
    tables["budget_md"].write_text("\n".join(md) + "\n")
    parts = ['<h2 id="budget">Data-budget curves</h2>',
             "<p>Headline metric versus training-set size K (nested, stratified subsamples per seed; docs/budget.md). "
             "Plots under Plots; downloads: " + ", ".join(f'<a href="{p.name}">{p.name}</a>' for p in tables.values())
             + ".</p>",
             _html_table(shown_pts, "points: mean ×100 over seeds, 95% t interval, cost per point"),
             _html_table(cross, f"crossover: smallest K from which A beats B at every larger K, else '{NEVER}'"),
             _html_table(tau, "ranking at each K vs the largest K: Kendall tau-b of the method means"),
             _html_table(rank_wide, "rank at each K: 1 + methods significantly better "
                                    "(seed-aware paired bootstrap, Holm)")]
    if len(reuse):
        parts.append(_html_table(reuse, "per-K rate search vs reused rates (delta = tuned - reused; seed-aware "
                                        "paired bootstrap, Holm over the points of a task)"))
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    return tables, "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.records.schema import load_records

    ap = argparse.ArgumentParser(prog="python -m bench.report.data_budget", description=__doc__.split("\n")[0])
    ap.add_argument("results", help="results folder of experiment=budget")
    ap.add_argument("--compare", help="a second budget folder (e.g. reused rates) to compare the points with")
    ap.add_argument("--out", required=True, help="report folder")
    ap.add_argument("--bootstrap", type=int, default=resampled_metrics.DEFAULT_B, help="bootstrap resamples")
    ap.add_argument("--margin", type=float, default=None,
                    help="equivalence margin on the metric's scale (default per metric, "
                         "bench.analysis.equivalence.MARGINS)")
    a = ap.parse_args(argv)
    if a.margin is not None and not a.margin > 0:
        ap.error(f"--margin {a.margin}: must be > 0")
    records, _ = load_records(Path(a.results))
    compare = load_records(Path(a.compare))[0] if a.compare else None
    Path(a.out).mkdir(parents=True, exist_ok=True)
    tables, _html = write_budget(records, Path(a.out), [], a.bootstrap, compare, a.margin)
    if not tables:
        print(f"no budget record (config.budget_k) under {a.results}")
        return 1
    print("\n".join(str(p) for p in tables.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
