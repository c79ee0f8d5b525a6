"""Metric entry point: every score the benchmark reports goes through the local evaluate module.

The module is loaded from `bench/data/metrics/glue_metric/` by path (never from the hub) and cached,
because `evaluate.load` copies and imports the script each time it is called.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODULE_DIR = Path(__file__).resolve().parent / "glue_metric"
KNOWN_METRICS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")


@functools.lru_cache(maxsize=1)
def load_metric_module():
    import evaluate

    # keep_in_memory: no Arrow cache files or lock files, so parallel sweep workers cannot collide.
    return evaluate.load(str(MODULE_DIR), keep_in_memory=True)


def compute_metrics(names: Sequence[str], predictions, references) -> dict[str, float]:
    """Compute the named metrics; values are plain floats on a 0-1 scale (see glue_metric.py)."""
    names = list(names)
    unknown = [n for n in names if n not in KNOWN_METRICS]
    if not names or unknown:
        raise ValueError(f"metric names must be a non-empty list from {list(KNOWN_METRICS)}; got {names}")
    predictions = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    if predictions.ndim != 1 or references.ndim != 1:
        raise ValueError("predictions and references must be 1-d (class indices or scores, not logits)")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    result = load_metric_module().compute(predictions=predictions, references=references, metrics=names)
    return {k: float(result[k]) for k in names}
