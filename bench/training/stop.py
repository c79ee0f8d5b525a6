"""Stopping a cell on a signal, cleanly: the stop request the training loop polls, the cell's signal
handlers, and the parent-death signal that keeps a cell from outliving the process that started it.

Why a request and not an exception everywhere: a signal that lands in the middle of an optimizer step
(after `opt.step()`, before `sched.step()`) would leave a state no checkpoint can describe. So while
the training loop runs (`deferring()`), a stop signal only sets the request; the loop finishes the
step (or the epoch's evaluation), writes a checkpoint (bench/training/checkpoint.py) and raises
`Stopped` itself. Anywhere else in the cell (setup, the final evaluation, the inference measurement)
the handler raises `Stopped` at once: nothing there is worth more than the checkpoint already on disk.

`Stopped` is a KeyboardInterrupt, so every `except Exception` in between lets it through and the
isolation layer (bench/sweep/execute.py) writes an `interrupted` record, never a `failed` one.

Signals handled: SIGINT (Ctrl-C), SIGTERM (`kill`, `scancel`, a preemption's first signal), SIGUSR1
and SIGUSR2 (a batch system's warning before a time limit or preemption: SLURM `--signal`, submitit's
USR2). The exit code of a stopped process is the shell's convention, 128 + the signal number
(130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import ctypes
import os
import signal
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Stopped(KeyboardInterrupt):
    """The cell (or the sweep) was asked to stop by signal `signum`; `checkpoint` says where its
    training state was saved (None: nothing to save yet, or checkpointing had nothing to keep)."""

    def __init__(self, signum: int, checkpoint: str | None = None, previous=None):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum, self.checkpoint = int(signum), checkpoint
        self.previous = previous  # the handler the sweep's process had before (submitit's requeue), if any

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """This process's pending stop: the first stop signal received (None: none)."""

    def __init__(self):
        self.signum: int | None = None
        self._defer = 0
        self.forward_to_children = False  # a data-parallel agent passes USR1/USR2 on to its workers

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum, frame=None) -> None:
        first = self.signum is None
        if first:
            self.signum = int(signum)
        if self.forward_to_children:
            _signal_children(signum)
        if self._defer == 0 and first:
            raise Stopped(signum)

    @contextmanager
    def deferring(self):
        """While inside: a stop signal is only recorded; the caller polls `requested` at a safe point."""
        self._defer += 1
        try:
            yield self
        finally:
            self._defer -= 1

    def reset(self) -> None:
        self.signum, self._defer, self.forward_to_children = None, 0, False


STOP = StopRequest()


def _signal_children(signum: int) -> None:
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(signum)
            except psutil.Error:
                pass
    except Exception:  # noqa: BLE001,S110 - a signal handler must not fail
        pass


def install_cell_handlers() -> None:
    """Route every stop signal of this process to STOP (a cell's process, a data-parallel worker)."""
    STOP.reset()
    for sig in STOP_SIGNALS:
        signal.signal(sig, STOP.handle)


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `signum` to this process when its parent dies, whatever kills the parent
    (SIGKILL included): the cell then stops like on `kill` (checkpoint, `interrupted` record) instead of
    training on as an orphan. Returns False where prctl is not available (not Linux). Exits at once if
    the parent is already gone (it died between the fork and this call)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        ok = False
    if os.getppid() != parent_pid:
        os._exit(128 + int(signum))
    return ok
