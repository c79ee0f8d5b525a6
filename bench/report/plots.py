"""Report figures (matplotlib, Agg backend), one set per model, each written as PNG and SVG.

One figure per (model, kind) rather than one figure for all models: models are never compared
on one axis by accident, and a single figure can be dropped into a paper as is. Every axis names
its quantity and unit; every title names the model. Values come from aggregate.py only; metrics
are drawn x100 like the tables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from bench.analysis.aggregate import Aggregation
from bench.analysis.pareto import pareto_frontier

from .tables import METRIC_SHORT, MIB, method_order

# Fixed metadata: SVGs and PNGs identical across runs (no creation date), so reports diff cleanly.
_SVG_META = {"Date": None}
_PNG_META = {"Software": None}


@dataclass
class Plot:
    model: str
    kind: str
    title: str
    png: str  # path relative to the report folder
    svg: str
    note: str = ""  # what is not drawn and why


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lbl: cmap(i % cmap.N) for i, lbl in enumerate(labels)}


def _save(fig, out: Path, stem: str) -> tuple[str, str]:
    png, svg = f"plots/{stem}.png", f"plots/{stem}.svg"
    fig.savefig(out / png, dpi=100, metadata=_PNG_META)
    fig.savefig(out / svg, metadata=_SVG_META)
    plt.close(fig)
    return png, svg


def _text_size(fig, text: str, size: float) -> tuple[float, float]:
    """(width, height) in inches of one line of text: font metrics only, no drawing."""
    r = fig.canvas.get_renderer()
    w, h, _ = r.get_text_width_height_descent(text or " ", FontProperties(size=size), ismath=False)
    return w / fig.dpi, h / fig.dpi


def _fit(fig, ax, *, left_texts: list[str], bottom_lines: int = 1, top_extra: float = 0.0,
         right: float = 0.25) -> None:
    """Margins from measured label sizes. Replaces constrained layout, which measured every
    artist on each save and doubled the cost of a figure (see benchmarks/bench_report.py)."""
    tick = plt.rcParams["font.size"]
    width, height = fig.get_size_inches()
    line = _text_size(fig, "Mg", tick)[1] * 1.45
    def lines(text: str) -> int:
        return text.count("\n") + 1 if text else 0

    left = max((_text_size(fig, t, tick)[0] for t in left_texts), default=0.3) + line * lines(ax.get_ylabel())
    bottom = line * bottom_lines + line * lines(ax.get_xlabel()) + 0.2
    top = line * lines(ax.get_title()) + 0.2 + top_extra
    fig.subplots_adjust(left=min((left + 0.25) / width, 0.6), right=1 - right / width,
                        bottom=bottom / height, top=1 - top / height)


def _omitted(labels) -> str:
    labels = list(labels)
    return f"not drawn (no value): {', '.join(labels)}" if labels else ""


def _tick_count(v: float) -> str:
    """Axis form of a count: 300K, 1M, 10M (no trailing zeros, unlike the tables)."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _log_ticks(ax, fmt) -> None:
    """Plain tick labels on a log x axis (100K, 1M): readable, and no mathtext (slow to render).
    Minor ticks are labelled only when the axis spans less than a decade (no major tick may show)."""
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))

    def minor(v, _):
        lo, hi = ax.get_xlim()
        return fmt(v) if lo > 0 and hi / lo < 10 else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


MAX_LABELLED = 12  # more points than this: label only the Pareto-optimal ones (others: see tables)


def plot_tradeoff(summ: pd.DataFrame, model: str, xcol: str, xlabel: str, title: str,
                  colors: dict, frontier: bool) -> tuple[plt.Figure, str]:
    """Task-average headline (y) against a cost (x, log axis); Pareto frontier drawn if asked."""
    ok = summ[summ["headline_mean"].notna() & (summ.get(xcol, np.nan) > 0)]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    avg = summ["task"].iloc[0]
    xs, ys = ok[xcol].to_numpy(float), 100 * ok["headline_mean"].to_numpy(float)
    labels = list(ok["method_label"])
    cols = [colors[lbl] for lbl in labels]
    # One collection per artist type (not one call per method) and no automatic legend placement:
    # both scale badly with dozens of methods; points are labelled directly instead.
    ax.scatter(xs, ys, c=cols, s=40, zorder=3)
    std = 100 * ok["headline_std"].to_numpy(float)
    has = (ok["headline_n"].to_numpy() > 1) & np.isfinite(std)
    if has.any():
        ax.vlines(xs[has], ys[has] - std[has], ys[has] + std[has], colors=[c for c, h in zip(cols, has) if h],
                  lw=1.2, zorder=2, label="± std over seeds")
    idx = pareto_frontier(list(zip(xs, ys)))
    if frontier and idx:
        ax.step(xs[idx], ys[idx], where="post", color="0.3", ls="--", lw=1.2, zorder=4,
                label="Pareto frontier (max metric, min cost)")
    shown = range(len(labels)) if len(labels) <= MAX_LABELLED else idx
    for i in shown:
        ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    _log_ticks(ax, _tick_count if xcol.startswith("params.") else (lambda v: f"{v:g}"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("task-average headline metric (×100)")
    ax.set_title(f"{model}: {title}\n{avg}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    spill = _text_size(fig, labels[int(np.argmax(xs))], 8)[0] + 0.15 if len(ok) else 0.25
    _fit(fig, ax, left_texts=["-100.0"], right=min(max(spill, 0.25), 1.6))
    notes = [_omitted(summ.loc[~summ.index.isin(ok.index), "method_label"])]
    if len(labels) > MAX_LABELLED:
        notes.append(f"labels: Pareto-optimal methods only ({len(idx)} of {len(labels)})")
    return fig, "; ".join(n for n in notes if n)


def plot_bars(summ: pd.DataFrame, model: str, series: list[tuple[str, str, float]], xlabel: str,
              title: str) -> tuple[plt.Figure, str]:
    """Horizontal bars per method (mean over tasks), whiskers from min to max over tasks."""
    labels = list(summ["method_label"])
    two = len(series) > 1
    fig, ax = plt.subplots(figsize=(6.4, 1.1 + 0.22 * len(labels) * len(series) + 0.3 * two))
    height = 0.8 / len(series)
    y = np.arange(len(labels))
    drawn = set()
    for k, (q, name, scale) in enumerate(series):
        mean = summ.get(f"{q}_mean", pd.Series(np.nan, index=summ.index)).to_numpy(float) / scale
        lo = summ.get(f"{q}_min", pd.Series(np.nan, index=summ.index)).to_numpy(float) / scale
        hi = summ.get(f"{q}_max", pd.Series(np.nan, index=summ.index)).to_numpy(float) / scale
        good = np.isfinite(mean)
        drawn |= {lbl for lbl, g in zip(labels, good) if g}
        err = np.vstack([np.where(good, mean - lo, 0), np.where(good, hi - mean, 0)])
        ax.barh(y[good] + k * height - 0.4 + height / 2, mean[good], height=height, label=name,
                xerr=err[:, good], capsize=2, color=f"C{k}")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first method on top, no empty band
    ax.set_xlabel(xlabel)
    ax.set_title(f"{model}: {title}", fontsize=10, pad=22 if two else 6)
    ax.grid(True, axis="x", alpha=0.3)
    if two:
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(series), frameon=False)
    _fit(fig, ax, left_texts=labels, top_extra=0.3 if two else 0.0)
    return fig, _omitted(lbl for lbl in labels if lbl not in drawn)


def plot_per_task(cells: pd.DataFrame, model: str, order: list[str], tasks: list[str],
                  colors: dict) -> tuple[plt.Figure, str]:
    """Grouped bars: headline metric per task and method, error bars = std when n > 1."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ncol = 1 + (len(order) - 1) // 18
    legend_w = ncol * (max(_text_size(fig, lbl, 7)[0] for lbl in order) + 0.45) + 0.1
    fig.set_size_inches(min(max(4.8, 0.1 * len(tasks) * len(order)), 14.0) + legend_w + 1.0, 4.6)
    width = 0.85 / max(len(order), 1)
    idx = cells.set_index(["method_label", "task"])
    xs, ys, es, cs, gaps, notes = [], [], [], [], [], []
    for j, label in enumerate(order):
        for i, task in enumerate(tasks):
            x = i - 0.425 + width * (j + 0.5)
            c = idx.loc[(label, task)] if (label, task) in idx.index else None
            if c is None or c["n_ok"] == 0 or not np.isfinite(c["headline_mean"]):
                notes.append(f"{label}/{task} ({'missing' if c is None else c['status']})")
                gaps.append(x)
                continue
            xs.append(x)
            ys.append(100 * c["headline_mean"])
            es.append(100 * c["headline_std"] if c["headline_n"] > 1 and np.isfinite(c["headline_std"]) else 0)
            cs.append(colors[label])
    # One bar container and one error-bar artist for all methods: per-method calls scale badly.
    ax.bar(xs, ys, width=width, color=cs)
    ax.errorbar(xs, ys, yerr=es, fmt="none", ecolor="k", elinewidth=1, capsize=2)
    if gaps:
        ax.scatter(gaps, np.zeros(len(gaps)), marker="x", color="red", s=20, zorder=3)
    hm = cells.drop_duplicates("task").set_index("task")["headline_metric"]
    ax.set_xticks(range(len(tasks)), [f"{t}\n({METRIC_SHORT.get(hm.get(t), hm.get(t))})" for t in tasks])
    ax.set_xlim(-0.5, len(tasks) - 0.5)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel("dev headline metric (×100)\nmean ± std over seeds")
    ax.set_title(f"{model}: headline metric per task (× = failed/missing)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(color=colors[lbl], label=lbl) for lbl in order]
    ax.legend(handles=handles, fontsize=7, ncols=ncol, loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False)
    _fit(fig, ax, left_texts=["-100", "-100"], bottom_lines=2, right=legend_w)
    return fig, ("failed or missing: " + ", ".join(notes)) if notes else ""


def plot_tuning_curves(budget: pd.DataFrame, model: str, colors: dict, order) -> tuple[plt.Figure, str]:
    """Expected best selection score vs number of learning-rate trials, one panel per task
    (Dodge et al. 2019 with the unbiased estimator of Tang et al. 2020; verdicts.tuning_curves); tasks
    in `order` (a TaskCatalog's sort)."""
    tasks = order(budget["task"].unique())
    ncol = min(len(tasks), 3)
    nrow = -(-len(tasks) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 1.8, 3.0 * nrow + 0.4), squeeze=False)
    for ax, task in zip(axes.ravel(), tasks):
        sub = budget[budget["task"] == task]
        for (label, study), g in sub.groupby(["method_label", "study"], sort=True):
            k, m, sd = g["k"].to_numpy(), 100 * g["expected_max"].to_numpy(), 100 * g["std"].to_numpy()
            c = colors.get(label, "0.4")
            ax.plot(k, m, marker="o", ms=3, color=c, label=label if not study else f"{label} ({study})")
            ax.fill_between(k, m - sd, m + sd, color=c, alpha=0.15, lw=0)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("learning-rate trials (n)")
        ax.set_ylabel("expected best\nselection score (×100)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(tasks):]:
        ax.set_visible(False)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes.ravel()[1:len(tasks)]:
        seen.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(seen.values(), seen.keys(), fontsize=7, loc="center right", frameon=False)
    fig.suptitle(f"{model}: expected best selection score vs tuning budget (band: ± std)", fontsize=10)
    fig.subplots_adjust(left=0.95 / fig.get_size_inches()[0], right=1 - 1.8 / fig.get_size_inches()[0], top=0.86,
                        bottom=0.14, wspace=0.35, hspace=0.55)
    return fig, ""


def write_plots(agg: Aggregation, out: Path) -> list[Plot]:
    """All figures for all models into `out/plots/` (old PNG/SVG files there are removed first)."""
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    for old in list(pdir.glob("*.png")) + list(pdir.glob("*.svg")):
        old.unlink()
    plots: list[Plot] = []
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "bench-report"}):
        for mi, model in enumerate(agg.models):
            plots += _model_plots(agg, model, mi, out)
    return plots


def _model_plots(agg: Aggregation, model: str, mi: int, out: Path) -> list[Plot]:
    """The five figures of one model."""
    plots: list[Plot] = []
    order = method_order(agg, model)
    colors = _colors(order)
    summ = agg.summary[agg.summary["model"] == model].set_index("method_label").loc[order].reset_index()
    cells = agg.cells[agg.cells["model"] == model]
    stem = f"{mi:02d}_{safe_name(model)}"
    avg = summ["task"].iloc[0]

    def add(kind, title, made):
        fig, note = made
        png, svg = _save(fig, out, f"{stem}__{kind}")
        plots.append(Plot(model, kind, f"{model}: {title}", png, svg, note))

    add("pareto", f"{avg} vs trainable parameters",
        plot_tradeoff(summ, model, "params.trainable_mean", "trainable parameters (count, log scale)",
                      "task average vs trainable parameters", colors, frontier=True))
    add("per_task", "headline metric per task",
        plot_per_task(cells, model, order, agg.grid_tasks(model), colors))
    mem = [("memory.peak_rss_bytes", "peak RSS", MIB)]
    if summ.get("memory.cuda_peak_allocated_bytes_mean", pd.Series(dtype=float)).notna().any():
        mem.append(("memory.cuda_peak_allocated_bytes", "CUDA peak allocated", MIB))
    add("memory", "peak memory per method",
        plot_bars(summ, model, mem, "peak memory (MiB): mean over tasks, whiskers min–max",
                  "peak memory per method"))
    add("throughput", "train throughput per method",
        plot_bars(summ, model, [("throughput.train_samples_per_s", "train", 1.0)],
                  "train throughput (samples/s): mean over tasks, whiskers min–max",
                  "train throughput per method"))
    add("time", f"{avg} vs training time",
        plot_tradeoff(summ, model, "time.train_s_sum", "training time summed over tasks (s, log scale)",
                      "task average vs training time", colors, frontier=False))
    curves = agg.tuning_curves
    budget = curves[curves["model"] == model] if not curves.empty else curves
    if not budget.empty:  # only when the results hold learning-rate trial records
        extra = sorted(set(budget["method_label"]) - set(order))  # methods seen only in trials
        colors = _colors(order + extra)
        add("budget_curves", "expected best selection score vs number of trials",
            plot_tuning_curves(budget, model, colors, agg.catalog.sort))
    return plots
