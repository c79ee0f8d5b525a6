"""bench.analysis.pareto: hand-made cases with known answers, plus a brute-force cross-check."""
from __future__ import annotations

import math
import random

from bench.analysis.pareto import is_dominated, pareto_frontier


def brute_force(points, **kw):
    ok = [i for i, p in enumerate(points) if all(math.isfinite(v) for v in p[:2])]
    return {i for i in ok if not any(is_dominated(points[i], points[j], **kw) for j in ok if j != i)}


def test_hand_made_example_with_ties_and_dominated_points():
    # (trainable params, metric): minimise params, maximise metric.
    pts = [
        (100, 0.80),   # 0 frontier: cheapest
        (200, 0.85),   # 1 frontier
        (200, 0.85),   # 2 frontier: identical to 1, ties are kept
        (200, 0.84),   # 3 dominated by 1 (same cost, worse metric)
        (300, 0.85),   # 4 dominated by 1 (same metric, more cost)
        (150, 0.79),   # 5 dominated by 0
        (1000, 0.90),  # 6 frontier: best metric
        (2000, 0.90),  # 7 dominated by 6
        (50, float("nan")),  # 8 never on the frontier
    ]
    assert pareto_frontier(pts) == [0, 1, 2, 6]


def test_order_is_along_the_frontier_and_extra_items_are_ignored():
    pts = [(1000, 0.9, "full"), (10, 0.7, "bitfit"), (100, 0.8, "lora"), (50, 0.6, "worse")]
    idx = pareto_frontier(pts)
    assert [pts[i][2] for i in idx] == ["bitfit", "lora", "full"]


def test_flipped_directions():
    pts = [(1, 1), (2, 2), (3, 1)]
    assert pareto_frontier(pts) == [0, 1]
    assert pareto_frontier(pts, minimize_x=False) == [2, 1]  # maximise both: (3, 1) and (2, 2)
    assert pareto_frontier(pts, maximize_y=False) == [0]  # minimise both: (1, 1) dominates
    assert pareto_frontier(pts, minimize_x=False, maximize_y=False) == [2]


def test_degenerate_inputs():
    assert pareto_frontier([]) == []
    assert pareto_frontier([(1, 2)]) == [0]
    assert pareto_frontier([(float("inf"), 1.0), (1.0, float("nan"))]) == []


def test_matches_brute_force_on_random_points_with_many_ties():
    rng = random.Random(0)
    for trial in range(200):
        pts = [(rng.randint(1, 6), rng.randint(1, 6)) for _ in range(rng.randint(1, 25))]
        for kw in ({}, {"minimize_x": False}, {"maximize_y": False}):
            got = pareto_frontier(pts, **kw)
            assert set(got) == brute_force(pts, **kw), (trial, pts, kw)
            assert len(got) == len(set(got))
