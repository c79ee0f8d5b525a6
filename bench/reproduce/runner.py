"""The one way `bench.reproduce` runs cells: the command a user types for a sweep,
`python -m bench -m <overrides> results_dir=<results>`, in a child process.

Why the normal command line and not `bench.sweep.execute.execute` called in this process (which the paper
presets used to do, while the scaled run already launched `python -m bench -m`): a reproduction's
records must be the records a normal sweep writes, so that reports, the regression gate, resume and
`benchmarks/compare_records.py` read them unchanged. Going through bench.cli gives, with no second code
path to keep in step:

* the same composition (Hydra's own, with the launcher's settings), method labels and config hash,
  so a cell run here and the same cell run by hand are one cell (resume skips either);
* resume and failure isolation (bench.sweep.execute: each cell forked, a failed cell writes a `failed`
  record and the sweep goes on);
* the sweep ledger and the end-of-sweep summary table, keyed by the invocation id this module sets
  (`<results>/<sweep_name>/.ledger/<invocation>.jsonl`), and the usual exit status (0, 1 when a cell
  failed, 2 on a configuration error, 130 on Ctrl-C);
* Hydra's global state, torch and any CUDA context stay out of the process that writes the
  reports.

Records land where `python -m bench` puts them, `<results>/<sweep_name>/` (the preset's
sweep_name), so records written before this module existed are found and resumed.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

INVOCATION_ENV = "BENCH_INVOCATION"  # read by bench.cli (set if absent) and bench.sweep.execute (ledger file name)
_PLAIN = re.compile(r"[\w./@:+~-]+")


@dataclass(frozen=True)
class SweepRun:
    """One `python -m bench -m` invocation: its exit status and the ledger name of its cells."""

    command: list[str]
    returncode: int
    invocation: str


def override_value(value: str | os.PathLike) -> str:
    """`value` as a Hydra override value: unquoted when plain, else single-quoted (a results folder
    with a space or a comma would otherwise be split into a sweep)."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sweep_command(overrides: list[str], results: str | os.PathLike, extra: list[str] | None = None) -> list[str]:
    """The command line: `overrides` (the cells), results_dir, then the user's `extra` overrides
    (last, so a user's setting wins as on the bench command line)."""
    return [sys.executable, "-m", "bench", "-m", *overrides, f"results_dir={override_value(results)}",
            *(extra or [])]


def run_sweep(overrides: list[str], results: str | os.PathLike, extra: list[str] | None = None) -> SweepRun:
    """Run the cells of `overrides` (a Hydra multirun: comma lists sweep) through `python -m bench`.

    Ctrl-C reaches the child too (same process group): it writes its `interrupted` records, and
    this process waits for that instead of killing it, then raises KeyboardInterrupt."""
    cmd = sweep_command(overrides, results, extra)
    invocation = uuid.uuid4().hex[:12]
    env = dict(os.environ, **{INVOCATION_ENV: invocation})
    print("running:", " ".join(shlex.quote(c) for c in cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        raise
    if rc == 130:
        raise KeyboardInterrupt
    return SweepRun(cmd, rc, invocation)


def exit_status(returncode: int) -> int:
    """bench.reproduce's exit status for a sweep's: 0 ok, 2 configuration error, else 1 (a cell failed)."""
    return returncode if returncode in (0, 2) else 1


def ledger_path(results: str | os.PathLike, sweep_name: str, run: SweepRun) -> Path:
    """Where the invocation's cells are listed (one JSON line a cell: status, record path, cell)."""
    from bench.records.results import sweep_dir
    from bench.sweep.execute import LEDGER_DIR

    return sweep_dir(results, sweep_name) / LEDGER_DIR / f"{run.invocation}.jsonl"


__all__ = ["SweepRun", "exit_status", "ledger_path", "override_value", "run_sweep", "sweep_command"]
