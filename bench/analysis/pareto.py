"""Pareto frontier of (cost, quality) points: the methods nobody should ignore.

Kept separate from the report so that plots, tables and any later "which method wins" logic use one
definition of dominance. Conventions: x is a cost (minimised, e.g. trainable parameters), y a
quality (maximised, e.g. dev metric); either direction can be flipped.

A point is dominated when another point is at least as good on both axes and strictly better on
one. Identical points do not dominate each other, so ties are all on the frontier. Points with a
NaN or infinite coordinate are never on it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pareto_frontier(points: Iterable[Sequence[float]], *, minimize_x: bool = True,
                    maximize_y: bool = True) -> list[int]:
    """Indices of the non-dominated points, ordered along the frontier (best x first).

    `points` are (x, y) pairs (extra items per point are ignored, so (x, y, label) works).
    Order: ascending x when minimising x (descending otherwise); identical points keep input order.
    O(n log n).
    """
    sx = 1.0 if minimize_x else -1.0
    sy = -1.0 if maximize_y else 1.0
    keyed = []
    for i, p in enumerate(points):
        x, y = float(p[0]), float(p[1])
        if math.isfinite(x) and math.isfinite(y):
            keyed.append((sx * x, sy * y, i))  # both coordinates now "smaller is better"
    keyed.sort()
    frontier: list[int] = []
    best = None  # (x, y) of the last frontier point in normalised coordinates
    for x, y, i in keyed:
        if best is None or y < best[1] or (x, y) == best:
            frontier.append(i)
            best = (x, y)
    return frontier


def is_dominated(a: Sequence[float], b: Sequence[float], *, minimize_x: bool = True,
                 maximize_y: bool = True) -> bool:
    """True when point `b` dominates point `a` (reference definition, used by the tests)."""
    sx = 1.0 if minimize_x else -1.0
    sy = -1.0 if maximize_y else 1.0
    ax, ay, bx, by = sx * a[0], sy * a[1], sx * b[0], sy * b[1]
    return bx <= ax and by <= ay and (bx < ax or by < ay)
