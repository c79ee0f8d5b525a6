"""Baselines and a regression gate over result records (docs/regress.md).

`python -m bench.regress save RESULTS_DIR --name NAME` stores a sweep's aggregated cells in
results/baselines/NAME.json; `check --baseline NAME RESULTS_DIR` gates a candidate sweep against it
(exit 0 pass, 1 regressed, 2 unusable input); `compare --method NEW RESULTS_DIR` places a new
method against the others of its sweep. Reads records only, never runs anything.
"""
from __future__ import annotations

from .baseline import load_baseline, make_baseline, write_baseline
from .cells import UnusableInput, load_results, summarize
from .check import Settings, run_check

__all__ = ["Settings", "UnusableInput", "load_baseline", "load_results", "make_baseline", "run_check",
           "summarize", "write_baseline"]
