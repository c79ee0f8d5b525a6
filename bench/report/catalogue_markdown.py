"""The catalogue report's Markdown: the table of every method against the reference (scores, verdicts,
forgetting, cost, frontiers), the notes under it, and the one-paragraph summary at its top.

Rendering only: the numbers come from bench.report.catalogue (`catalogue_table`), which also writes the files.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import multiple_comparisons

from .verdicts import ONE_SEED


def cost_line(cost: dict) -> str:
    if not cost:
        return ""
    roles = ", ".join(f"{n} {k}" for k, n in sorted(cost["roles"].items()))
    par = "/".join(map(str, cost["parallel_cells"]))
    span = (f"; first start {cost['first_start']}, last end {cost['last_end']} "
            f"({cost['span_hours']:.1f} h between them, pauses included)" if cost["span_hours"] is not None else "")
    cpu = (f" Of these, {cost['cpu_cells']} cells also recorded their CPU time (schema 5): "
           f"{cost['cpu_thread_hours']:.2f} CPU-hours per thread against {cost['wall_of_cpu_cells_hours']:.2f} "
           f"cell-hours of wall time: wall / CPU {cost['wall_of_cpu_cells_hours'] / cost['cpu_thread_hours']:.2f}x "
           "(about 1x on a quiet machine; more where other work shared it)."
           if cost.get("cpu_cells") and cost["cpu_thread_hours"] > 0 else "")
    return (f"Study cost, from the records: {cost['cells']} ok cells ({roles}), {cost['cell_hours']:.1f} cell-hours "
            f"(sum of each cell's time.total_s), {par} cell(s) at a time{span}.{cpu}")


def _forgetting_cell(r) -> str:
    """Forgetting x100 with its interval over seeds; '' when unmeasured."""
    f = r.get("forgetting")
    if f is None or pd.isna(f):
        return ""
    text = f"{100 * f:.2f}"
    if not pd.isna(r.get("forgetting_ci_low")):
        text += f" [{100 * r['forgetting_ci_low']:.2f}, {100 * r['forgetting_ci_high']:.2f}]"
    return text


def _forgetting_verdict_cell(r, reference: str) -> str:
    """Δ forgetting vs the reference [95 % CI] ×100 and the seed-aware verdict (n≈ for undecided)."""
    if r.get("method_label") == reference:
        return "reference"
    v = r.get("forgetting_outcome")
    if not isinstance(v, str):
        return ""
    d = r.get("forgetting_delta")
    text = "" if d is None or pd.isna(d) else f"{100 * d:+.2f}"
    if not pd.isna(r.get("forgetting_delta_ci_low")):
        text += f" [{100 * r['forgetting_delta_ci_low']:+.2f}, {100 * r['forgetting_delta_ci_high']:+.2f}]"
    need = r.get("forgetting_seeds_to_decide")
    word = {"better": "forgets less", "worse": "forgets more"}.get(v, v)
    if v == "undecided" and need is not None and not pd.isna(need):
        word += f" (n≈{int(need)})" if np.isfinite(need) else " (n>1000)"
    p = r.get("forgetting_p_holm")
    return f"{text}, {word}" + (f" (p {_p(p)})" if v in ("better", "worse") else "")


#: the range a mean of each headline metric can take: a t interval over three seeds with one collapsed
#: seed reaches past it (LoRA on STS-B: 55.5 [-19.1, 130.1] Pearson); the mean cannot, so the interval
#: shown is its intersection with the range (coverage unchanged), marked
METRIC_RANGE = {"accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "pearson": (-1.0, 1.0), "spearmanr": (-1.0, 1.0),
                "matthews_correlation": (-1.0, 1.0)}


def _score_cell(r) -> str:
    lo, hi = float(r["ci_low"]), float(r["ci_high"])
    low, high = METRIC_RANGE.get(str(r.get("metric")), (-float("inf"), float("inf")))
    clipped = lo < low or hi > high
    lo, hi = max(lo, low), min(hi, high)
    return f"{100 * r['score']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]{' ‡' if clipped else ''}"


def _collapsed(r) -> str:
    """`k/n` seeds whose predictions collapsed (one class, or a near-constant score: bench.analysis.chance)."""
    k = r.get("collapsed_seeds")
    return "" if k is None or pd.isna(k) else f"{int(k)}/{int(r['seeds'])}"


def _rate(r) -> str:
    """The rate the study chose, marked where it is the edge of the rates tried (↑ / ↓; the best rate may lie
    past it) and where a higher rate was chosen first and rejected as unstable (§)."""
    v = r.get("selected_lr")
    if v is None or pd.isna(v):
        return ""
    return (f"{float(v):.3g}" + {"top": " ↑", "bottom": " ↓"}.get(r.get("lr_edge"), "")
            + (" §" if r.get("lr_unstable") else ""))


def _p(v) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v):.3g}"


def _fmt_count(v) -> str:
    return "" if pd.isna(v) else f"{round(float(v)):,}"


def _merge(r) -> str:
    return "" if pd.isna(r.get("mergeable")) else ("yes" if r["mergeable"] else "no")


def _frontiers(r) -> str:
    """The frontiers a row is on: trainable parameters, served latency."""
    flags = (("params", r["frontier_params"]), ("latency", r["frontier_overhead"]),
             ("forgetting", r.get("frontier_forgetting", False)))
    return ", ".join(k for k, f in flags if f)


def markdown(table: pd.DataFrame, agreement: dict, reference: str, cost: dict | None = None) -> str:
    lines = []
    retention = "forgetting" in table and table["forgetting"].notna().any()  # a column only where measured
    for task, sub in table.groupby("task"):
        metric = sub["metric"].iloc[0]
        lines += [(f"### {task} ({metric}, mean over seeds [95 % CI]; verdict vs {reference}: seed-aware paired "
                   "bootstrap, Holm)"), "",
                  ("| method | peft type | trainable (excl. head) | storage | mergeable | served latency | score | "
                   f"collapsed seeds | chosen rate | Δ vs {reference} [95 % CI] | p (Holm) | verdict | "
                   + (f"forgetting ×100 [95 % CI] | Δ forgetting vs {reference} [95 % CI], verdict | "
                      if retention else "") + "frontier |"),
                  "|---|---|---:|---:|---|---:|---|---:|---:|---|---:|---|"
                  + ("---|---|" if retention else "") + "---|"]
        for _, r in sub.iterrows():
            delta = ("" if pd.isna(r.get("delta_vs_ref")) else
                     f"{100 * r['delta_vs_ref']:+.1f} "
                     f"[{100 * r['delta_ci_low']:+.1f}, {100 * r['delta_ci_high']:+.1f}]")
            chance = r.get("above_chance")
            mark = " (not above chance)" if chance is not None and not pd.isna(chance) and not bool(chance) else ""
            lines.append(f"| {r['method_label']}{mark} | {r.get('peft_type') or ''} | "
                         f"{_fmt_count(r['trainable_excl_head'])} | "
                         f"{_fmt_count(r['storage_bytes'])} B | {_merge(r)} | "
                         f"{'' if pd.isna(r['overhead']) else f'{r.overhead:.3f}x'} | "
                         f"{_score_cell(r)} | {_collapsed(r)} | {_rate(r)} | {delta} | {_p(r.get('p_holm'))} | "
                         f"{_verdict_text(r)} | "
                         + (f"{_forgetting_cell(r)} | {_forgetting_verdict_cell(r, reference)} | " if retention else "")
                         + f"{_frontiers(r)} |")
        lines.append("")
    if retention:
        lines += [forgetting_note(table, reference), ""]
    if "lr_edge" in table and table["lr_edge"].isin(["top", "bottom"]).any():
        edge = table[table["lr_edge"].isin(["top", "bottom"])]
        limit = (edge["lr_limit"] if "lr_limit" in edge else pd.Series(False, index=edge.index)).fillna(False)
        lines += [("↑ / ↓ the chosen rate is the highest / lowest rate tried (a searching study: it stopped there at "
                   "the search's hard limit, or its budget ran out; a fixed grid: the method's `lr_range`): the best "
                   "rate may lie past it, so that method's score is a lower bound of what tuning would give ("
                   + ", ".join(f"{t}: {m}" + (" (hard limit)" if lim else "")
                               for t, m, lim in zip(edge["task"], edge["method_label"], limit.astype(bool)))
                   + ")."), ""]
    if "lr_unstable" in table and table["lr_unstable"].fillna("").astype(bool).any():
        bad = table[table["lr_unstable"].fillna("").astype(bool)]
        lines += [("§ more of the chosen rate's seeds than `study.stability` allows did not train (collapsed, or "
                   "gained under half of the trial seed's gain over chance on the selection split): the best lower "
                   "rate whose trial trained was seeded too, and the rate with the fewest failed seeds is reported ("
                   + "; ".join(f"{t}: {m}, {u}"
                               for t, m, u in zip(bad["task"], bad["method_label"], bad["lr_unstable"]))
                   + ")."), ""]
    if table.apply(lambda r: _score_cell(r).endswith("‡"), axis=1).any():
        lines += [("‡ the t interval over seeds reached past the metric's range (a seed far from the others, "
                   "often a collapsed one); shown is its part within the range. The verdict is the seed-aware "
                   "paired bootstrap, not this interval."), ""]
    if "holm_floor" in table and table["holm_floor"].notna().any():
        worst = table.loc[table["holm_floor"].idxmax()]
        floor, where = float(worst["holm_floor"]), worst["task"]
        alpha = multiple_comparisons.ALPHA
        lines += [(f"Resolution: each p comes from the paired bootstrap and is at least 1/(B+1); Holm over a "
                   f"task's comparisons lifts that to a floor of {floor:.3g} ({where}), below alpha {alpha}."
                   if floor < alpha else
                   f"Resolution: the Holm floor is {floor:.3g} ({where}), not below alpha {alpha}: no "
                   "verdict here can read better or worse; rerun with a larger --bootstrap."), ""]
    if agreement:
        lines.append(f"Rank agreement of {agreement['tasks'][0]} and {agreement['tasks'][1]} over "
                     f"{agreement['methods']} methods: Kendall tau-b {agreement['kendall_tau_b']:.2f} "
                     f"(p = {agreement['p']:.3g}).")
    if cost:
        lines += ["", cost_line(cost)]
    return "\n".join(lines) + "\n"


def forgetting_note(table: pd.DataFrame, reference: str) -> str:
    """How the forgetting columns were tested, each task's outcome counts, and where the plot is."""
    counts = []
    for t, sub in table[table["method_label"] != reference].groupby("task"):
        v = sub["forgetting_outcome"].value_counts() if "forgetting_outcome" in sub else {}
        counts.append(f"{t}: {int(v.get('better', 0))} forget less, {int(v.get('worse', 0))} forget more, "
                      f"{int(v.get('equivalent', 0))} equivalent, {int(v.get('undecided', 0))} undecided"
                      + (f", {int(v.get(ONE_SEED, 0))} with one seed" if v.get(ONE_SEED, 0) else ""))
    margin = table["forgetting_margin"].dropna() if "forgetting_margin" in table else pd.Series(dtype=float)
    mg = (f"±{100 * float(margin.iloc[0]):g} on the ×100 scale" if len(margin) else
          "the margin of bench.analysis.equivalence.MARGINS")
    return (f"Forgetting (docs/retention.md): skill lost on data no cell saw, ×100, mean [95 % t interval over "
            f"seeds]; Δ vs {reference} with the seed-aware verdict (lower is better: paired t over seeds when "
            f"both ran the same seeds, else Welch; equivalent = TOST inside {mg}; Holm over each task's "
            f"comparisons with {reference}). Against {reference}: " + "; ".join(counts) + ". The "
            "`forgetting` frontier: no other method has both a higher score and less forgetting; plotted in "
            "the main report written beside this file (plots/*__retention.png, retention.md).")


def _verdict_text(r) -> str:
    """The verdict word, with the seeds per method that would likely decide an undecided pair."""
    v = r.get("verdict")
    if not isinstance(v, str):
        return ""
    need = r.get("seeds_to_decide")
    if v == "undecided" and need is not None and not pd.isna(need):
        return f"undecided (n≈{int(need)})" if np.isfinite(need) else "undecided (n>1000)"
    return v


def _verdict_mark(r) -> str:
    v = r.get("verdict")
    if not isinstance(v, str):
        return ""
    if v == "reference":
        return " (reference)"
    return f", {_verdict_text(r)}" + ("" if pd.isna(r.get("p_holm")) else f" (p {_p(r['p_holm'])})")


def summary_markdown(table: pd.DataFrame, reference: str) -> str:
    """Every method on one row, its tasks side by side, fewest trainable parameters first: the table a
    reader scans for "what does X buy at what size" (the per-task tables below it carry the deltas,
    rates and seeds). Storage and mergeable are the first task's: the head differs by task."""
    tasks = sorted(table["task"].unique())
    if not len(tasks):
        return ""
    by = {(r["task"], r["method_label"]): r for _, r in table.iterrows()}
    order = (table.groupby("method_label")["trainable_excl_head"].min().sort_values(kind="stable").index.tolist())
    head = ("| method | peft type | trainable (excl. head) | storage | mergeable | "
            + " | ".join(f"{t} ({table[table.task == t]['metric'].iloc[0]}) [95 % CI], vs {reference}" for t in tasks)
            + " | on the frontier |")
    lines = [(f"### All methods, fewest trainable parameters first (verdicts vs {reference}: seed-aware paired "
              "bootstrap, Holm per task)"),
             "", head, "|---|---|---:|---:|---|" + "---|" * len(tasks) + "---|"]
    for m in order:
        rows = [by.get((t, m)) for t in tasks]
        first = next(r for r in rows if r is not None)
        scores = ["–" if r is None else _score_cell(r) + _verdict_mark(r) for r in rows]
        front = "; ".join(f"{t}: {_frontiers(r)}" for t, r in zip(tasks, rows) if r is not None and _frontiers(r))
        lines.append(f"| {m} | {first.get('peft_type') or ''} | {_fmt_count(first['trainable_excl_head'])} | "
                     f"{_fmt_count(first['storage_bytes'])} B | {_merge(first)} | "
                     + " | ".join(scores) + f" | {front} |")
    counts = []
    for t in tasks:
        sub = table[(table.task == t) & (table.method_label != reference)]
        v = sub["verdict"].value_counts() if "verdict" in sub else {}  # no column: nothing to compare yet
        pv = sub["pooled_verdict"].value_counts() if "pooled_verdict" in sub else {}
        counts.append(f"{t}: " + ", ".join(f"{int(v.get(o, 0))} {o}" for o in multiple_comparisons.OUTCOMES)
                      + (f", {int(v.get(ONE_SEED, 0))} with one seed (no method verdict)" if v.get(ONE_SEED, 0) else "")
                      + " (seeds pooled, these trained models: "
                      + ", ".join(f"{int(pv.get(o, 0))} {o}" for o in multiple_comparisons.OUTCOMES) + ")")
    lines += ["", f"Against {reference}: " + "; ".join(counts) + ".", ""]
    return "\n".join(lines) + "\n"
