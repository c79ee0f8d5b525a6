"""Fault injection for the reliability tests (`debug.*` settings): a NaN loss, an out-of-memory error, the
process killed, a stop signal at a given step or phase. Off unless a `debug` setting asks for it."""
from __future__ import annotations

import os
import signal

import torch


def inject_fault(faults: dict, step: int, loss: torch.Tensor) -> torch.Tensor:
    """Fault injection for the reliability tests (`debug.*` settings): a NaN loss, an
    out-of-memory error as torch raises it, or the process killed as the OOM killer would."""
    if faults.get("inject_nan_at_step") is not None and step >= int(faults["inject_nan_at_step"]):
        return loss * float("nan")
    if faults.get("inject_oom_at_step") is not None and step >= int(faults["inject_oom_at_step"]):
        raise torch.OutOfMemoryError("injected out-of-memory error (debug.inject_oom_at_step)")
    if faults.get("inject_kill_at_step") is not None and step >= int(faults["inject_kill_at_step"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return loss


def send_test_signal(faults: dict | None, where: str, step: int | None = None) -> None:
    """`debug.signal_at_step` / `debug.signal_at_phase`: a real stop signal (`debug.signal`) to this
    process, as a preemption or `kill` would send it (the recipe passes these only to a first launch)."""
    faults = faults or {}
    if (where == "step" and faults.get("signal_at_step") == step) or faults.get("signal_at_phase") == where:
        os.kill(os.getpid(), getattr(signal, str(faults.get("signal") or "SIGTERM")))
