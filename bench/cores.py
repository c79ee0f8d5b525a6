"""How many CPU cores this process may run on: the CPUs of its affinity mask (taskset, a batch system's
cpuset, a container's limit), not the machine's count, so `train.threads=auto` and the parallel
launcher's split never start more threads than the process has cores; `os.cpu_count()` where the
platform has no affinity call."""
from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_1min() -> float | None:
    """The machine's 1-minute load average (None where the platform has none): what else ran beside a timing."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
