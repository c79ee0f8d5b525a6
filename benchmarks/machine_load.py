"""How much of the CPU *other* processes used while a benchmark measured something: the benchmark
scripts' name for bench.measure.timing.ForeignCPU (which the peak-FLOP/s measurement also uses)."""
from __future__ import annotations

from bench.measure.timing import ForeignCPU

__all__ = ["ForeignCPU"]
