"""Seed-level verdicts re-read from a report's main table, for measured tables whose records were not kept.

A report's main table gives, per method and task, the mean over n seeds and the 95 % t interval over
them (mean ± t(n-1) * s / sqrt(n)), so each method's seed standard error is recoverable:
se = half-width / t(n-1). Two methods are then compared as the harness compares one value per seed on
unpaired seed sets (`seed_level.seed_difference`'s Welch branch): delta / sqrt(se_a² + se_b²) against Student's
t with Welch-Satterthwaite df, TOST against the metric's margin (`equivalence.MARGINS`), Holm over each task's
pairs, the four outcomes (`multiple_comparisons.outcome`). What it cannot do: pair seed k with seed k, or add the
example level (the per-example predictions are not in a table), so it is the seed-level test alone.

    python -m benchmarks.seed_verdicts_from_table docs/study.md --seeds 3
"""
from __future__ import annotations

import argparse
import itertools
import re
import sys
from pathlib import Path

import scipy.stats as sps

from bench.analysis.equivalence import margin_for
from bench.analysis.multiple_comparisons import holm, outcome
from bench.analysis.seed_level import studentised, welch

CELL = re.compile(r"\*{0,2}(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]\*{0,2}")
METRICS = {"acc": "accuracy", "f1": "f1", "pearson": "pearson", "mcc": "matthews_correlation"}


def main_table(text: str) -> tuple[list[str], dict[str, dict[str, tuple[float, float, float]]]]:
    """The first markdown table whose header starts with `| method |`: column names and
    {method: {column: (mean, low, high)}} for the cells written as `mean [low, high]`."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| method |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = {h: tuple(map(float, m.groups())) for h, c in zip(header[1:], cells[1:])
                          if (m := CELL.fullmatch(c))}
    return header[1:], rows


def verdicts(rows: dict, column: str, seeds: int) -> list[dict]:
    """Every pair of methods on one column, Holm over the column's pairs."""
    unit = re.search(r"\((\w+)\)", column)
    if unit is None or unit.group(1).lower() not in METRICS:  # not a metric column (avg, counts, memory)
        return []
    name = METRICS[unit.group(1).lower()]
    margin, tq = margin_for(name), sps.t.ppf(0.975, seeds - 1)
    have = [m for m in rows if column in rows[m]]
    out = []
    for a, b in itertools.combinations(have, 2):
        (ma, la, ha), (mb, lb, hb) = rows[a][column], rows[b][column]
        # the table's t interval gives each mean's standard error: s/√k = half-width / t
        sa, sb = (ha - la) / 2 / tq / 100, (hb - lb) / 2 / tq / 100
        se, df = welch(sa * sa * seeds, seeds, sb * sb * seeds, seeds)
        low, high, p, _, _, p_eq = studentised((ma - mb) / 100, se, df, margin)
        out.append({"a": a, "b": b, "delta": (ma - mb) / 100, "low": low, "high": high, "p": p, "p_eq": p_eq,
                    "df": df})
    for key in ("p", "p_eq"):
        for row, adj in zip(out, holm([r[key] for r in out])):
            row[f"{key}_holm"] = float(adj)
    for r in out:
        r["verdict"] = outcome(r["p_holm"], r["low"], r["high"], r["delta"], r["p_eq_holm"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("markdown", type=Path)
    ap.add_argument("--seeds", type=int, required=True, help="seeds behind every mean of the table")
    a = ap.parse_args(argv)
    columns, rows = main_table(a.markdown.read_text())
    for column in columns:
        found = verdicts(rows, column, a.seeds)
        if not found:
            continue
        counts = {v: sum(r["verdict"] == v for r in found) for v in ("better", "worse", "equivalent", "undecided")}
        print(f"\n{column}: {len(found)} pairs, Holm over them; " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        print("| A vs B | A − B (×100) | 95 % interval | df | p (Holm) | TOST p (Holm) | verdict |")
        print("|---|---:|---|---:|---:|---:|---|")
        for r in found:
            print(f"| {r['a']} vs {r['b']} | {100 * r['delta']:+.1f} | [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}] "
                  f"| {r['df']:.1f} | {r['p_holm']:.3g} | {r['p_eq_holm']:.3g} | {r['verdict']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
