"""Chance in the display tables: the trivial-baseline rows, the marks of cells not above
chance or collapsed, the `vs chance` column and the table a task without a verdict shows.

Kept apart from tables.py so that the chance layer's display is one short place; the numbers come
from bench/report/chance.py (through the cells' chance columns and Aggregation.baselines).
"""
from __future__ import annotations

import math
import numbers

import pandas as pd

from bench.analysis.aggregate import Aggregation

from .cells import fmt_metric, metric_cell
from .render import Table


def _isnum(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def not_above(v) -> bool:
    """True only for a tested cell that is not above chance (None/NaN: not tested)."""
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and not bool(v)


def chance_marks(cell: pd.Series | None, q: str) -> str:
    """' †' when the cell is not above chance (headline only), ' (collapsed k/N)' when seeds collapsed."""
    if cell is None:
        return ""
    out = " †" if q == "headline" and not_above(cell.get("above_chance")) else ""
    k = cell.get("collapsed_seeds")
    if q == "headline" and _isnum(k) and k > 0:
        out += f" (collapsed {int(k)}/{int(cell['n_ok'])})"
    return out


def baseline_cell(row: pd.Series | None, q: str) -> str:
    """A trivial baseline's score ×100: `score [low, high]` for a randomised one, 'undefined' where a
    metric does not exist for it (a correlation of a constant), '–' where the baseline does not apply."""
    if row is None:
        return "–"
    mean = row.get(f"{q}_mean")
    if not _isnum(mean):
        return "undefined" if row.get("chance_note") else "–"
    lo, hi = row.get(f"{q}_ci_low"), row.get(f"{q}_ci_high")

    return fmt_metric(mean, None, 1, lo, hi) if _isnum(lo) and _isnum(hi) and lo != hi else fmt_metric(mean, None, 1)


def add_baseline_rows(table: Table, agg: Aggregation, model: str, tcols) -> None:
    """The trivial baselines under the methods: task columns only, the rest '–'."""
    base = agg.baselines
    if base is None or base.empty:
        return
    base = base[base["model"] == model]
    by = {(r["method_label"], r["task"]): r for _, r in base.iterrows()}
    for name in dict.fromkeys(base["method_label"]):
        row = [name] + [baseline_cell(by.get((name, task)), q) for task, q, _ in tcols]
        row += ["–"] * (len(table.header) - len(row))
        table.rows.append(row)
        table.status.append([""] * len(row))


def chance_text(c) -> str:
    """'above +12.3 (p=0.001)' / 'not above +0.2 (p=1)' from a cell's chance columns, '–' untested."""
    a = c.get("above_chance")
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return "–"
    a = bool(a)
    return (f"{'above' if a else 'not above'} {100 * c.get('chance_delta') + 0.0:+.1f} vs {c.get('chance_baseline')} "
            f"(p={c.get('chance_p_adjusted'):.3g})")


def _chance_of(agg: Aggregation, model: str, task: str) -> dict[str, str]:
    """{method_label: 'above +x (p=..)' / 'not above ... †'} of one task's cells."""
    cells = agg.cells[(agg.cells["model"] == model) & (agg.cells["task"] == task)]
    return {c["method_label"]: chance_text(c) + (" †" if not_above(c.get("above_chance")) else "")
            for _, c in cells.iterrows()}


def no_verdict_table(agg: Aggregation, model: str, task: str, methods: list[str], chance_of: dict) -> Table:
    """What a task without a verdict shows instead of the matrix: each method against chance."""

    cells = agg.cells[(agg.cells["model"] == model) & (agg.cells["task"] == task)].set_index("method_label")
    why = agg.no_verdict[(model, task)]
    t = Table(f"Pairwise verdicts: {model} / {task}: {why}",
              f"No verdict between methods: {why}. Each method against the best constant predictor (paired bootstrap, "
              "seeds pooled, Holm over the task's methods); the pairwise tests are in pairwise.csv but say nothing "
              "about methods that did not learn the task.", ["method", "headline ×100", "vs chance"])
    for m in methods:
        c = cells.loc[m] if m in cells.index else None
        t.rows.append([m, metric_cell(c, "headline")[0] + chance_marks(c, "headline"), chance_of.get(m, "–")])
        t.status.append(["", "", ""])
    return t
