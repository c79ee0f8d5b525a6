"""The report's retention part (docs/retention.md): what each method cost the backbone, per task.

Reads the aggregation's retention columns (bench.analysis.frame.RETENTION_COLUMNS: forgetting,
drift = 1 - CKA, intruder dimensions), so a record without a retention section (schema <= 3,
`retention.enabled=false`) is simply absent here. Per (model, task, method): mean and 95 % t interval
over seeds of each quantity beside the headline metric; the metric-vs-forgetting frontier (no other
method has both a higher metric and less forgetting); and pairwise verdicts between methods on each
quantity over seeds (`compare_seeds`, Holm within a (model, task, quantity) family).
"""

from __future__ import annotations

import html
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.analysis import stats
from bench.analysis.aggregate import Aggregation
from bench.analysis.pareto import pareto_frontier

#: quantity -> (short name, what lower means); lower is better for all three
QUANTITIES = {
    "retention.forgetting": ("forgetting", "forgets less"),
    "retention.drift": ("drift", "drifts less"),
    "retention.intruders": ("intruders", "fewer intruder dimensions"),
}
VERDICT_COLUMNS = [
    "model",
    "task",
    "quantity",
    "method_a",
    "method_b",
    "mean_a",
    "mean_b",
    "n_a",
    "n_b",
    "delta",
    "ci_low",
    "ci_high",
    "p",
    "p_adj",
    "verdict",
    "test",
]


def compare_seeds(a, b, confidence: float = 0.95) -> dict:
    """Difference of means a - b over seeds with Welch's t interval and p (unequal variances): the one
    place the retention verdicts test, so a seed-aware test can replace it. Identical constant
    samples give delta 0 and p 1; fewer than 2 seeds on a side give NaN."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    nan = {"delta": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "test": ""}
    if len(a) < 2 or len(b) < 2:
        return nan
    delta = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    test = f"Welch t over seeds (n={len(a)}, {len(b)})"
    if se == 0:
        return {
            "delta": delta,
            "ci_low": delta,
            "ci_high": delta,
            "p": 1.0 if delta == 0 else 0.0,
            "test": test,
        }
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    p = float(2 * sps.t.sf(abs(delta) / se, df))
    return {"delta": delta, "ci_low": delta - half, "ci_high": delta + half, "p": p, "test": test}


def retention_table(agg: Aggregation) -> pd.DataFrame:
    """One row per (model, task, method_label) with a retention measurement: headline and each
    quantity's mean, 95 % t interval over seeds and n; `frontier` marks the metric-vs-forgetting frontier."""
    cells = agg.cells
    if cells.empty or "retention.forgetting_n" not in cells and "retention.cka_n" not in cells:
        return pd.DataFrame()
    have = cells[
        [
            any(cells.get(f"{q}_n", pd.Series(0, index=cells.index)).loc[i] > 0 for q in QUANTITIES)
            for i in cells.index
        ]
    ]
    cols = [
        "model",
        "task",
        "method_label",
        "n_ok",
        "headline_metric",
        "headline_mean",
        "headline_ci_low",
        "headline_ci_high",
    ]
    for q in (*QUANTITIES, "retention.cka", "retention.skill_before", "retention.intruders_per_matrix"):
        cols += [f"{q}_{s}" for s in ("mean", "ci_low", "ci_high", "n")]
    out = have.reindex(columns=cols).reset_index(drop=True)
    out["frontier"] = False
    for _, sub in out.groupby(["model", "task"]):
        pts = list(zip(sub["retention.forgetting_mean"], sub["headline_mean"]))
        for j in pareto_frontier(pts, minimize_x=True, maximize_y=True):
            out.loc[sub.index[j], "frontier"] = True
    return out


def retention_verdicts(agg: Aggregation) -> pd.DataFrame:
    """Every pair of methods per (model, task, quantity): compare_seeds on the per-seed values, Holm
    within the family; verdict names the method that is lower (better) when significant, else tie."""
    kept = agg.kept[agg.kept["status"] == "ok"] if not agg.kept.empty else agg.kept
    rows = []
    for q in QUANTITIES:
        if q not in kept:
            continue
        for (model, task), sub in kept.groupby(["model", "task"]):
            per = {m: g[q].dropna().to_numpy() for m, g in sub.groupby("method_label")}
            per = {m: v for m, v in per.items() if len(v)}
            fam = []
            for ma, mb in combinations(sorted(per), 2):
                r = compare_seeds(per[ma], per[mb])
                fam.append(
                    {
                        "model": model,
                        "task": task,
                        "quantity": q,
                        "method_a": ma,
                        "method_b": mb,
                        "mean_a": float(per[ma].mean()),
                        "mean_b": float(per[mb].mean()),
                        "n_a": len(per[ma]),
                        "n_b": len(per[mb]),
                        **r,
                    }
                )
            for r, pa in zip(fam, stats.holm([r["p"] for r in fam])):
                r["p_adj"] = float(pa)
                if stats.significant(pa, r["ci_low"], r["ci_high"]):
                    winner = r["method_a"] if r["delta"] < 0 else r["method_b"]
                    r["verdict"] = f"{winner} {QUANTITIES[q][1]}"
                else:
                    r["verdict"] = "tie" if np.isfinite(r["p"]) else "not tested (< 2 seeds)"
            rows += fam
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _iv(r, q: str, scale: float = 1.0, digits: int = 2) -> str:
    m, lo, hi = (r.get(f"{q}_{s}") for s in ("mean", "ci_low", "ci_high"))
    if m is None or not np.isfinite(m):
        return "-"
    text = f"{scale * m:.{digits}f}"
    if lo is not None and np.isfinite(lo):
        text += f" [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return text


TABLE_HEAD = [
    "task",
    "method",
    "seeds",
    "headline ×100",
    "forgetting ×100",
    "drift (1-CKA) ×100",
    "intruders (total)",
    "intruders / matrix",
    "frontier",
]


def _row_cells(r) -> list[str]:
    return [
        str(r["task"]),
        str(r["method_label"]),
        str(int(r["n_ok"])),
        _iv(r, "headline", 100, 1),
        _iv(r, "retention.forgetting", 100),
        _iv(r, "retention.drift", 100),
        _iv(r, "retention.intruders", 1, 1),
        _iv(r, "retention.intruders_per_matrix", 1, 2),
        "yes" if r["frontier"] else "",
    ]


def markdown(table: pd.DataFrame, verdicts: pd.DataFrame) -> str:
    lines = []
    for model, sub in table.groupby("model", sort=True):
        lines += [f"### {model}", "", "| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD)]
        lines += ["| " + " | ".join(_row_cells(r)) + " |" for _, r in sub.iterrows()]
        lines.append("")
    if not verdicts.empty:
        lines += [
            "| task | quantity | A | B | A - B [95% CI] | p (Holm) | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in verdicts.iterrows():
            scale = 1 if r["quantity"] == "retention.intruders" else 100
            d = (
                f"{scale * r['delta']:+.2f} [{scale * r['ci_low']:+.2f}, {scale * r['ci_high']:+.2f}]"
                if np.isfinite(r["delta"])
                else "-"
            )
            lines.append(
                f"| {r['task']} | {QUANTITIES[r['quantity']][0]} | {r['method_a']} | {r['method_b']} | {d} | "
                f"{r['p_adj']:.3g} | {r['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def _plot(table: pd.DataFrame, model: str, out: Path, stem: str):
    import matplotlib.pyplot as plt

    from .plots import Plot, _save

    sub = table[table["model"] == model]
    tasks = list(dict.fromkeys(sub["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(6.0, 4.8 * len(tasks)), 4.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    labels = sorted(sub["method_label"].unique())
    for ax, task in zip(axes[0], tasks):
        t = sub[sub["task"] == task]
        for _, r in t.iterrows():
            x, y = 100 * r["retention.forgetting_mean"], 100 * r["headline_mean"]
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            xerr = [
                [x - 100 * r["retention.forgetting_ci_low"]],
                [100 * r["retention.forgetting_ci_high"] - x],
            ]
            yerr = [[y - 100 * r["headline_ci_low"]], [100 * r["headline_ci_high"] - y]]
            c = cmap(labels.index(r["method_label"]) % 10)
            ax.errorbar(
                [x],
                [y],
                xerr=None if not np.isfinite(xerr[0][0]) else xerr,
                yerr=None if not np.isfinite(yerr[0][0]) else yerr,
                fmt="o",
                color=c,
                capsize=3,
            )
            ax.annotate(r["method_label"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = t[t["frontier"]].sort_values("retention.forgetting_mean")
        ax.plot(
            100 * front["retention.forgetting_mean"], 100 * front["headline_mean"], ls="--", color="0.4", lw=1
        )
        ax.axvline(0.0, color="0.6", ls=":", lw=1)
        metric = str(t["headline_metric"].iloc[0])
        ax.set_xlabel("forgetting ×100 (skill before - after; right = forgot more)")
        ax.set_ylabel(f"{task} {metric} ×100")
        ax.set_title(f"{model} / {task}", fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"{model}: task metric vs forgetting\n(95% t intervals over seeds; dashed: frontier)", fontsize=10
    )
    fig.tight_layout()
    png, svg = _save(fig, out, stem)
    return Plot(
        model,
        "retention",
        f"{model}: task metric vs forgetting",
        png,
        svg,
        "forgetting: zero-shot similarity (encoders) or LM loss (decoders) lost on data no cell saw",
    )


def write_retention(agg: Aggregation, out: Path, plots: list) -> tuple[dict[str, Path], str]:
    """Write retention.md / retention.csv / retention_verdicts.csv, add a plot per model, return the
    table paths and an HTML section."""
    table = retention_table(agg)
    if table.empty:
        return {}, ""  # no record has a retention section: no section
    verdicts = retention_verdicts(agg)
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    paths = {
        "retention_csv": out / "retention.csv",
        "retention_verdicts_csv": out / "retention_verdicts.csv",
        "retention_md": out / "retention.md",
    }
    table.to_csv(paths["retention_csv"], index=False)
    verdicts.to_csv(paths["retention_verdicts_csv"], index=False)
    md = markdown(table, verdicts)
    paths["retention_md"].write_text(md)
    from .plots import safe_name

    for mi, model in enumerate(sorted(table["model"].unique())):
        plots.append(_plot(table, model, out, f"{mi:02d}_{safe_name(model)}__retention"))
    parts = [
        '<h2 id="retention">Retention: forgetting, drift, intruder dimensions</h2>',
        (
            "<p>What each cell cost the backbone, on data no cell trained or selected on "
            "(docs/retention.md): forgetting = zero-shot similarity skill (Spearman) lost, ×100 "
            "(decoders: LM loss gained); drift = 1 - linear CKA of pooled features, ×100; intruder "
            "dimensions (Shuttleworth et al. 2024) summed over the adapted matrices. Mean [95% t "
            "interval over seeds]; verdicts: Welch t over seeds, Holm per "
            'task and quantity. Downloads: <a href="retention.csv">retention.csv</a>, '
            '<a href="retention_verdicts.csv">retention_verdicts.csv</a>, '
            '<a href="retention.md">retention.md</a>.</p>'
        ),
    ]
    for model, sub in table.groupby("model", sort=True):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_HEAD)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _row_cells(r)) + "</tr>"
            for _, r in sub.iterrows()
        )
        parts.append(
            f'<h3>{html.escape(model)}</h3><div class="scroll"><table><caption>{html.escape(model)}: '
            f"retention</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
    if not verdicts.empty:
        parts.append(f"<pre>{html.escape(md[md.index('| task | quantity') :])}</pre>")
    return paths, "\n".join(parts)
