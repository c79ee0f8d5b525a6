"""Progress you can watch: a bar per cell while it trains, a line per finished cell of a sweep.

Why: an MRPC cell trains for minutes and `make sweep` for half an hour; before this a terminal saw
one line when a cell started and one when it ended, and nothing said how long was left.

`progress.mode` (conf/config.yaml; not part of the config hash: it changes what is printed, not
what is measured):

* `auto` (default): a tqdm bar when stderr is a terminal and the cell runs alone; plain log lines
  otherwise: CI, pipes, `nohup`, and parallel cells, whose bars would overwrite each other.
* `bar`, `log`: that, whatever stderr is. `off`: neither, and no sweep line.

Log mode prints a cell's state at most every `progress.interval_s` seconds and once at its end.

Cost in the timed steps: none by construction. The training loop calls `CellProgress.step` after
the step timer's region closes (bench/training/loop.py), with the loss it already holds as a Python float
(the loop's `float(loss)` is the one host sync per micro-batch, and was there before); `step` adds
a few numbers and reads the clock, and draws at most every BAR_EVERY_S (bar) or interval_s (log).

The sweep line: done / total cells, ok / failed / skipped, and the time left from the mean time of
the cells that ran. Cells of one sweep may run in other processes (joblib workers, submitit jobs,
forked cells), so the counts are read from a per-invocation file every finished cell appends to
(`<results_dir>/.progress/<BENCH_INVOCATION>.jsonl`), and the total is the number of cells the CLI
planned before the first job started (`BENCH_SWEEP_TOTAL`, bench/cli.py).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("bench")

MODES = ("auto", "bar", "log", "off")
BAR_EVERY_S = 0.5
TOTAL_ENV = "BENCH_SWEEP_TOTAL"
PROGRESS_DIR = ".progress"


def settings_from(cfg):
    """`progress.*`, typed (bench.config.schema.ProgressSettings: its rules and its defaults, written there only)."""
    from bench.config.schema import settings

    return settings(cfg, "progress")


def resolve_mode(mode: str, stream=None, parallel: int = 1) -> str:
    """`auto` -> `bar` on a terminal with one cell at a time, else `log`."""
    if mode != "auto":
        return mode
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return "bar" if tty and parallel <= 1 else "log"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _columns(stream) -> int | None:
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):
        return None


class CellProgress:
    """One cell's training progress. `start`, then `step` after every optimizer step, then `close`.
    `emit` receives log-mode lines (default: the `bench` logger, so they also land in the cell's log)."""

    def __init__(self, label: str, mode: str = "auto", interval_s: float = 30.0, stream=None, parallel: int = 1,
                 clock=time.monotonic, emit=None):
        self.label, self.interval_s, self.clock = label, float(interval_s), clock
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream, parallel)
        self.emit = emit or log.info
        self.bar = None
        self.total = self.steps = self.samples = self.epochs = self.epoch = 0
        self.loss = None
        self._pending = 0

    def start(self, total_steps: int, epochs: int) -> None:
        self.total, self.epochs = int(total_steps), int(epochs)
        self.t0 = self._last = self.clock()
        if self.mode == "bar":
            from tqdm import tqdm

            # a terminal of size 0 x 0 (a pty nobody sized: `script`, some CI runners): tqdm would hide the bar
            width = {"dynamic_ncols": True} if _columns(self.stream) else {"ncols": 100, "nrows": 40}
            self.bar = tqdm(total=self.total, desc=self.label, unit="step", file=self.stream, mininterval=BAR_EVERY_S,
                            leave=True, smoothing=0.1, **width)

    def step(self, samples: int, loss: float | None, epoch: int, lr: float | None = None) -> None:
        """After an optimizer step (outside the timed region). Draws only when it is time to. `lr`
        (the step's learning rate) is for the trackers (bench/trackers.ProgressTee); not printed."""
        if self.mode == "off":
            return
        self.steps += 1
        self.samples += samples
        self.epoch = epoch
        if loss is not None and math.isfinite(loss):
            self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss  # running (smoothed) loss
        self._pending += 1
        now = self.clock()
        every = BAR_EVERY_S if self.mode == "bar" else self.interval_s
        if now - self._last >= every:
            self._last = now
            self._draw(now)

    def _rate(self, now: float) -> float | None:
        return self.samples / (now - self.t0) if now > self.t0 else None

    def _left(self, now: float) -> float | None:
        return (now - self.t0) / self.steps * (self.total - self.steps) if self.steps else None

    def state(self, now: float) -> str:
        """`epoch 2/3, loss 0.4123, 153.2 samples/s` (running loss; samples/s since training started)."""
        parts = [f"epoch {self.epoch}/{self.epochs}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        rate = self._rate(now)
        if rate is not None:
            parts.append(f"{rate:.1f} samples/s")
        return ", ".join(parts)

    def _draw(self, now: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.state(now), refresh=False)
            self.bar.update(self._pending)
            self._pending = 0
        elif self.mode == "log":
            self.emit(f"{self.label}: step {self.steps}/{self.total}, {self.state(now)}, "
                      f"{fmt_duration(self._left(now))} left")

    def close(self) -> None:
        """At the cell's end (or failure): the bar completes; log mode says where training ended."""
        if self.mode == "off" or not self.total:
            return
        now = self.clock()
        if self.bar is not None:
            self.bar.set_postfix_str(self.state(now), refresh=False)
            self.bar.update(self._pending)
            self._pending = 0
            self.bar.close()
        elif self.mode == "log":
            self.emit(f"{self.label}: trained {self.steps}/{self.total} steps in {fmt_duration(now - self.t0)}, "
                      f"{self.state(now)}")


# ------------------------------------------------------------------------------------------- sweep line

def _progress_file(results_dir) -> Path | None:
    inv = os.environ.get("BENCH_INVOCATION")
    return Path(str(results_dir)) / PROGRESS_DIR / f"{inv}.jsonl" if inv else None


def cell_finished(cfg, status: str, seconds: float, cell: str) -> None:
    """Append this cell's outcome to the invocation's progress file and log the sweep line."""
    settings = settings_from(cfg)
    path = _progress_file(cfg.get("results_dir", "results"))
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:  # one short line per write: appends do not interleave
            fh.write(json.dumps({"status": status, "seconds": round(float(seconds), 3), "cell": cell}) + "\n")
    except OSError as exc:  # what is printed must never fail a sweep
        log.debug("progress file %s: %s", path, exc)
        return
    if settings.mode != "off":
        line = sweep_line(path)
        if line:
            log.info(line)


def sweep_line(path: Path, total: int | None = None, parallel: int | None = None) -> str | None:
    """`sweep: 5/20 cells (4 ok, 0 failed, 1 skipped), ~12m30s left at 3m05s per cell`; None for a
    single cell run alone (nothing to add to the cell's own lines)."""
    from bench.records.environment import parallel_cells

    if total is None:
        try:
            total = int(os.environ.get(TOTAL_ENV) or 0) or None
        except ValueError:
            total = None
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if not entries or (total is None and len(entries) == 1) or total == 1:
        return None
    counts = {s: sum(e.get("status") == s for e in entries) for s in ("ok", "failed", "skipped", "interrupted")}
    ran = [float(e.get("seconds") or 0) for e in entries if e.get("status") in ("ok", "failed")]
    done = len(entries)
    text = f"sweep: {done}/{total if total else '?'} cells ({counts['ok']} ok, {counts['failed']} failed, " \
           f"{counts['skipped']} skipped)"
    if total and ran and done < total:
        per = sum(ran) / len(ran)
        left = per * (total - done) / max(1, parallel or parallel_cells())
        text += f", ~{fmt_duration(left)} left at {fmt_duration(per)} per cell"
    return text
