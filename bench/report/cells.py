"""One metric's cell in a report table (`mean [low, high]` x100, its status): used by the main tables
(bench/report/tables.py) and the chance tables (bench/report/chance_tables.py) alike."""
from __future__ import annotations

import math
import numbers

import pandas as pd


def _isnum(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def fmt_metric(mean, std, n, low=None, high=None) -> str:
    """x100, one decimal; `mean [low, high]` when an interval exists, else ± std when n > 1."""
    if not _isnum(mean):
        return "–"
    text = f"{100 * mean:.1f}"
    if _isnum(low) and _isnum(high):
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    elif n > 1 and _isnum(std):
        text += f" ± {100 * std:.1f}"
    return text


def metric_cell(cell: pd.Series | None, q: str) -> tuple[str, str]:
    """(text, status) of one metric in one (model, method, task) cell."""
    if cell is None:
        return "missing", "missing"
    status = cell["status"]
    if status in ("failed", "missing"):
        return status, status
    n = int(cell.get(f"{q}_n", 0))
    if n == 0:
        return "–", "ok"
    text = fmt_metric(cell[f"{q}_mean"], cell[f"{q}_std"], n, cell.get(f"{q}_ci_low"), cell.get(f"{q}_ci_high"))
    if n < cell["n_seeds"]:
        text += f" (n={n}/{cell['n_seeds']})"
        return text, "partial"
    return text, "ok"
