"""The catalogue report (experiment=catalogue, docs/catalogue.md): every method against LoRA as a
paired verdict, the Pareto frontiers, and whether the two tasks rank the methods alike.

Why its own part rather than the main report's verdict matrix: with n methods the main report
tests all n(n-1)/2 pairs per task and corrects over all of them, which is the right question for a
handful of methods but buries "is X better than LoRA" under a correction for comparisons nobody
asked. Here the tests are the main report's own (the seed-aware two-level bootstrap for the verdict,
the seeds-pooled one beside it; same resamples), read for the pairs that contain the reference
method, and Holm corrects over those pairs of each task only.

Frontiers: trainable parameters excluding the head (how the method papers count) against the mean
dev score; and the served inference overhead (merged where the method merges: what a deployed model
costs) against the score. Both use bench.analysis.pareto's one definition of dominance.

`python -m bench.report.catalogue RESULTS_DIR --out DIR [--reference lora]` writes catalogue.csv,
catalogue.md and prints the Markdown (rendered by bench.report.catalogue_markdown); it reads records only.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import multiple_comparisons, power
from bench.analysis.pareto import pareto_frontier
from bench.records.results import cpu_per_thread

from .catalogue_markdown import markdown, summary_markdown
from .data_budget import kendall_tau
from .verdicts import ONE_SEED


def _served_overhead(rec: dict) -> float:
    """batch-1 latency ratio vs the untouched backbone, of the merged model where it merges."""
    inf = rec.get("inference") or {}
    over = inf.get("overhead") or {}
    part = over.get("merged") or over.get("method") or {}
    v = part.get("batch1_mean")
    return float(v) if isinstance(v, (int, float)) else math.nan


def _peft_type(rec: dict, method: dict) -> str | None:
    """peft's name for the tuner, from the record's declared capabilities (schema 3) or its method
    config; "(harness)" for the methods written here (adapters, BitFit, head-only, full); unknown
    (None) for a record that declares neither."""
    declared = (rec.get("capabilities") or {}).get("peft_type") or method.get("peft_type")
    if declared:
        return str(declared).lower()
    return "(harness)" if rec.get("capabilities") or method else None


def _method_facts(records: list[dict]) -> pd.DataFrame:
    """Per (task, method_label): peft type, mergeable, storage, served overhead (means over seeds)."""
    rows = []
    for rec in records:
        if rec.get("status") != "ok" or (rec.get("study") or {}).get("role") == "trial":
            continue
        method = (rec.get("config") or {}).get("method") or {}
        method = method if isinstance(method, dict) else {}  # a schema-1 record names its method by a string
        merge = ((rec.get("inference") or {}).get("merge") or {}).get("status")
        study = rec.get("study") or {}
        grid, chosen = study.get("lr_grid") or [], study.get("selected_lr")
        edge, where = None, study.get("selected_position") or {}
        if where.get("position"):  # the searching protocol says where the rate lies among the rates it tried
            edge = ("inside" if where["position"] == "interior"
                    else {"high": "top", "low": "bottom"}.get(where.get("side")))
        elif chosen is not None and len(grid) > 1:  # a fixed grid: its own ends
            edge = "top" if math.isclose(chosen, max(grid), rel_tol=1e-6) else (
                "bottom" if math.isclose(chosen, min(grid), rel_tol=1e-6) else "inside")
        stab = study.get("stability") or {}
        unstable = [f"{r['lr']:.3g}: {r['failed']} of {r['seeds']} seeds failed" for r in stab.get("rejected") or []]
        if stab and not stab.get("stable", True):
            unstable.append(f"kept {chosen:.3g}: {stab['failed']} of {stab['seeds']} seeds failed, no lower rate "
                            "trained stably")
        rows.append({"task": rec.get("task"), "method_label": rec.get("method_label") or rec.get("method"),
                     "peft_type": _peft_type(rec, method),
                     "mergeable": None if merge is None else merge in ("merged", "native"),
                     "overhead": _served_overhead(rec), "selected_lr": chosen, "lr_edge": edge,
                     "lr_limit": where.get("position") == "hard_limit",
                     "lr_unstable": "; ".join(unstable)})
    if not rows:
        return pd.DataFrame(columns=["task", "method_label", "peft_type", "mergeable", "overhead", "selected_lr",
                                     "lr_edge", "lr_limit", "lr_unstable"])
    frame = pd.DataFrame(rows)
    return frame.groupby(["task", "method_label"], as_index=False).agg(
        peft_type=("peft_type", "first"), mergeable=("mergeable", "first"), overhead=("overhead", "mean"),
        selected_lr=("selected_lr", "first"), lr_edge=("lr_edge", "first"), lr_limit=("lr_limit", "first"),
        lr_unstable=("lr_unstable", "first"))


def study_cost(records: list[dict]) -> dict:
    """What the study cost, from its records: cells by role, the sum of their seconds (each record's
    `time.total_s`, trials included), how many ran at a time, and the span of their timestamps (which
    includes any time the study was stopped, so it is an upper bound of the wall time)."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return {}
    roles = pd.Series([(r.get("study") or {}).get("role") or "cell" for r in ok]).value_counts().to_dict()
    seconds = sum(float((r.get("time") or {}).get("total_s") or 0.0) for r in ok)
    timed = [r for r in ok if cpu_per_thread(r) is not None]  # schema 5
    cpu = sum(cpu_per_thread(r) for r in timed)
    parallel = sorted({int((r.get("env") or {}).get("parallel_cells") or 1) for r in ok})
    starts = sorted(str(r["created_at"]) for r in ok if r.get("created_at"))
    ends = sorted(str(r["finished_at"]) for r in ok if r.get("finished_at"))
    span_h = None
    if starts and ends:
        span_h = (pd.Timestamp(ends[-1]) - pd.Timestamp(starts[0])).total_seconds() / 3600
    return {"cells": len(ok), "roles": roles, "cell_hours": seconds / 3600, "parallel_cells": parallel,
            "first_start": starts[0] if starts else None, "last_end": ends[-1] if ends else None, "span_hours": span_h,
            "cpu_cells": len(timed), "cpu_thread_hours": cpu / 3600,
            "wall_of_cpu_cells_hours": sum(float(r["time"]["total_s"]) for r in timed) / 3600}


VS_COLUMNS = ["task", "method_label", "delta_vs_ref", "delta_ci_low", "delta_ci_high", "p", "p_holm", "eq_low",
              "eq_high", "margin", "p_equiv_holm", "verdict", "seeds_to_decide", "pairing", "pooled_ci_low",
              "pooled_ci_high", "pooled_p_holm", "pooled_verdict", "holm_floor", "test"]
_FROM_PAIRWISE = ("delta", "ci_low", "ci_high", "eq_low", "eq_high", "pooled_ci_low", "pooled_ci_high", "p", "p_equiv",
                  "pooled_p", "pooled_p_equiv", "var_seeds", "var_examples", "margin", "pairing")


def versus_reference(pairwise: pd.DataFrame, reference: str, b: int | None = None) -> pd.DataFrame:
    """method − reference per task from the main report's paired tests, Holm over each task's pairs.

    The verdict is the seed-aware test's (better / worse / equivalent / undecided, or "one seed: no
    method verdict"); the seeds-pooled test stays beside it as `pooled_*` (these trained models). With
    `b` (the report's resamples) each row carries `holm_floor`, the smallest adjusted p its family can
    reach: 50 comparisons with B=1,000 give 50/1,001 ≈ 0.05, where nothing is significant."""
    rows = []
    for task, sub in pairwise.groupby("task"):
        mine = sub[(sub["method_a"] == reference) | (sub["method_b"] == reference)]
        part = []
        for _, row in mine.iterrows():
            r = {k: row.get(k, np.nan) for k in _FROM_PAIRWISE}  # older or hand-made frames lack some columns
            flip = row["method_a"] == reference  # the frame holds a - b with a ranked first
            sign = -1.0 if flip else 1.0

            def ci(lo: str, hi: str, r=r, flip=flip, sign=sign) -> tuple[float, float]:
                return (sign * r[hi], sign * r[lo]) if flip else (r[lo], r[hi])

            part.append({"task": task, "method_label": row["method_b"] if flip else row["method_a"],
                         "delta_vs_ref": sign * r["delta"], **dict(zip(("delta_ci_low", "delta_ci_high"),
                                                                       ci("ci_low", "ci_high"))),
                         **dict(zip(("eq_low", "eq_high"), ci("eq_low", "eq_high"))),
                         **dict(zip(("pooled_ci_low", "pooled_ci_high"), ci("pooled_ci_low", "pooled_ci_high"))),
                         **{k: r[k] for k in ("p", "p_equiv", "pooled_p", "pooled_p_equiv", "var_seeds",
                                              "var_examples")},
                         "margin": r["margin"], "pairing": r["pairing"] if isinstance(r["pairing"], str) else ""})
        adj = {k: multiple_comparisons.holm([p[k] for p in part])
               for k in ("p", "p_equiv", "pooled_p", "pooled_p_equiv")}
        tested = sum(1 for p in part if np.isfinite(p["p"]))
        floor = multiple_comparisons.holm_floor(tested, b) if b and tested else float("nan")
        for i, p in enumerate(part):
            p["p_holm"], p["p_equiv_holm"], p["pooled_p_holm"] = adj["p"][i], adj["p_equiv"][i], adj["pooled_p"][i]
            p["holm_floor"] = floor
            p["pooled_verdict"] = multiple_comparisons.outcome(adj["pooled_p"][i], p["pooled_ci_low"],
                                                               p["pooled_ci_high"], p["delta_vs_ref"],
                                                               adj["pooled_p_equiv"][i])
            if np.isfinite(p["p"]):
                p["verdict"] = multiple_comparisons.outcome(p["p_holm"], p["delta_ci_low"], p["delta_ci_high"],
                                                            p["delta_vs_ref"], p["p_equiv_holm"])
                p["seeds_to_decide"] = (power.seeds_to_decide(p["delta_vs_ref"], p["var_seeds"], p["var_examples"],
                                                              p["margin"], m=tested)
                                        if p["verdict"] == "undecided" else np.nan)
            else:
                p["verdict"], p["seeds_to_decide"] = ONE_SEED, np.nan
            p["test"] = (f"seed-aware paired bootstrap (seeds, then examples); Holm over the {tested} comparisons "
                         f"with {reference} on {task}")
        rows += part
    return pd.DataFrame(rows, columns=VS_COLUMNS)


def frontier_flags(table: pd.DataFrame, cost: str) -> pd.Series:
    """True for rows on the (cost minimised, score maximised) frontier within their task."""
    flags = pd.Series(False, index=table.index)
    for _, sub in table.groupby("task"):
        pts = list(zip(sub[cost].astype(float), sub["score"].astype(float)))
        for i in pareto_frontier(pts):
            flags[sub.index[i]] = True
    return flags


def catalogue_table(agg, records: list[dict], reference: str = "lora", b: int | None = None,
                    forgetting_margin: float | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per (task, method): score with its interval, counts, storage, capabilities, verdict vs
    the reference, frontier membership; and the rank agreement of the tasks."""
    cells = agg.cells[agg.cells["row_type"] == "cell"] if "row_type" in agg.cells else agg.cells
    keep = {"task": "task", "method_label": "method_label", "headline_metric": "metric", "headline_mean": "score",
            "headline_ci_low": "ci_low", "headline_ci_high": "ci_high", "n_ok": "seeds",
            "params.trainable_excl_head_mean": "trainable_excl_head", "storage.bytes_mean": "storage_bytes",
            "above_chance": "above_chance", "collapsed_seeds": "collapsed_seeds",
            "retention.forgetting_mean": "forgetting", "retention.forgetting_ci_low": "forgetting_ci_low",
            "retention.forgetting_ci_high": "forgetting_ci_high", "retention.drift_mean": "drift",
            "retention.intruders_mean": "intruders"}
    table = cells[[c for c in keep if c in cells]].rename(columns=keep)
    table = table.merge(_method_facts(records), on=["task", "method_label"], how="left")
    vs = versus_reference(agg.pairwise, reference, b) if len(agg.pairwise) else pd.DataFrame()
    if len(vs):
        table = table.merge(vs, on=["task", "method_label"], how="left")
        table.loc[table["method_label"] == reference, "verdict"] = "reference"
    table = table[table["score"].notna()].reset_index(drop=True)
    table["frontier_params"] = frontier_flags(table, "trainable_excl_head")
    table["frontier_overhead"] = frontier_flags(table, "overhead") if table["overhead"].notna().any() else False
    has_forgetting = "forgetting" in table and table["forgetting"].notna().any()
    table["frontier_forgetting"] = frontier_flags(table, "forgetting") if has_forgetting else False
    if has_forgetting:
        table = table.merge(_forgetting_vs(agg, reference, forgetting_margin), on=["task", "method_label"], how="left")
    tasks = sorted(table["task"].unique())
    agreement = {}
    if len(tasks) == 2:
        wide = table.pivot_table(index="method_label", columns="task", values="score").dropna()
        tau, p = kendall_tau(wide[tasks[0]].tolist(), wide[tasks[1]].tolist())
        agreement = {"tasks": tasks, "kendall_tau_b": tau, "p": p, "methods": len(wide)}
    return table.sort_values(["task", "score"], ascending=[True, False]).reset_index(drop=True), agreement


FORGETTING_VS = ["task", "method_label", "forgetting_delta", "forgetting_delta_ci_low", "forgetting_delta_ci_high",
                 "forgetting_p_holm", "forgetting_margin", "forgetting_outcome", "forgetting_verdict",
                 "forgetting_seeds_to_decide", "forgetting_test"]


def _forgetting_vs(agg, reference: str, margin: float | None = None) -> pd.DataFrame:
    """Each method's forgetting against the reference: the seed-aware verdict of bench.report.retention
    (four outcomes, lower is better; Holm over each task's comparisons with the reference, as for the metric)."""
    from .retention import retention_verdicts

    v = retention_verdicts(agg, reference=reference, quantities=("retention.forgetting",), margin=margin)
    rows = [{"task": r["task"], "method_label": r["method_a"], "forgetting_delta": r["delta"],
             "forgetting_delta_ci_low": r["ci_low"], "forgetting_delta_ci_high": r["ci_high"],
             "forgetting_p_holm": r["p_adj"], "forgetting_margin": r["margin"], "forgetting_outcome": r["outcome"],
             "forgetting_verdict": r["verdict"], "forgetting_seeds_to_decide": r["seeds_to_decide"],
             "forgetting_test": r["test"]} for _, r in v.iterrows()]
    return pd.DataFrame(rows, columns=FORGETTING_VS)


def resamples_for(records: list[dict]) -> int:
    """B for a catalogue: the family of a task is every other method against the reference, so the
    largest per-task method count minus one sets the Holm floor (multiple_comparisons.min_resamples). The methods are
    the table's own rows (_method_facts: ok records, trials left out)."""
    per_task = _method_facts(records).groupby("task")["method_label"].nunique()
    return multiple_comparisons.min_resamples(int(per_task.max()) - 1 if len(per_task) else 0)


def main(argv: list[str] | None = None) -> int:
    from bench.report import UnusableResults, generate_report

    ap = argparse.ArgumentParser(prog="python -m bench.report.catalogue", description=__doc__.split("\n")[0])
    ap.add_argument("results", help="results folder of experiment=catalogue (or any sweep)")
    ap.add_argument("--out", required=True, help="report folder (the main report is written there too)")
    ap.add_argument("--reference", default="lora", help="the method every other is compared with (default lora)")
    ap.add_argument("--margin", type=float, default=None,
                    help="equivalence margin on the metric's scale (default per metric: "
                         "bench.analysis.equivalence.MARGINS)")
    ap.add_argument("--bootstrap", "--bootstrap-samples", dest="bootstrap", type=int, default=None,
                    help="bootstrap resamples (default: enough that Holm over the comparisons with the "
                         "reference can reach p < alpha/10, see bench.analysis.multiple_comparisons.min_resamples)")
    ap.add_argument("--forgetting-margin", type=float, default=None,
                    help="equivalence margin of the forgetting verdicts (default 0.01: "
                         "bench.analysis.equivalence.MARGINS)")
    a = ap.parse_args(argv)
    from bench.records.schema import load_records

    for flag, v in (("--margin", a.margin), ("--forgetting-margin", a.forgetting_margin)):
        if v is not None and not v > 0:
            ap.error(f"{flag} {v}: must be > 0 (e.g. 0.01 for 1 point)")
    if a.bootstrap is not None and a.bootstrap < 100:
        ap.error(f"--bootstrap {a.bootstrap}: use at least 100 (percentile intervals need them)")
    records = load_records(Path(a.results))[0]  # a missing folder: none, and generate_report says so
    b = a.bootstrap or resamples_for(records)
    try:
        report = generate_report(a.results, a.out, bootstrap_samples=b, margin=a.margin,
                                 forgetting_margin=a.forgetting_margin)
    except UnusableResults as exc:
        print(f"bench.report.catalogue: error: {exc}", file=sys.stderr)
        return 2
    table, agreement = catalogue_table(report.agg, records, a.reference, b, a.forgetting_margin)
    out = Path(a.out)
    table.to_csv(out / "catalogue.csv", index=False)
    text = summary_markdown(table, a.reference) + "\n" + markdown(table, agreement, a.reference, study_cost(records))
    (out / "catalogue.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
