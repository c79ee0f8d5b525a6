"""Display tables (Markdown, LaTeX, HTML, plain text) and the machine-readable CSV.

Display tables are built once as a neutral `Table` (header + rows of already formatted strings +
a status per cell) and then rendered per format (render.py), so all formats show exactly the same
numbers. Task names, order and captions come from the records' task specs (agg.catalog). Display
scaling (metrics x100, bytes -> MiB/MB) happens only here; table.csv keeps the raw values
from aggregate.py (metrics on the 0-1 scale), one row per (model, method_label, task) plus one
summary row per (model, method_label).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.aggregate import Aggregation
from bench.records.results import fmt_count

from .cells import _isnum, fmt_metric, metric_cell
from .chance_tables import (
    _chance_of,
    add_baseline_rows,
    chance_marks,
    chance_text,
    no_verdict_table,
)
from .render import Table, latex_escape, to_html, to_latex, to_markdown, to_text  # noqa: F401 (public here too)

METRIC_SHORT = {"matthews_correlation": "MCC", "pearson": "Pearson", "spearmanr": "Spearman",
                "f1": "F1", "accuracy": "acc"}
SECONDARY = {"f1": "accuracy"}  # papers show MRPC/QQP as F1 and accuracy
MIB = 2**20
CI_TEXT = ("mean [95% CI]: t interval over seeds (mean ± t*s/sqrt(n)) when n > 1, percentile bootstrap over the "
           "dev examples for one seed with per-example predictions, mean alone otherwise (table.csv: ci_method)")
TIE_TEXT = ("Bold: best on the task or not significantly worse than it (paired bootstrap over dev examples, "
            "seeds pooled, Holm-adjusted over the task's pairs; tie = adjusted p >= 0.05 or the difference's "
            "CI contains 0; docs/statistics.md); tasks without per-example predictions are not marked")
CHANCE_TEXT = ("† not above chance: a paired bootstrap of the method (seeds pooled) against the best constant "
               "predictor on the headline (majority class, or class 1 where that wins F1; the mean label for "
               "regression) does not show it better (Holm over the task's methods, p < 0.05, CI excluding 0); such "
               "a cell is never bold. '(collapsed k/N)': k seeds predict (nearly) one class or a (nearly) constant "
               "score. The rows below the methods are trivial baselines computed from the dev labels alone: "
               "majority, always_positive, label_prior (predictions drawn from the label distribution: mean "
               "and 95% range of 2,000 seeded draws), constant_mean (regression; a correlation of a constant is "
               "undefined)")
CAPTION = ("{model}: each task's headline metric ×100 on its main evaluation split, " + CI_TEXT + "; '(n=k/N)' "
           "when only k of the N seeds are ok. " + TIE_TEXT + ". " + CHANCE_TEXT + ". {avg} is the unweighted mean "
           "of the headline "
           "metric over those tasks; a method missing one of them has no average. Trainable parameters "
           "include the task head (% of all parameters); peak memory (MiB = 1,048,576 bytes), train throughput "
           "and storage (MB = 1,000,000 bytes) are means over the method's tasks. Tasks: {tasks}.")


def sig3(v: float) -> str:
    """Three significant digits, trailing zeros kept (0.680, 3.30, 150) so columns line up."""
    return f"{v:#.3g}".rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"


def fmt_bytes(b) -> str:
    if not _isnum(b):
        return "–"
    if b >= 1e9:
        return f"{b / 1e9:.2f} GB"
    if b >= 1e6:
        return f"{b / 1e6:.1f} MB"
    return f"{b / 1e3:.1f} KB"


def fmt_mib(b) -> str:
    return f"{b / MIB:,.0f}" if _isnum(b) else "–"


def fmt_num(v, digits: int = 1) -> str:
    return f"{v:,.{digits}f}" if _isnum(v) else "–"


def fmt_range(lo, hi, fmt) -> str:
    a, b = fmt(lo), fmt(hi)
    return a if a == b else f"{a}–{b}"


def task_captions(agg: Aggregation, model: str) -> str:
    """Each task of the model as its spec describes it (bench.records.results.TaskCatalog), in table order:
    `name: description (headline metric)`."""
    cells = agg.cells[agg.cells["model"] == model]
    parts = []
    for task in agg.grid_tasks(model):
        info = agg.catalog.info(task)
        hm = cells.loc[cells["task"] == task, "headline_metric"].iloc[0]
        parts.append(f"{info.display_name}: {info.description + ' ' if info.description else ''}(headline {hm})")
    return "; ".join(parts)


def _task_columns(agg: Aggregation, model: str) -> list[tuple[str, str, str]]:
    """(task, quantity, header) for the model's display columns."""
    cols = []
    cells = agg.cells[agg.cells["model"] == model]
    for task in agg.grid_tasks(model):
        hm = cells.loc[cells["task"] == task, "headline_metric"].iloc[0]
        task_name = agg.catalog.info(task).display_name
        cols.append((task, "headline", f"{task_name} ({METRIC_SHORT.get(hm, hm)})"))
        sec = SECONDARY.get(hm)
        sub = cells[cells["task"] == task]
        if sec and f"metrics.{sec}_n" in sub and sub[f"metrics.{sec}_n"].sum() > 0:
            cols.append((task, f"metrics.{sec}", f"{task_name} ({METRIC_SHORT.get(sec, sec)})"))
    return cols


def method_order(agg: Aggregation, model: str) -> list[str]:
    """Most trainable parameters first (full finetuning on top, as in papers), then by label."""
    summ = agg.summary[agg.summary["model"] == model]
    p = summ.get("params.trainable_mean", pd.Series(float("nan"), index=summ.index))
    order = summ.assign(_p=p.fillna(-1)).sort_values(["_p", "method_label"], ascending=[False, True])
    return list(order["method_label"])


def tied_best(agg: Aggregation, model: str) -> set[tuple[str, str]]:
    """(method_label, task) pairs with rank 1 (best or not significantly worse; verdicts.py)."""
    r = agg.ranks
    if r.empty:
        return set()
    r = r[(r["model"] == model) & r["tied_best"].astype(bool)]
    return set(zip(r["method_label"], r["task"]))


def main_table(agg: Aggregation, model: str) -> Table:
    """Methods as rows for one model: per-task headline, task average and the cost columns."""
    cells = agg.cells[agg.cells["model"] == model].set_index(["method_label", "task"])
    summ = agg.summary[agg.summary["model"] == model].set_index("method_label")
    tcols = _task_columns(agg, model)
    avg = summ["task"].iloc[0]
    has_cuda = summ.get("memory.cuda_peak_allocated_bytes_mean", pd.Series(dtype=float)).notna().any()
    header = ["method"] + [h for _, _, h in tcols] + [avg, "trainable params", "trainable %",
                                                      "peak RSS (MiB)"]
    header += ["CUDA peak alloc (MiB)"] if has_cuda else []
    header += ["train samples/s", "storage"]
    table = Table(f"Main results: {model}", CAPTION.format(model=model, avg=avg, tasks=task_captions(agg, model)),
                  header)
    best = tied_best(agg, model)
    for label in method_order(agg, model):
        s = summ.loc[label]
        row, st = [label], [""]
        for task, q, _ in tcols:
            cell = cells.loc[(label, task)] if (label, task) in cells.index else None
            text, status = metric_cell(cell, q)
            if q == "headline" and (label, task) in best:
                table.bold.add((len(table.rows), len(row)))
            row.append(text + (chance_marks(cell, q) if status in ("ok", "partial") else ""))
            st.append(status)
        if s["status"] == "ok":
            row.append(fmt_metric(s["headline_mean"], s["headline_std"], int(s["headline_n"]),
                                  s.get("headline_ci_low"), s.get("headline_ci_high")))
            st.append("ok")
        else:
            gap = s["missing_tasks"].replace(",", ", ")
            row.append(f"missing (no {gap})" if gap else "missing")
            st.append("missing")
        g = s.get
        row.append(fmt_range(g("params.trainable_min"), g("params.trainable_max"), fmt_count))
        row.append(fmt_range(g("params.trainable_pct_min"), g("params.trainable_pct_max"),
                             lambda v: f"{sig3(v)}%" if _isnum(v) else "–"))
        row.append(fmt_mib(g("memory.peak_rss_bytes_mean")))
        if has_cuda:
            row.append(fmt_mib(g("memory.cuda_peak_allocated_bytes_mean")))
        row.append(fmt_num(g("throughput.train_samples_per_s_mean")))
        row.append(fmt_bytes(g("storage.bytes_mean")))
        st += [""] * (len(row) - len(st))
        table.rows.append(row)
        table.status.append(st)
    add_baseline_rows(table, agg, model, tcols)
    return table


def details_table(agg: Aggregation, model: str) -> Table:
    """One row per (method, task): every metric and the main measurements of that cell."""
    cells = agg.cells[agg.cells["model"] == model]
    metrics = sorted(c[:-5] for c in cells.columns if c.startswith("metrics.") and c.endswith("_mean")
                     and cells[c[:-5] + "_n"].sum() > 0)
    header = ["method", "task", "status", "n ok/seeds", "rank", "vs chance", "collapsed", "interval"]
    header += [m.split(".", 1)[1] for m in metrics]
    header += ["trainable", "head", "peak RSS (MiB)", "CUDA peak (MiB)", "samples/s", "train s", "storage"]
    table = Table(f"Per-task details: {model}", f"{model}: every metric ×100, {CI_TEXT}, and the per-task "
                  "measurements (means over ok seeds). rank: rank with ties on the headline metric (1 + number "
                  "of methods significantly better; '–' without per-example predictions). vs chance: difference "
                  "to the best constant predictor and its Holm-adjusted p (paired bootstrap, seeds pooled); "
                  "collapsed: seeds whose predictions are (nearly) one class or constant.", header)
    ranks = agg.ranks[agg.ranks["model"] == model].set_index(["method_label", "task"])["rank"] \
        if not agg.ranks.empty else pd.Series(dtype=float)
    order = {lbl: i for i, lbl in enumerate(method_order(agg, model))}
    cells = cells.assign(_o=cells["method_label"].map(order)).sort_values("_o", kind="stable")
    for _, c in cells.iterrows():
        rank = ranks.get((c["method_label"], c["task"]))
        k = c.get("collapsed_seeds")
        row = [c["method_label"], c["task"], c["status"], f"{c['n_ok']}/{c['n_seeds']}",
               "–" if rank is None else str(int(rank)), chance_text(c),
               f"{int(k)}/{c['n_ok']}: {c.get('collapse_warnings')}" if _isnum(k) and k > 0 else "–",
               c.get("ci_method") or "–"]
        st = ["", "", c["status"], "", "", "", "", ""]
        for m in metrics:
            text, status = metric_cell(c, m)
            row.append(text)
            st.append(status)
        row += [fmt_count(c.get("params.trainable_mean")), fmt_count(c.get("params.head_mean")),
                fmt_mib(c.get("memory.peak_rss_bytes_mean")), fmt_mib(c.get("memory.cuda_peak_allocated_bytes_mean")),
                fmt_num(c.get("throughput.train_samples_per_s_mean")), fmt_num(c.get("time.train_s_mean")),
                fmt_bytes(c.get("storage.bytes_mean"))]
        st += [""] * (len(row) - len(st))
        table.rows.append(row)
        table.status.append(st)
    return table


def _verdict_cell(word: str, d: float, pa: float, lo: float, hi: float, need: float) -> str:
    """One matrix cell: the outcome, the difference ×100 and what qualifies it (p, CI or seeds needed)."""
    if word.startswith("one seed"):
        return f"one seed {100 * d + 0.0:+.1f} [{100 * lo + 0.0:+.1f}, {100 * hi + 0.0:+.1f}] (examples only)"
    text = f"{word} {100 * d + 0.0:+.1f} (p={pa:.3g})"
    if word == "undecided" and not math.isnan(need):
        text += f" n≈{int(need)}" if np.isfinite(need) else " n>1000"
    return text


def verdict_tables(agg: Aggregation, model: str) -> list[Table]:
    """Per task, a method x method matrix: row vs column verdict, difference ×100 and adjusted p."""
    pw = agg.pairwise[agg.pairwise["model"] == model] if not agg.pairwise.empty else agg.pairwise
    tables = []
    order = {lbl: i for i, lbl in enumerate(method_order(agg, model))}
    for task in agg.grid_tasks(model):
        sub = pw[pw["task"] == task] if not pw.empty else pw
        if sub.empty:
            continue
        methods = sorted(set(sub["method_a"]) | set(sub["method_b"]), key=lambda m: (order.get(m, 1e9), m))
        chance_of = _chance_of(agg, model, task)
        if (model, task) in agg.no_verdict:
            tables.append(no_verdict_table(agg, model, task, methods, chance_of))
            continue
        t = Table(f"Pairwise verdicts: {model} / {task}",
                  f"Row vs column on {sub['metric'].iloc[0]} (×100), verdicts about the methods: a paired "
                  "two-level bootstrap resamples seeds (seed k with seed k) and then examples. 'better'/'worse' "
                  f"when the Holm-adjusted p (over the {len(sub)} pair(s) of this task) is < 0.05 and the 95% CI "
                  "excludes 0; 'equivalent' when the Holm-adjusted TOST p is < 0.05 (the 90% CI inside ±margin, "
                  f"{100 * float(sub['margin'].iloc[0]):g} points); else 'undecided' (n≈: seeds per method that "
                  "would likely decide it). 'one seed': no method verdict, the example-level 95% CI is shown "
                  "for these trained models. Difference = row − column, mean over seeds, on the examples both "
                  "predicted; all numbers, and the seeds-pooled test, in pairwise.csv. vs chance: the row's "
                  "difference to the best constant predictor, Holm-adjusted p over the task's methods; a method "
                  "not above chance (†) is never bold.", ["method"] + methods + ["vs chance"])
        cell = {}
        for r in sub.itertuples(index=False):
            v = {"a better": ("better", "worse"), "b better": ("worse", "better")}.get(r.verdict, (r.verdict,) * 2)
            cell[(r.method_a, r.method_b)] = (v[0], r.delta, r.p_adjusted, r.ci_low, r.ci_high, r.seeds_to_decide)
            cell[(r.method_b, r.method_a)] = (v[1], -r.delta, r.p_adjusted, -r.ci_high, -r.ci_low, r.seeds_to_decide)
        for i, a in enumerate(methods):
            row, st = [a], [""]
            for b in methods:
                if a == b:
                    row.append("·")
                    st.append("")
                elif (a, b) in cell:
                    word, d, pa, lo, hi, need = cell[(a, b)]
                    row.append(_verdict_cell(word, d, pa, lo, hi, need))
                    st.append(word if word in ("better", "worse") else "")
                else:
                    row.append("not tested")
                    st.append("")
            row.append(chance_of.get(a, "–"))
            st.append("")
            t.rows.append(row)
            t.status.append(st)
        tables.append(t)
    return tables


def compact_table(agg: Aggregation, model: str) -> Table:
    """Main table without std and cost columns except params: fits a terminal."""
    full = main_table(agg, model)
    keep = [i for i, h in enumerate(full.header)
            if i == 0 or "(" in h and not h.startswith(("peak", "CUDA")) or h == "trainable params"]
    rows = [[re.sub(r" (± [0-9.,]+|\[[^\]]*\])", "", r[i]).replace("missing (no ", "missing(").replace(", ", ",")
             for i in keep] for r in full.rows]
    return Table(full.title, "", [full.header[i] for i in keep], rows, [[""] * len(keep) for _ in rows])


# ---------------------------------------------------------------- files


def csv_frame(agg: Aggregation) -> pd.DataFrame:
    """Cells then summary rows, raw values (metrics 0-1), sorted by model and method; the trivial
    baselines (row_type "chance", method majority/label_prior/...) after each model's methods."""
    base = agg.baselines if agg.baselines is not None and not agg.baselines.empty else None
    parts = [agg.cells, agg.summary] + ([base] if base is not None else [])
    frame = pd.concat(parts, ignore_index=True, sort=False)
    first = [c for c in agg.cells.columns] + [c for c in agg.summary.columns if c not in agg.cells.columns]
    first += [c for c in (base.columns if base is not None else []) if c not in first]
    frame = frame[first].copy()
    counts = [c for c in frame.columns if c.endswith("_n") or c in (
        "n_seeds", "n_ok", "n_failed", "n_missing", "n_tasks", "collapsed_seeds", "chance_examples")]
    frame[counts] = frame[counts].astype("Int64")  # counts stay integers next to summary rows
    rt = frame["row_type"].map({"cell": 0, "summary": 1, "chance": 2}).fillna(3).astype(int)
    return frame.iloc[np.lexsort((rt, frame["method_label"], rt == 2, frame["model"]))].reset_index(drop=True)


def failures_markdown(agg: Aggregation) -> str:
    fail = agg.failures()
    lines = ["### Failed or missing runs", ""]
    if fail.empty:
        return "\n".join(lines + ["None: every model x method x task x seed cell has an ok record.", ""])
    lines += ["| model | method | task | seed | status | error |", "|:---|:---|:---|---:|:---|:---|"]
    for r in fail.itertuples(index=False):
        err = ": ".join(str(x) for x in (r.error_type, r.error_message) if isinstance(x, str))
        lines.append(f"| {r.model} | {r.method_label} | {r.task} | {r.seed} | {r.status} | "
                     f"{err.replace('|', '/')[:200]} |")
    return "\n".join(lines) + "\n"


def verdict_notes_markdown(agg: Aggregation) -> str:
    """What the pairwise section covers and, above all, which pairs it could not test and why."""
    pw = agg.pairwise
    head = ("Seed-aware paired bootstrap tests between methods of one model on one task (pairwise.csv; "
            "docs/statistics.md). "
            + (f"{len(pw)} pair(s) tested: " + ", ".join(f"{n} {v}" for v, n in pw["verdict"].value_counts().items())
               + " (after Holm)."
               if not pw.empty else "No pair could be tested: no two methods of a task have per-example "
               "predictions (schema-1 records or runs without a predictions file)."))
    ch = agg.chance
    if ch is not None and not ch.empty:
        n_above = int(ch["above_chance"].astype(bool).sum())
        head += (f" Against chance: {n_above} of {len(ch)} (model, task, method) cell(s) above the best constant "
                 f"predictor (Holm over each task's methods); {len(agg.no_verdict)} task(s) without a verdict.")
    notes = [f"- {n}" for n in agg.notes]
    return "\n".join([head, ""] + notes) + "\n"


def write_tables(agg: Aggregation, out: Path) -> dict[str, Path]:
    """Write table.md, table.csv, table.tex and table.html into `out`; returns their paths."""
    mains = {m: main_table(agg, m) for m in agg.models}
    details = {m: details_table(agg, m) for m in agg.models}
    paths = {k: out / f"table.{k}" for k in ("md", "csv", "tex", "html")}
    paths["pairwise"] = out / "pairwise.csv"
    md = [to_markdown(t) for t in mains.values()]
    md += ["## Pairwise verdicts", "", verdict_notes_markdown(agg)]
    md += [to_markdown(t) for m in agg.models for t in verdict_tables(agg, m)]
    md += [failures_markdown(agg)] + [to_markdown(t) for t in details.values()]
    paths["md"].write_text("\n".join(md), encoding="utf-8")
    csv_frame(agg).to_csv(paths["csv"], index=False, na_rep="")
    agg.pairwise.to_csv(paths["pairwise"], index=False, na_rep="")
    for old in (out / "budget.csv",):  # a rebuilt report without trials must not keep an old file
        old.unlink(missing_ok=True)
    if not agg.tuning_curves.empty:
        paths["budget"] = out / "budget.csv"
        agg.tuning_curves.to_csv(paths["budget"], index=False, na_rep="")
    tex = ["% Generated by bench.report; needs \\usepackage{booktabs} and \\usepackage{graphicx}.",
           *(to_latex(t) for t in mains.values())]
    paths["tex"].write_text("\n".join(tex), encoding="utf-8")
    body = "\n".join(to_html(t, f"main-{i}") for i, t in enumerate(mains.values()))
    paths["html"].write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tables</title></head>"
                             f"<body>\n{body}\n</body></html>\n", encoding="utf-8")
    return paths
