"""CLI: `python -m bench.regress {save,check,compare}` (docs/regress.md).

Exit status: 0 nothing regressed / done; 1 something regressed (the cells are named); 2 unusable
input (missing or malformed baseline or results folder: one line naming the file and the problem).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.records import schema as R

from .baseline import (
    DEFAULT_DIR,
    DIRECTIONS,
    baseline_predictions,
    load_baseline,
    make_baseline,
    write_baseline,
)
from .cells import RETENTION, UnusableInput, load_results, summarize
from .check import Settings, format_details, format_table, run_check
from .paired import DESIGNS
from .predictions import load_side_file, run_paired

PROG = "python -m bench.regress"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Baselines and a regression gate over result records.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="aggregate a sweep's records into results/baselines/NAME.json")
    s.add_argument("results_dir", type=Path, help="folder with result records (searched recursively)")
    s.add_argument("--name", required=True, help="baseline name (file NAME.json)")
    s.add_argument("--out", type=Path, default=DEFAULT_DIR, help=f"folder for the baseline (default {DEFAULT_DIR})")
    s.add_argument("--direction", choices=DIRECTIONS, default="higher",
                   help="the gate's default: 'higher' = only metric drops regress; 'both' = any change beyond the "
                        "tolerance (for random-weight models, whose metrics have no better direction)")
    s.add_argument("--allow-failed", action="store_true",
                   help="leave cells without an ok record out instead of refusing")
    s.add_argument("--no-predictions", action="store_true",
                   help="do not store per-example predictions (NAME.predictions.json.gz); the paired test is then off")
    c = sub.add_parser("check", help="gate a candidate sweep against a baseline (exit 1 when something regressed)")
    c.add_argument("results_dir", type=Path, help="candidate records (searched recursively)")
    c.add_argument("--baseline", required=True, help="baseline name (in --baselines-dir) or path to a .json")
    c.add_argument("--baselines-dir", type=Path, default=DEFAULT_DIR)
    c.add_argument("--k", type=float, default=3.0, help="metric tolerance in pooled standard deviations (default 3)")
    c.add_argument("--floor", type=float, default=0.01, help="smallest metric tolerance, 0-1 scale (default 0.01)")
    c.add_argument("--rel-tol", type=float, default=0.25, help="memory/throughput relative tolerance (default 0.25)")
    c.add_argument("--direction", choices=DIRECTIONS, help="override the baseline's direction")
    c.add_argument("--exclude", action="append", default=[], metavar="CELL_GLOB",
                   help="skip cells model/method_label/task matching this glob (* and ? only); repeatable")
    c.add_argument("--allow-param-change", action="append", default=[], metavar="METHOD_LABEL",
                   help="accept a changed trainable-parameter count for this method label (glob); repeatable")
    c.add_argument("--report-only", action="append", default=[], choices=("memory", "throughput"),
                   help="show but do not gate this measurement (e.g. throughput on a shared machine); repeatable")
    c.add_argument("--alpha", type=float, default=0.05,
                   help="paired test: family-wise level, Holm-corrected across cells (default 0.05)")
    c.add_argument("--min-effect", type=float, default=0.005,
                   help="paired test: smallest headline change that can fail, 0-1 scale (default 0.005)")
    c.add_argument("--no-paired", action="store_true", help="skip the paired per-example test")
    c.add_argument("--gate-on", action="append", default=[], choices=RETENTION, metavar="QUANTITY",
                   help="also gate this retention quantity (lower is better): the metric tolerance, and the "
                        "seed-aware test where both sides have >= 2 seeds: "
                        f"{', '.join(RETENTION)}; repeatable (docs/retention.md)")
    c.add_argument("--n-boot", type=int, default=2000, help="paired test: bootstrap resamples (default 2000)")
    c.add_argument("--paired-design", choices=DESIGNS, default="seeds+examples",
                   help="paired test's standard error: seeds+examples (default), seeds (more power, no "
                        "example term), examples (ignores seed spread: for measurement only, see docs/regress.md), "
                        "two-level (the report's seed-aware bootstrap: seeds, then examples)")
    m = sub.add_parser("compare", help="place a new method against the other methods of the same sweep")
    m.add_argument("results_dir", type=Path)
    m.add_argument("--method", required=True, help="method name or method_label (glob) of the new method")
    return ap


def _bad_lines(bad) -> list[str]:
    return R.bad_record_lines(bad)


def cmd_save(a) -> int:
    records, bad = load_results(a.results_dir)
    doc, dropped = make_baseline(records, a.name, str(a.results_dir), a.direction, a.allow_failed)
    preds, pred_lines = ({}, []) if a.no_predictions else baseline_predictions(records, doc)
    path = write_baseline(doc, a.out, preds)
    for line in _bad_lines(bad) + pred_lines:
        print(line)
    for cid in dropped:
        print(f"left out (no ok record): {cid}")
    envs = "; ".join(f"{e['device']}, {e['cpu_model']}, {e['torch_threads']} thread(s), torch {e['torch']}"
                     for e in doc["environments"])
    print(f"saved {len(doc['cells'])} cell(s) from {len(records)} record(s) to {path} "
          f"(direction {doc['direction']}; environment: {envs})")
    if preds:
        ref = doc["predictions"]
        print(f"stored per-example predictions of {ref['n_cells']} cell(s) in {path.parent / ref['file']} "
              f"({ref['bytes'] / 1024:.1f} KiB)")
    return 0


def cmd_check(a) -> int:
    baseline, bpath = load_baseline(a.baseline, a.baselines_dir)
    for name in ("k", "floor", "rel_tol", "min_effect"):
        if getattr(a, name) < 0:
            raise UnusableInput(f"--{name.replace('_', '-')} {getattr(a, name)}: expected a number >= 0")
    if not 0 < a.alpha < 1 or a.n_boot < 100:
        raise UnusableInput(f"--alpha {a.alpha} / --n-boot {a.n_boot}: expected 0 < alpha < 1 and n-boot >= 100")
    stored = None if a.no_paired else load_side_file(baseline, bpath)
    records, bad = load_results(a.results_dir)
    cells, facts = summarize(records)
    st = Settings(k=a.k, floor=a.floor, rel_tol=a.rel_tol, direction=a.direction or baseline["direction"],
                  exclude=a.exclude, allow_param_change=a.allow_param_change, report_only=a.report_only,
                  alpha=a.alpha, min_effect=a.min_effect, n_boot=a.n_boot,
                  design=a.paired_design, gate_on=a.gate_on)
    paired = run_paired(baseline, stored, cells, st)
    results = run_check(baseline, cells, st, paired)
    src = baseline.get("source") or {}
    print(f"baseline:  {baseline.get('name')} ({bpath}; {len(baseline['cells'])} cells, saved "
          f"{baseline.get('created_at')}, commit {', '.join(c[:8] for c in src.get('git_commits', []))})")
    nc = facts["n_conflicts"]
    conflicts = f", {nc} seed cell(s) with several records (newest kept)" if nc else ""
    print(f"candidate: {a.results_dir} ({len(records)} records, {len(bad)} unreadable{conflicts})")
    for line in _bad_lines(bad):
        print(f"           {line}")
    print(f"rules:     metric delta within max(floor {st.floor:g}, {st.k:g} x pooled std), direction {st.direction}; "
          f"trainable params exact; memory/throughput within {st.rel_tol:.0%} when the environment matches"
          + (f" (report only: {', '.join(st.report_only)})" if st.report_only else ""))
    if a.no_paired:
        print("paired:    off (--no-paired)")
    elif stored is None:
        print("paired:    not available: the baseline stores no per-example predictions "
              "(re-save it from schema-2 records)")
    else:
        print(f"paired:    headline metric per example on common ids, {len(paired[0])} cell(s) tested; "
              f"fails when Holm p < {st.alpha:g} ({'one-sided, drops' if st.direction == 'higher' else 'two-sided'})"
              f" and |delta| > {st.min_effect:g}; se from {st.design}")
    print()
    print(format_table(results))
    details = format_details(results)
    if details:
        print()
        print(details)
    for line in _bad_lines(bad):
        print(line)
    failing = [r.cid for r in results if r.verdict in ("REGRESSED", "FAILED", "MISSING")]
    gated = sum(r.verdict not in ("excluded", "new") for r in results)
    print()
    if failing:
        print(f"gate: FAIL: {len(failing)} of {gated} cell(s) regressed: {', '.join(failing)}")
        return 1
    print(f"gate: PASS: {gated} cell(s) within tolerance"
          + (f" ({sum(r.verdict == 'excluded' for r in results)} excluded)" if a.exclude else ""))
    return 0


def cmd_compare(a) -> int:
    from .compare import compare

    records, bad = load_results(a.results_dir)
    text, _ = compare(records, a.method)
    print(text)
    for line in _bad_lines(bad):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return {"save": cmd_save, "check": cmd_check, "compare": cmd_compare}[a.cmd](a)
    except UnusableInput as exc:
        print(f"{PROG} {a.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
