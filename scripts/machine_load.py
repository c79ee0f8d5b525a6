"""How much of the CPU *other* processes used while a benchmark measured something.

On a shared machine a timing taken while others used the cores is not trustworthy (two OpenMP
processes on 2 cores can slow each other down many times over), so every timing the benchmark
scripts print carries this figure.
"""
from __future__ import annotations

import os
import resource
import time


def _busy_s() -> float:
    """CPU seconds that all processes on this machine spent busy so far (/proc/stat)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class ForeignCPU:
    """CPU used by *other* processes while a measurement ran: `seconds` (core-seconds) and `frac`
    (of the machine's capacity over the wall time). On a shared machine a timing taken while
    others used the cores is not trustworthy (two OpenMP processes on 2 cores can slow each
    other down many times over), so every timing printed here carries this figure."""

    def __enter__(self):
        self.b0, self.o0, self.t0 = _busy_s(), _own_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        self.seconds = max(0.0, (_busy_s() - self.b0) - (_own_s() - self.o0))
        self.frac = self.seconds / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0
        return False
