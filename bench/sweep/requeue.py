"""The sweep's side of a stop: signals to the sweep reach its running cell, and a batch system's
warning signal ends in a requeued job that resumes from the cell's checkpoint.

- `ForwardStops`: while a forked cell runs, SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 sent to the sweep
  (`kill`, `scancel`, a preemption, Ctrl-C) are passed on to the cell, which saves its training state
  (bench/training/checkpoint.py), writes an `interrupted` record and exits; the sweep then removes the
  claim and stops with 128 + the signal (bench/sweep/execute.py). A cell that has not stopped within
  `STOP_GRACE_S` is killed. Whatever kills the sweep itself (SIGKILL included), the cell gets SIGTERM
  from the kernel (bench/training/stop.py `die_with_parent`) and stops the same way.
- `after_stop`: after SIGUSR1 / SIGUSR2 (SLURM's `--signal=USR1@<lead s>`, submitit's USR2
  `signal_delay_s` before the time limit) the job asks to be requeued: through the handler that was
  installed before the sweep's (submitit's `checkpoint_and_try_requeue`, which resubmits the Hydra job
  through hydra-submitit-launcher's `checkpoint`), else, inside a SLURM job, `scontrol requeue
  $SLURM_JOB_ID`. docs/cluster.md has the launcher settings.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

from bench.training.stop import STOP_SIGNALS, Stopped, install_cell_handlers, signal_name

log = logging.getLogger("bench")

REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class ForwardStops:
    """Pass the sweep's stop signals on to `child` (a multiprocessing.Process); `signum` is the first
    one received, `at` when (time.monotonic), `previous` the handlers this replaced."""

    def __init__(self, child):
        self.child, self.signum, self.at, self.previous = child, None, 0.0, {}

    def _handle(self, signum, frame=None) -> None:
        if self.signum is None:
            self.signum, self.at = int(signum), time.monotonic()
            log.warning(
                "%s received: stopping the running cell (it saves its training state first)",
                signal_name(signum),
            )
        if self.child.pid is not None:
            try:
                os.kill(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def __enter__(self):
        if _main_thread():  # signal handlers belong to the main thread (a threaded launcher: as before)
            for sig in STOP_SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)


@contextmanager
def cell_signals():
    """A cell run in this process (isolate=false): stop signals go to the cell's stop request
    (bench/training/stop.py) while it runs, and the handlers before it come back afterwards."""
    if not _main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    install_cell_handlers()
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def after_stop(stop: Stopped) -> None:
    """After a warning signal (SIGUSR1 / SIGUSR2) stopped the cell: have the job requeued. Does
    nothing for SIGTERM / SIGINT (a preemption's SIGTERM is requeued by SLURM itself where the
    partition says so; Ctrl-C and `kill` mean stop)."""
    if stop.signum not in REQUEUE_SIGNALS:
        return
    previous = stop.previous
    if callable(previous):
        log.info(
            "%s: handing over to the job's own handler (%s) to requeue",
            signal_name(stop.signum),
            getattr(previous, "__qualname__", previous),
        )
        previous(stop.signum, None)
        return
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        log.warning("SLURM job %s: scontrol not found, the job is not requeued", job)
        return
    done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        log.warning("SLURM job %s requeued (scontrol requeue): it resumes from the cell's checkpoint", job)
    else:
        log.error(
            "SLURM job %s: scontrol requeue failed (%s)", job, (done.stderr or done.stdout).strip()[:200]
        )
