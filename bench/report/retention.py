"""The report's retention part (docs/retention.md): what each method cost the backbone, per task.

Reads the aggregation's retention columns (bench.analysis.frame.RETENTION_COLUMNS: forgetting,
drift = 1 - CKA, intruder dimensions), so a record without a retention section (schema <= 3,
`retention.enabled=false`) is simply absent here. Per (model, task, method): mean and 95 % t interval
over seeds of each quantity beside the headline metric; the metric-vs-forgetting frontier (no other
method has both a higher metric and less forgetting); and seed-aware verdicts between methods on each
quantity with the task metric's four outcomes (better / worse / equivalent / undecided, Holm within a
(model, task, quantity) family; `compare_seeds`: the seed level of the metric's test, read with the t
distribution since a retention quantity is one number per seed, docs/statistics.md).
"""

from __future__ import annotations

import html
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import equivalence, multiple_comparisons, power, seed_level
from bench.analysis.aggregate import Aggregation
from bench.analysis.pareto import pareto_frontier

from .verdicts import ONE_SEED

#: quantity -> (short name, what lower means); lower is better for all three
QUANTITIES = {
    "retention.forgetting": ("forgetting", "forgets less"),
    "retention.drift": ("drift", "drifts less"),
    "retention.intruders": ("intruders", "fewer intruder dimensions"),
}
VERDICT_COLUMNS = ["model", "task", "quantity", "method_a", "method_b", "mean_a", "mean_b", "n_a", "n_b", "delta",
                   "ci_low", "ci_high", "p", "p_adj", "eq_low", "eq_high", "margin", "p_equiv", "p_equiv_adj",
                   "outcome", "verdict", "seeds_to_decide", "var_seeds", "pairing", "test", "correction"]


def compare_seeds(name: str, seeds_a, values_a, seeds_b, values_b, margin: float | None = None) -> dict:
    """A − B of a per-seed quantity: the seed-aware test's fields (bench.analysis.seed_level.seed_scalar: paired t
    over seeds when both sides ran the same seeds, Welch otherwise; TOST against the quantity's margin).
    Fewer than 2 finite seeds on a side: NaN p (no method verdict), the delta of the means still given."""
    a, b = np.asarray(values_a, float), np.asarray(values_b, float)
    sa, sb = np.asarray(seeds_a)[np.isfinite(a)], np.asarray(seeds_b)[np.isfinite(b)]
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    mg = equivalence.margin_for(name, margin if name == "retention.forgetting" else None)
    out = {"delta": float(a.mean() - b.mean()) if len(a) and len(b) else math.nan, "margin": mg,
           "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "eq_low": math.nan, "eq_high": math.nan,
           "p_equiv": math.nan, "var_seeds": math.nan, "pairing": "",
           "test": "fewer than 2 seeds on a side: no method verdict"}
    if len(a) < 2 or len(b) < 2:
        return out
    r = seed_level.seed_scalar(name, sa, sb, a, b, margin=mg)
    kind = "paired t" if r.pairing == "paired seeds" else "Welch t"
    return out | {"ci_low": r.low, "ci_high": r.high, "p": r.p, "eq_low": r.eq_low, "eq_high": r.eq_high,
                  "p_equiv": r.p_equiv, "var_seeds": r.var_seeds, "pairing": r.pairing,
                  "test": f"{kind} over seeds ({r.pairing}, n={r.n_seeds_a}, {r.n_seeds_b}; TOST, margin {mg:g})"}


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


def _pairs(methods: list[str], reference: str | None) -> list[tuple[str, str]]:
    """Every pair (sorted), or each method against `reference` as (method, reference)."""
    if reference is None:
        return list(combinations(sorted(methods), 2))
    return [(m, reference) for m in sorted(methods) if m != reference] if reference in methods else []


def _decide(fam: list[dict], q: str) -> None:
    """Holm over the family (p and TOST p each on their own), the four outcomes read for "lower is better"
    (`outcome` is A's: better = A lower), the verdict words and seeds_to_decide for undecided pairs."""
    adj = {k: multiple_comparisons.holm([r[k] for r in fam]) for k in ("p", "p_equiv")}
    tested = sum(np.isfinite(r["p"]) for r in fam)
    for r, pa, pe in zip(fam, adj["p"], adj["p_equiv"]):
        r["p_adj"], r["p_equiv_adj"], r["seeds_to_decide"] = float(pa), float(pe), math.nan
        if not np.isfinite(r["p"]):
            r["outcome"] = r["verdict"] = ONE_SEED
            continue
        # lower is better: A − B < 0 is A's gain, so the outcome is read on B − A
        r["outcome"] = multiple_comparisons.outcome(pa, -r["ci_high"], -r["ci_low"], -r["delta"], pe)
        if r["outcome"] in ("better", "worse"):
            winner = r["method_a"] if r["outcome"] == "better" else r["method_b"]
            r["verdict"] = f"{winner} {QUANTITIES[q][1]}"
        else:
            r["verdict"] = r["outcome"]
        if r["outcome"] == "undecided":
            r["seeds_to_decide"] = power.seeds_to_decide_t(r["delta"], r["var_seeds"], r["margin"],
                                                           r["pairing"] == "paired seeds", m=tested)


def retention_verdicts(agg: Aggregation, reference: str | None = None, quantities=tuple(QUANTITIES),
                       margin: float | None = None) -> pd.DataFrame:
    """Seed-aware verdicts per (model, task, quantity): every pair of methods, or with `reference` each method
    against it (A = the method, B = the reference); `compare_seeds` on the per-seed values, Holm within
    that family, the four outcomes (better / worse / equivalent / undecided; lower is better). `margin`
    overrides forgetting's equivalence margin (equivalence.MARGINS)."""
    kept = agg.kept[agg.kept["status"] == "ok"] if not agg.kept.empty else agg.kept
    rows = []
    for q in quantities:
        if q not in kept:
            continue
        for (model, task), sub in kept.groupby(["model", "task"]):
            per = {m: (g.loc[g[q].notna(), "seed"].to_numpy(), g[q].dropna().to_numpy())
                   for m, g in sub.groupby("method_label")}
            per = {m: v for m, v in per.items() if len(v[1])}
            fam = []
            for ma, mb in _pairs(list(per), reference):
                (sa, va), (sb, vb) = per[ma], per[mb]
                fam.append({"model": model, "task": task, "quantity": q, "method_a": ma, "method_b": mb,
                            "mean_a": float(va.mean()), "mean_b": float(vb.mean()), "n_a": len(va), "n_b": len(vb),
                            **compare_seeds(q, sa, va, sb, vb, margin)})
            for r in fam:
                r["correction"] = (f"Holm over the {sum(np.isfinite(x['p']) for x in fam)} tested pair(s) of "
                                   f"{model}/{task}, {QUANTITIES[q][0]}")
            _decide(fam, q)
            rows += fam
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def verdict_counts(verdicts: pd.DataFrame, quantity: str = "retention.forgetting") -> dict[str, int]:
    """How many pairs of a quantity ended in each outcome (multiple_comparisons.OUTCOMES, and one seed)."""
    v = verdicts[verdicts["quantity"] == quantity]["outcome"].value_counts() if len(verdicts) else {}
    return {o: int(v.get(o, 0)) for o in (*multiple_comparisons.OUTCOMES, ONE_SEED)}


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


def _verdict_text(r) -> str:
    """The verdict words, with the seeds per method an undecided pair would likely need."""
    need = r.get("seeds_to_decide")
    if r["outcome"] == "undecided" and need is not None and np.isfinite(need):
        return f"undecided (n≈{int(need)})"
    return "undecided (n>1000)" if r["outcome"] == "undecided" and need == math.inf else str(r["verdict"])


def verdict_lines(verdicts: pd.DataFrame) -> list[str]:
    """The verdicts as a Markdown table (A − B, lower is better for every quantity)."""
    if verdicts.empty:
        return []
    lines = ["| task | quantity | A | B | A - B [95% CI] | margin | p (Holm) | verdict |",
             "|---|---|---|---|---|---:|---:|---|"]
    for _, r in verdicts.iterrows():
        scale = 1 if r["quantity"] == "retention.intruders" else 100
        d = (f"{scale * r['delta']:+.2f} [{scale * r['ci_low']:+.2f}, {scale * r['ci_high']:+.2f}]"
             if np.isfinite(r["ci_low"]) else (f"{scale * r['delta']:+.2f}" if np.isfinite(r["delta"]) else "-"))
        p = f"{r['p_adj']:.3g}" if np.isfinite(r["p_adj"]) else "-"
        lines.append(f"| {r['task']} | {QUANTITIES[r['quantity']][0]} | {r['method_a']} | {r['method_b']} | {d} | "
                     f"{scale * r['margin']:g} | {p} | {_verdict_text(r)} |")
    return lines


VERDICT_NOTE = ("Verdicts: the seed-aware test with the task metric's four outcomes (better / worse / "
                "equivalent within the margin / undecided; n≈: seeds per method that would likely decide it). "
                "A retention quantity is one number per seed, so its test is the seed level alone: paired t "
                "over seeds when both methods ran the same seeds, Welch t otherwise; TOST for equivalence; "
                "Holm per model, task and quantity. Lower is better for every quantity; A - B and the margin "
                "on the table's scale (×100, intruders as counts).")


def markdown(table: pd.DataFrame, verdicts: pd.DataFrame) -> str:
    lines = []
    for model, sub in table.groupby("model", sort=True):
        lines += [f"### {model}", "", "| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD)]
        lines += ["| " + " | ".join(_row_cells(r)) + " |" for _, r in sub.iterrows()]
        lines.append("")
    if not verdicts.empty:
        lines += [VERDICT_NOTE, "", *verdict_lines(verdicts)]
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


def write_retention(agg: Aggregation, out: Path, plots: list,
                    margin: float | None = None) -> tuple[dict[str, Path], str]:
    """Write retention.md / retention.csv / retention_verdicts.csv, add a plot per model, return the
    table paths and an HTML section; `margin` overrides forgetting's equivalence margin."""
    table = retention_table(agg)
    if table.empty:
        return {}, ""  # no record has a retention section: no section
    verdicts = retention_verdicts(agg, margin=margin)
    agg.retention_verdicts = verdicts  # the terminal summary's forgetting line (bench.report.retention_line)
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
            "interval over seeds]. " + html.escape(VERDICT_NOTE)
            + ' Downloads: <a href="retention.csv">retention.csv</a>, '
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
        parts.append(f"<pre>{html.escape(chr(10).join(verdict_lines(verdicts)))}</pre>")
    return paths, "\n".join(parts)
