"""The report's inference part: a table of each method's inference overhead against the
untouched backbone (batch 1 and batched, merged and not) and a plot of accuracy against that
overhead, beside the accuracy-vs-trainable-parameters plot.

It reads only the records' `inference` sections (docs/inference.md; records without one, e.g.
schema 1 or `inference.enabled=false`, are left out and counted), so it is independent of how the
rest of the report aggregates. Ratios are per record (ratio of interleaved medians); a row's value is
their mean over the row's records (tasks x seeds).
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [("method_label", "method"), ("records", "records"), ("headline_x100", "task-avg headline ×100"),
           ("added_input_tokens", "+input tokens"), ("added_kv_tokens", "+key/value positions"),
           ("batch1", "batch 1 ×"), ("batched", "batched ×"), ("merge", "merge"),
           ("merged_batch1", "merged batch 1 ×"), ("merged_batched", "merged batched ×"),
           ("merge_max_diff", "merged vs unmerged max abs Δlogit"), ("ratio_spread", "batch-1 per-round ratio IQR"),
           ("aa_batch1", "A/A batch 1 × (floor)")]


def _mean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def inference_frame(records: list[dict]) -> tuple[pd.DataFrame, int]:
    """One row per (model, method_label); the second value counts ok records without measurements."""
    rows, without = [], 0
    for r in records:
        if r.get("status") != "ok":
            continue
        inf = r.get("inference")
        if not inf or not (inf.get("overhead") or {}).get("method"):
            without += 1
            continue
        o, merged = inf["overhead"]["method"], inf["overhead"].get("merged") or {}
        aa = inf["overhead"].get("aa") or {}  # absent in records measured before the A/A control
        spread = []
        for cell in inf.get("latency_batch1", {}).values():
            q = cell.get("method", {}).get("ratio_per_round_quartiles")
            if q:
                spread.append(q[2] - q[0])
        rows.append({
            "model": r["model"], "method_label": r["method_label"], "task": r["task"],
            "headline": (r.get("metrics") or {}).get(r.get("headline_metric")),
            "added_input_tokens": inf["added_length"]["input_tokens"],
            "added_kv_tokens": inf["added_length"]["key_value_tokens"],
            "batch1": o.get("batch1_mean"), "batched": o.get("batched"),
            "merge": inf["merge"]["status"],
            "merged_batch1": merged.get("batch1_mean"), "merged_batched": merged.get("batched"),
            "merge_max_diff": (inf["merge"].get("check") or {}).get("max_abs_logit_diff"),
            "ratio_spread": _mean(spread),
            "aa_batch1": aa.get("batch1_mean"),
            "device": inf.get("device"),
        })
    if not rows:
        return pd.DataFrame(columns=["model"] + [c for c, _ in COLUMNS]), without
    df = pd.DataFrame(rows)
    out = []
    for (model, label), g in df.groupby(["model", "method_label"], sort=False):
        task_avg = g.groupby("task")["headline"].mean()
        out.append({
            "model": model, "method_label": label, "records": len(g),
            "headline_x100": 100 * _mean(task_avg.tolist()),
            "added_input_tokens": int(g["added_input_tokens"].max()),
            "added_kv_tokens": int(g["added_kv_tokens"].max()),
            "batch1": _mean(g["batch1"]), "batched": _mean(g["batched"]),
            "merge": "/".join(sorted(set(g["merge"]))),
            "merged_batch1": _mean(g["merged_batch1"]), "merged_batched": _mean(g["merged_batched"]),
            "merge_max_diff": float(g["merge_max_diff"].max()) if g["merge_max_diff"].notna().any() else float("nan"),
            "ratio_spread": _mean(g["ratio_spread"]),
            "aa_batch1": _mean(g["aa_batch1"]),
            "devices": ", ".join(sorted(set(map(str, g["device"])))),
        })
    return pd.DataFrame(out).sort_values(["model", "batch1"]).reset_index(drop=True), without


def _fmt(col: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if col in ("batch1", "batched", "merged_batch1", "merged_batched", "ratio_spread", "aa_batch1"):
        return f"{v:.3f}"
    if col == "headline_x100":
        return f"{v:.1f}"
    if col == "merge_max_diff":
        return f"{v:.1e}"
    return str(v)


def _plot(frame: pd.DataFrame, model: str, out: Path, stem: str):
    from .plots import Plot, _save, plt

    sub = frame[frame["model"] == model]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    cmap = plt.get_cmap("tab10" if len(sub) <= 10 else "tab20")
    for i, r in enumerate(sub.itertuples(index=False)):
        if not (math.isfinite(r.batch1) and math.isfinite(r.headline_x100)):
            continue
        c = cmap(i % cmap.N)
        ax.scatter([r.batch1], [r.headline_x100], color=c, s=40, zorder=3)
        ax.annotate(r.method_label, (r.batch1, r.headline_x100), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if math.isfinite(r.merged_batch1) and r.merge == "merged":
            ax.scatter([r.merged_batch1], [r.headline_x100], facecolors="none", edgecolors=[c], s=60, zorder=3)
            ax.annotate("", (r.merged_batch1, r.headline_x100), (r.batch1, r.headline_x100),
                        arrowprops={"arrowstyle": "->", "color": c, "lw": 0.8})
    ax.axvline(1.0, color="0.4", ls=":", lw=1)
    ax.set_xlabel("inference latency at batch 1 / untouched backbone\n"
                  "(ratio of interleaved medians, mean over lengths)")
    ax.set_ylabel("task-average headline metric (×100)")
    ax.set_title(f"{model}: accuracy vs inference overhead\n(hollow = after merging; dotted = no overhead)",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    png, svg = _save(fig, out, stem)
    return Plot(model, "inference", f"{model}: accuracy vs inference overhead", png, svg,
                "methods that cannot merge have no hollow point")


def write_inference(records: list[dict], out: Path, plots: list) -> tuple[dict[str, Path], str]:
    """Write `inference.md`/`inference.csv`, add one plot per model to `plots` (right after that
    model's accuracy-vs-trainable-parameters plot), and return the table paths and an HTML section."""
    frame, without = inference_frame(records)
    out = Path(out)
    if frame.empty:
        return {}, ('<h2 id="inference">Inference cost</h2><p>No record has an inference section '
                    f'({without} ok record(s) without one; see docs/inference.md).</p>')
    csv = out / "inference.csv"
    frame.to_csv(csv, index=False)
    md_lines = []
    for model in frame["model"].unique():
        sub = frame[frame["model"] == model]
        md_lines += [f"### {model}", "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
                     "|" + "---|" * len(COLUMNS)]
        md_lines += ["| " + " | ".join(_fmt(c, getattr(r, c)) for c, _ in COLUMNS) + " |"
                     for r in sub.itertuples(index=False)]
        md_lines.append("")
    md = out / "inference.md"
    md.write_text("\n".join(md_lines))
    from .plots import safe_name

    for mi, model in enumerate(frame["model"].unique()):
        p = _plot(frame, model, out, f"{mi:02d}_{safe_name(model)}__inference")
        at = next((i + 1 for i, q in enumerate(plots) if q.model == model and q.kind == "pareto"), len(plots))
        plots.insert(at, p)
    parts = ['<h2 id="inference">Inference cost</h2>',
             ("<p>Latency of the finetuned model divided by that of the untouched backbone + a head of the same "
             "shape, timed interleaved in the same process after training (ratio of medians; 1.000 = no overhead). "
             "Batch 1: mean over the measured sequence lengths; batched: the throughput batch. Merged: after "
             "peft's merge_and_unload (full/bitfit/head_only are merged by nature; adapters and prompt/prefix "
             f"tuning cannot merge). Synthetic inputs of exact lengths. See docs/inference.md. "
             f"{without} ok record(s) without measurements are left out. Downloads: "
             '<a href="inference.csv">inference.csv</a>, <a href="inference.md">inference.md</a>.</p>')]
    for model in frame["model"].unique():
        sub = frame[frame["model"] == model]
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c, getattr(r, c)))}</td>" for c, _ in COLUMNS) + "</tr>"
                       for r in sub.itertuples(index=False))
        devices = html.escape(", ".join(sorted(set(sub["devices"]))))
        parts.append(f'<h3>{html.escape(model)}</h3><div class="scroll"><table><caption>{html.escape(model)}: '
                     f"inference overhead vs the untouched backbone (device: {devices})"
                     f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    return {"inference_md": md, "inference_csv": csv}, "\n".join(parts)
