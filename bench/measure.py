"""Measurements: parameter counts, peak memory, step timing, storage size.

Each function documents what it counts, because the same words mean different numbers in
different papers.
"""
from __future__ import annotations

import os
import resource
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

HEAD_COUNTING = (
    "trainable includes the task head (dropout + linear, H*C + C); trainable_excl_head is the method "
    "alone, as the LoRA/adapter papers count it; total = backbone (+ method additions) + head; "
    "the unused BERT pooler is not built unless model.pooling=pooler"
)


def count_params(model: nn.Module) -> dict:
    """Unique parameters (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)  # 4-bit: two values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    head = sum(p.numel() for p in model.head.parameters())
    return {
        "trainable": trainable,
        "total": total,
        "head": head,
        "trainable_excl_head": trainable - head,
        "trainable_pct": 100.0 * trainable / total if total else 0.0,
        "counting": HEAD_COUNTING,
    }


# ---------------------------------------------------------------------------------------------
# Memory


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss() -> int:
    rss = _status_kb("VmRSS")
    if rss is not None:
        return rss
    import psutil

    return psutil.Process().memory_info().rss


def _reset_hwm() -> bool:
    """Linux: writing 5 to clear_refs resets the peak-RSS high-water mark (VmHWM) to the current
    RSS, so the peak of *this* phase is read exactly, not the process's lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak resident memory of the process (and CUDA peaks) over a `with` block.

    Uses the kernel's own high-water mark where it can be reset (Linux); elsewhere samples RSS
    every 2 ms in a thread (can miss spikes shorter than that; `rss_method` says which was used).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline_rss = 0
        self.peak_rss = 0
        self.method = ""
        self.cuda_allocated = None
        self.cuda_reserved = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.baseline_rss = current_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if _reset_hwm():
            self.method = "VmHWM (kernel peak RSS, reset via /proc/self/clear_refs before training)"
        else:
            self.method = "sampled RSS every 2 ms"
            self._sampled = self.baseline_rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self._sampled = max(self._sampled, current_rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.cuda_allocated = int(torch.cuda.max_memory_allocated(self.device))
            self.cuda_reserved = int(torch.cuda.max_memory_reserved(self.device))
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_rss = max(self._sampled, current_rss())
        else:
            self.peak_rss = _status_kb("VmHWM") or current_rss()
        return False

    def as_dict(self) -> dict:
        return {
            "peak_rss_bytes": int(self.peak_rss),
            "baseline_rss_bytes": int(self.baseline_rss),
            "rss_method": self.method,
            "cuda_peak_allocated_bytes": self.cuda_allocated,
            "cuda_peak_reserved_bytes": self.cuda_reserved,
        }


# ---------------------------------------------------------------------------------------------
# Time


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Accumulates time of optimizer steps after the first `skip` ones (warm-up: allocator growth,
    lazy init, first-call kernels). Evaluation is never inside a timed step.

    It also keeps what the steps held, timed and all: rows, padded tokens and the sum of squared
    padded widths, from which bench/flops.py counts the model FLOPs of exactly the timed work."""

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

    def as_dict(self) -> dict:
        s = self.seconds
        return {
            "train_samples_per_s": self.samples / s if s > 0 else None,
            "train_tokens_per_s": self.tokens / s if s > 0 else None,
            "train_padded_tokens_per_s": self.padded_tokens / s if s > 0 else None,
            "warmup_steps_excluded": min(self.skip, self.steps),
            "timed_steps": self.timed_steps,
        }


# ---------------------------------------------------------------------------------------------
# Storage


def folder_bytes(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def measure_storage(method, model, keep_in: str | Path | None = None) -> dict:
    """Save what the method must save and measure it on disk; keep it only when asked."""
    if keep_in is not None:
        folder = Path(keep_in)
        if folder.exists():
            shutil.rmtree(folder)
        method.save_delta(model, folder)
        size = folder_bytes(folder)
        kept = str(folder)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
            method.save_delta(model, Path(tmp) / "delta")
            size = folder_bytes(Path(tmp) / "delta")
        kept = None
    return {"bytes": int(size), "what": method.delta_holds, "kept_at": kept}


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
