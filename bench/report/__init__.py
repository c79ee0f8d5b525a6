"""Comparison reports from result records: tables, plots and one index.html per report.

`generate_report` reads records only (bench.records.schema.load_records) and never re-runs anything, so a
report can be rebuilt at any time from any set of results, including results copied from other
machines. The CLI is `python -m bench.report RESULTS_DIR [--out DIR] [--name NAME]`; docs/report.md
says what a report holds and how its numbers are aggregated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.analysis.aggregate import Aggregation, build
from bench.analysis.resampled_metrics import DEFAULT_B
from bench.records.schema import BadRecord, bad_record_lines, load_records

from .verdicts import ONE_SEED, add_verdicts


class UnusableResults(ValueError):
    """RESULTS_DIR does not exist or holds no usable record: nothing to report."""


@dataclass
class Report:
    out: Path
    name: str
    agg: Aggregation
    bad: list[BadRecord]
    index: Path
    tables: dict[str, Path]
    plots: list = field(default_factory=list)


def generate_report(results_dir: str | Path, out: str | Path, name: str | None = None,
                    timings: dict[str, float] | None = None, bootstrap_samples: int = DEFAULT_B,
                    margin: float | None = None, forgetting_margin: float | None = None) -> Report:
    """Build the report for every record under `results_dir` into folder `out`.

    Raises UnusableResults when the folder is missing or has no readable record (bad files alone
    are not a report). Existing files in `out` with the same names are replaced. If `timings` is a
    dict, the seconds spent per phase (load, aggregate, verdicts, tables, plots, html) are stored in
    it. `bootstrap_samples` is B of every bootstrap (intervals, paired tests, ASO; docs/statistics.md);
    `margin` overrides the equivalence margin of every headline metric, `forgetting_margin` that of
    forgetting (defaults: bench.analysis.equivalence.MARGINS).
    """
    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = now - clock
        clock = now

    from .html import write_index
    from .plots import write_plots
    from .tables import write_tables

    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise UnusableResults(f"results folder {results_dir} does not exist")
    records, bad = load_records(results_dir)
    lap("load")
    if not records:
        detail = ((f" ({len(bad)} unreadable record file(s):\n" + "\n".join(bad_record_lines(bad, "  ")) + ")")
                  if bad else "")
        raise UnusableResults(f"no readable result records under {results_dir}{detail}")
    name = name or (results_dir.resolve().name if results_dir.is_dir() else results_dir.stem)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = build(records)
    lap("aggregate")
    add_verdicts(agg, bootstrap_samples, margin)
    lap("verdicts")
    tables = write_tables(agg, out)
    lap("tables")
    plots = write_plots(agg, out)
    from .inference import write_inference  # inference cost: own table + plot, own HTML section
    _inf_tables, inf_html = write_inference(records, out, plots)
    from .data_budget import (
        write_budget,  # data-budget curves: only when budget records are present
    )
    _budget_tables, budget_html = write_budget(records, out, plots, bootstrap_samples, margin=margin)
    from .compose import (
        write_compose,  # soups, merges, transfer: only when such records are present
    )
    compose_tables, compose_html = write_compose(records, out, plots, bootstrap_samples, margin=margin)
    from .retention import (
        write_retention,  # forgetting, drift, intruder dimensions: only when records have them
    )
    retention_tables, retention_html = write_retention(agg, out, plots, forgetting_margin)
    tables = {**tables, **compose_tables, **retention_tables}
    lap("plots")
    index = write_index(out, name, agg, records, bad, results_dir, plots, tables,
                        extra_html=inf_html + retention_html + budget_html + compose_html)
    lap("html")
    return Report(out, name, agg, bad, index, tables, plots)


def pairwise_line(agg: Aggregation) -> str:
    """One line: how many pairs were tested and how many differ after Holm (or why none)."""
    pw = agg.pairwise
    if pw.empty:
        return "pairwise tests: none (no two methods with per-example predictions on one task)"
    v = pw["verdict"].value_counts()
    n_sig = int(v.get("a better", 0) + v.get("b better", 0))
    return (f"pairwise tests (seed-aware): {len(pw)} pair(s), {n_sig} better/worse after Holm (alpha 0.05), "
            f"{int(v.get('equivalent', 0))} equivalent, {int(v.get('undecided', 0))} undecided, "
            f"{int(v.get(ONE_SEED, 0))} with one seed on a side (no method verdict); see pairwise.csv")


def retention_line(agg: Aggregation) -> str | None:
    """One line: the forgetting verdicts' outcomes (None when no record measured retention)."""
    v = agg.retention_verdicts
    if v is None:
        return None
    from .retention import verdict_counts

    c = verdict_counts(v)
    n = int((v["quantity"] == "retention.forgetting").sum())
    return (f"forgetting verdicts (seed-aware, lower is better): {n} pair(s), {c['better'] + c['worse']} "
            f"forgets less/more after Holm, {c['equivalent']} equivalent, {c['undecided']} undecided, "
            f"{c[ONE_SEED]} with one seed on a side; see retention.md")


def chance_line(agg: Aggregation) -> str:
    """One line: how many cells beat the best constant predictor, which tasks carry no verdict, collapses."""
    ch = agg.chance
    if ch is None or ch.empty:
        return "against chance: not tested (no per-example predictions)"
    n_col = int((agg.cells.get("collapsed_seeds", 0) > 0).sum()) if "collapsed_seeds" in agg.cells else 0
    none = ", ".join(f"{m}/{t}" for m, t in sorted(agg.no_verdict)) or "none"
    return (f"against chance: {int(ch['above_chance'].astype(bool).sum())} of {len(ch)} cell(s) above the best "
            f"constant predictor (†: not above); tasks without a verdict: {none}; {n_col} cell(s) with collapsed seeds")


def summary_text(report: Report) -> str:
    """Short terminal summary: models, record counts, compact main tables, where the report is."""
    from .tables import compact_table, to_text

    agg = report.agg
    counts = agg.records["status"].value_counts()
    n_fail = int(counts.get("failed", 0) + counts.get("interrupted", 0))
    lines = [f"Report {report.name!r}: models {', '.join(agg.models)}",
             (f"records: {int(counts.get('ok', 0))} ok, {n_fail} failed/interrupted, {len(report.bad)} unreadable"
              f"; {len(agg.failures())} grid cell(s) without an ok record; {len(agg.conflicts)} conflict(s)"
              + (f"; {len(agg.trials)} learning-rate trial record(s) (budget curves only)" if len(agg.trials) else "")),
             *bad_record_lines(report.bad, "  unreadable (ignored): "), pairwise_line(agg), chance_line(agg)]
    lines += [line for line in (retention_line(agg),) if line] + [""]
    for model in agg.models:
        lines += [f"[{model}] headline x100 (mean over seeds)", to_text(compact_table(agg, model)), ""]
    lines.append(f"written to {report.index.parent}/ (open {report.index})")
    return "\n".join(lines)
