"""Assemble docs/study.md from a finished study: its report (reports/study) and its tables.

    python -m scripts.study_docs results/study reports/study docs/study.md --wall "..."

Copies the report's main table (mean [95% CI]), the pairwise verdict matrices and the budget-curve
plot, and appends scripts/study_table.py's selected-rate, trial and tuned-default tables, so the
numbers in docs/ are the report's own, never retyped.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from scripts.study_table import load, tables


def section(md: str, start: str, stop: str | None) -> str:
    i = md.find(start)
    if i < 0:
        return ""
    j = md.find(stop, i + len(start)) if stop else -1
    return md[i:j if j >= 0 else None].strip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--wall", default="")
    ap.add_argument("--intro", default="")
    args = ap.parse_args()
    md = (args.report / "table.md").read_text()
    main_table = section(md, "### Main results", "## Pairwise verdicts")
    verdicts = section(md, "## Pairwise verdicts", "### Failed or missing runs")
    plots = sorted((args.report / "plots").glob("*budget_curves.png"))
    assets = args.out.parent / "study"
    assets.mkdir(parents=True, exist_ok=True)
    img = ""
    if plots:
        shutil.copy(plots[0], assets / "budget_curves.png")
        img = "![expected best selection score vs number of trials](study/budget_curves.png)\n"
    parts = ["# The default study (`make study`): measured\n", args.intro + "\n" if args.intro else "",
             f"Wall time: {args.wall}\n" if args.wall else "",
             "## Final runs (selected rate, 3 seeds): dev metric with 95 % interval\n", main_table,
             verdicts, "## Budget curves (learning-rate trials, selection split)\n", img,
             "Data: `budget.csv` in the report folder.\n", "## Selected rates, every trial, tuned defaults\n",
             tables(load(args.results))]
    args.out.write_text("\n".join(p for p in parts if p))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
