"""Peak memory of a measured region: process RSS high-water mark on CPU, the allocator's peak on CUDA.

Why measured this way: a user must be able to reproduce the figure with the tools they know
(`/proc/self/status` VmHWM, `torch.cuda.max_memory_allocated`), so the region resets the high-water
mark where the kernel allows it and says when it could not (the peak then includes what came before)."""
from __future__ import annotations

import threading

import torch


def status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss() -> int:
    rss = status_kb("VmRSS")
    if rss is not None:
        return rss
    import psutil

    return psutil.Process().memory_info().rss


def reset_hwm() -> bool:
    """Linux: writing 5 to clear_refs resets the peak-RSS high-water mark (VmHWM) to the current
    RSS, so the peak of *this* phase is read exactly, not the process's lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return status_kb("VmHWM") is not None
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
        if reset_hwm():
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
            self.peak_rss = status_kb("VmHWM") or current_rss()
        return False

    def as_dict(self) -> dict:
        return {
            "peak_rss_bytes": int(self.peak_rss),
            "baseline_rss_bytes": int(self.baseline_rss),
            "rss_method": self.method,
            "cuda_peak_allocated_bytes": self.cuda_allocated,
            "cuda_peak_reserved_bytes": self.cuda_reserved,
        }
