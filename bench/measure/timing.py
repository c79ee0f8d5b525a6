"""Step timing (warm-up excluded, evaluation never inside a timed step) and the CPU others used meanwhile.

Why it keeps shapes too: the FLOP count of exactly the timed work (bench/measure/flops.py) needs the
rows and padded widths of the same steps; and a timing taken while other processes used the cores is
not trustworthy, so timings carry ForeignCPU's figure."""
from __future__ import annotations

import os
import resource
import time
from contextlib import contextmanager

import torch

from bench.device import sync


class StepTimer:
    """Accumulates time of optimizer steps after the first `skip` ones (warm-up: allocator growth,
    lazy init, first-call kernels). Evaluation is never inside a timed step.

    It also keeps what the steps held, timed and all: rows, padded tokens and the sum of squared
    padded widths, from which bench/measure/flops.py counts the model FLOPs of exactly the timed work."""

    def __init__(self, device: torch.device, skip: int):
        self.device, self.skip = device, skip
        self.steps = 0
        self.timed_steps = 0
        self.seconds = 0.0
        self.samples = 0
        self.tokens = 0
        self.padded_tokens = 0
        self.padded_squares = 0
        self.all_samples = self.all_padded_tokens = self.all_padded_squares = 0
        self._t0 = 0.0

    @contextmanager
    def step(self, samples: int, tokens: int, padded_tokens: int, padded_squares: int = 0):
        sync(self.device)
        t0 = time.perf_counter()
        yield
        sync(self.device)
        dt = time.perf_counter() - t0
        self.steps += 1
        self.all_samples += samples
        self.all_padded_tokens += padded_tokens
        self.all_padded_squares += padded_squares
        if self.steps > self.skip:
            self.timed_steps += 1
            self.seconds += dt
            self.samples += samples
            self.tokens += tokens
            self.padded_tokens += padded_tokens
            self.padded_squares += padded_squares

    COUNTS = ("steps", "timed_steps", "seconds", "samples", "tokens", "padded_tokens", "padded_squares",
              "all_samples", "all_padded_tokens", "all_padded_squares")

    def state(self) -> dict:
        """The counts so far (a cell's checkpoint, bench/training/checkpoint.py)."""
        return {k: getattr(self, k) for k in self.COUNTS}

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's counts; the next `skip` steps are a new warm-up (a fresh process:
        allocator, lazy init, first-call kernels again), left out of the timing like the first ones."""
        for k in self.COUNTS:
            setattr(self, k, state[k])
        self.skip = self.steps + self.skip

    def as_dict(self) -> dict:
        s = self.seconds
        return {
            "train_samples_per_s": self.samples / s if s > 0 else None,
            "train_tokens_per_s": self.tokens / s if s > 0 else None,
            "train_padded_tokens_per_s": self.padded_tokens / s if s > 0 else None,
            "warmup_steps_excluded": self.steps - self.timed_steps,
            "timed_steps": self.timed_steps,
        }


def _machine_busy_s() -> float | None:
    """CPU seconds every process on this machine spent busy so far (/proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class ForeignCPU:
    """CPU used by *other* processes while something was measured: `seconds` (core-seconds) and
    `frac` (of the machine's capacity over the wall time; None where /proc/stat is missing). On a
    shared machine a timing taken while others used the cores is not trustworthy (two OpenMP
    processes on 2 cores can slow each other down many times over), so timings carry this figure."""

    def __enter__(self):
        self.b0, self.o0, self.t0 = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        b1 = _machine_busy_s()
        if self.b0 is None or b1 is None:
            self.seconds = self.frac = None
            return False
        self.seconds = max(0.0, (b1 - self.b0) - (_own_cpu_s() - self.o0))
        self.frac = self.seconds / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0
        return False
