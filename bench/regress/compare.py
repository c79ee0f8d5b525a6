"""Place one method against the other methods of the same sweep: headline metric per task, trainable
parameters, memory, throughput, and whether it is on the Pareto frontier of (trainable parameters,
headline) and of (peak memory, headline), per task and on the task average (bench.analysis.pareto).
"""
from __future__ import annotations

import math

import pandas as pd

from bench.analysis.aggregate import build
from bench.analysis.pareto import pareto_frontier
from bench.records.results import fmt_count, text_table

from .cells import UnusableInput, glob_match


def _memory_col(frame: pd.DataFrame, suffix: str) -> str:
    cuda = f"memory.cuda_peak_allocated_bytes{suffix}"
    if cuda in frame and frame[cuda].notna().all():
        return cuda
    return f"memory.peak_rss_bytes{suffix}"


def _frontier(frame: pd.DataFrame, x: str, y: str) -> set:
    if x not in frame or y not in frame:
        return set()
    pts = list(zip(frame[x].astype(float), frame[y].astype(float)))
    return {frame.index[i] for i in pareto_frontier(pts)}


def _fmt(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def compare(records: list[dict], method: str) -> tuple[str, dict]:
    """Text report and {label: {(model, task or "avg"): {"pareto_params", "pareto_memory", "rank", "of",
    "headline"}}} for the method's labels (method_label glob-matching `method`, or method name == `method`)."""
    agg = build(records)
    cells = agg.cells[agg.cells["n_ok"] > 0].copy()
    targets = {}
    for r in records:
        target = str(((r.get("config") or {}).get("method") or {}).get("_target_") or "")
        targets[str(r.get("method_label") or r.get("method"))] = target
    new = sorted({lbl for lbl, m in zip(cells["method_label"], cells["method"])
                  if glob_match(method, lbl) or m == method})
    if not new:
        present = ", ".join(sorted(agg.cells["method_label"].unique()))
        raise UnusableInput(f"method {method!r} has no ok record in these results; methods present: {present}")
    found: dict = {lbl: {} for lbl in new}
    lines = [f"Method {method!r} ({', '.join(new)}) against the other methods of the sweep.",
             ("pareto: on the frontier of (trainable params, headline) / (peak memory, headline); "
              "yes/no. '<-' marks the new method."), ""]
    for model in sorted(cells["model"].unique()):
        mc = cells[cells["model"] == model]
        model_tasks = agg.catalog.sort(mc["task"].unique())
        for task in model_tasks + ["avg"]:
            if task == "avg":
                sub = agg.summary[(agg.summary["model"] == model) & (agg.summary["status"] == "ok")].copy()
                if sub.empty or len(model_tasks) < 2:
                    continue
                title, y, x_p = f"[{model}] {sub['task'].iloc[0]}", "headline_mean", "params.trainable_mean"
                sub["headline_std"] = float("nan")
            else:
                sub = mc[mc["task"] == task].copy()
                hm = sub["headline_metric"].iloc[0]
                title, y, x_p = f"[{model}] {task} ({hm})", "headline_mean", "params.trainable_mean"
            rows = _frontier_rows(sub, y, x_p, new, targets, found, (model, task))
            header = ("", "method", "kind", "headline", "+-std", "trainable", "% of total", "peak mem", "train/s",
                      "pareto params", "pareto memory")
            lines += [title, text_table(header, rows), ""]
    lines += _summary_lines(found)
    return "\n".join(lines), found


def _frontier_rows(sub, y: str, x_p: str, new: list, targets: dict, found: dict, key: tuple) -> list:
    """The table rows of one (model, task), best first, with each method's place on the params and
    memory frontiers; the new method's places are recorded in `found`."""
    x_m = _memory_col(sub, "_mean")
    sub = sub.sort_values(y, ascending=False).reset_index(drop=True)
    on_p, on_m = _frontier(sub, x_p, y), _frontier(sub, x_m, y)
    rows = []
    for i, r in sub.iterrows():
        lbl = r["method_label"]
        builtin = targets.get(lbl, "").startswith("bench.methods.")
        rows.append(("<-" if lbl in new else "", lbl, "built-in" if builtin else "external",
                     _fmt(r[y], ".4f"), _fmt(r.get("headline_std"), ".4f"), fmt_count(r.get(x_p), "-"),
                     _fmt(r.get("params.trainable_pct_mean"), ".3f"),
                     _fmt(r.get(x_m, float("nan")) / 2**20, ".0f") + "MiB",
                     _fmt(r.get("throughput.train_samples_per_s_mean"), ".1f"),
                     "yes" if i in on_p else "no", "yes" if i in on_m else "no"))
        if lbl in new:
            found[lbl][key] = {"pareto_params": i in on_p, "pareto_memory": i in on_m,
                               "rank": i + 1, "of": len(sub), "headline": float(r[y])}
    return rows


def _summary_lines(found: dict) -> list[str]:
    """One line per (new method label, model): on how many tasks' frontiers it sits."""
    lines = []
    for lbl, per in found.items():
        for model in sorted({m for m, _ in per}):
            tasks = [t for m, t in per if m == model and t != "avg"]
            fp = [t for t in tasks if per[(model, t)]["pareto_params"]]
            fm = [t for t in tasks if per[(model, t)]["pareto_memory"]]
            avg = per.get((model, "avg"))
            avg_txt = (f"; task average: rank {avg['rank']} of {avg['of']}, "
                       f"{'on' if avg['pareto_params'] else 'off'} the params frontier") if avg else ""
            lines.append(f"{lbl} on {model}: on the params/quality frontier for {len(fp)} of {len(tasks)} task(s)"
                         f"{' (' + ', '.join(fp) + ')' if fp else ''}, on the memory/quality frontier for "
                         f"{len(fm)} of {len(tasks)}{avg_txt}")
    return lines
