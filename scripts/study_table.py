"""Tables of a tuning study (`make study`): the selected learning rate per method and task, every
trial's selection-split score, and the tuned default rate per method.

    python -m scripts.study_table results/study [--out docs/study_tables.md]

The tuned default of a method is the grid rate with the best *mean selection-split score over the
study's tasks* (every task of a method shares one grid, so the means compare like with like); the
reported split plays no part. Reads the study's `selected/*.json` summaries, nothing else.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def load(folder: Path) -> list[dict]:
    files = sorted((folder / "selected").glob("*.json"))
    if not files:
        sys.exit(f"{folder}/selected: no study summaries (run `make study` first)")
    return [json.loads(p.read_text()) for p in files]


def _fmt(v) -> str:
    return "failed" if v is None else f"{100 * v:.1f}"


def tables(rows: list[dict]) -> str:
    out = []
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (TASKS.index(t) if t in TASKS else 99, t))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["task"]): r for r in rows}
    out.append("### Selected learning rate per method and task (best selection-split score)\n")
    out.append("| method | " + " | ".join(tasks) + " |")
    out.append("|:---|" + "---:|" * len(tasks))
    for m in methods:
        out.append(f"| {m} | " + " | ".join(f"{by[m, t]['selected_lr']:g}" if (m, t) in by else "-" for t in tasks)
                   + " |")
    out.append("\n### Every trial: selection-split selection score ×100 per learning rate (the task's select_metric, default its headline)\n")
    for m in methods:
        grid = next(r["grid"] for r in rows if r["method"] == m)
        out.append(f"**{m}**\n")
        out.append("| task | " + " | ".join(f"{g:g}" for g in grid) + " |")
        out.append("|:---|" + "---:|" * len(grid))
        for t in tasks:
            if (m, t) in by:
                out.append(f"| {t} ({by[m, t]['headline']}) | " + " | ".join(_fmt(v) for v in by[m, t]["scores"]) + " |")
        out.append("")
    out.append("### Tuned default rate per method (best mean selection score over the study's tasks)\n")
    out.append("| method | tuned default | mean selection score ×100 | tasks | grid |")
    out.append("|:---|---:|---:|:---|:---|")
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        grid = mine[0]["grid"]
        means = []
        for i in range(len(grid)):
            vals = [r["scores"][i] for r in mine]
            means.append(None if any(v is None for v in vals) else sum(vals) / len(vals))
        best = max((i for i in range(len(grid)) if means[i] is not None), key=lambda i: means[i], default=None)
        if best is None:
            out.append(f"| {m} | - | every rate failed on some task | | |")
            continue
        out.append(f"| {m} | {grid[best]:g} | {100 * means[best]:.1f} | {', '.join(r['task'] for r in mine)} | "
                   f"{grid[0]:g} .. {grid[-1]:g} ({len(grid)} rates) |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = tables(load(args.study))
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
