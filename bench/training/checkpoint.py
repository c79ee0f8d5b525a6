"""A cell's training state on disk, so a cell stopped part-way (a preemption, a time limit, `kill`,
a node lost) continues where it was instead of from step 0.

What is kept is everything the rest of the run depends on, as in bench/training/rung_state.py but at
any optimizer step, not only at an epoch boundary: the trainable weights, the optimizer and schedule,
the method's own loop state (AdaLoRA's importance scores and rank pattern), the RNG streams (torch,
CUDA, Python, NumPy; one per data-parallel rank), the data position (epoch and optimizer steps done in
it: the batch order is a pure function of (seed, epoch), so skipping those batches puts the run on the
same rows), what the run has learnt of its epochs (per-epoch metrics, the best epoch and its weights),
the step timer's counts and the training seconds so far. A relaunch of the same cell therefore ends
bit for bit where the uninterrupted cell ends on CPU (tests/test_preemption.py), and its throughput is
that of the steps actually timed across launches.

Where: `<sweep>/<run_id>.ckpt`, beside the record and its claim; only the claim's owner reads or
writes it (bench/sweep/claims.py), so two launches never race for it. Written with
bench.records.schema.atomic_write (temporary file, fsync, rename): a kill during the write leaves
the previous checkpoint whole. Read with `torch.load(weights_only=True)`: tensors and plain
containers only (docs/structure.md, "Where trust is needed"). Removed once the cell's record is
written (bench/sweep/execute.py).

When (`train.checkpoint_every`, not part of the config hash: it changes when state is saved, never
what is measured):
- `auto` (default): every 10 minutes of training, and never more often than 100 x the last write took
  (the writes stay under 1 % of training). A cell shorter than 10 minutes (every CPU cell of the
  quick budget) writes none; a GPU cell of hours writes one every 10 minutes;
- `<N>s`, `<N>m`, `<N>h`: that often; an integer N: every N optimizer steps; `off`: never on a clock.
- Whatever the setting, a stop signal (SIGTERM, SIGINT, SIGUSR1, SIGUSR2: bench/training/stop.py)
  writes one at the next step boundary, and a cell that wrote any keeps one at the end of training
  too, so a stop during the final evaluation or the inference measurement does not retrain.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from bench.config.rules import CHECKPOINT_TIME
from bench.records.schema import atomic_write

log = logging.getLogger("bench")

FORMAT = "peft-bench-cell-checkpoint"
SUFFIX = ".ckpt"
AUTO_EVERY_S = 600.0
AUTO_OVERHEAD = 0.01  # auto: at most this share of training spent writing checkpoints


def parse_every(setting) -> dict:
    """`train.checkpoint_every` as {"steps": int|None, "seconds": float|None, "auto": bool}; ValueError
    naming the setting and what is accepted."""
    if (
        setting is None
        or setting is False
        or str(setting).strip().lower() in ("off", "none", "null", "false")
    ):
        return {"steps": None, "seconds": None, "auto": False}
    if str(setting).strip().lower() == "auto":
        return {"steps": None, "seconds": AUTO_EVERY_S, "auto": True}
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return {"steps": int(setting), "seconds": None, "auto": False}
    m = CHECKPOINT_TIME.match(str(setting))
    if m and float(m.group(1)) > 0:
        return {
            "steps": None,
            "seconds": float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)],
            "auto": False,
        }
    raise ValueError(
        f"train.checkpoint_every={setting!r}: expected auto, off, an integer >= 1 (optimizer steps) "
        "or a time such as 90s, 10m, 2h"
    )


class Interval:
    """When the next interval checkpoint is due."""

    def __init__(self, setting):
        self.setting = "auto" if setting is None else setting
        self.rule = parse_every(self.setting)
        self.mark_saved(0, time.monotonic(), 0.0)

    def mark_saved(self, step: int, now: float, took_s: float) -> None:
        self.last_step, self.last_t = step, now
        self.min_gap = took_s / AUTO_OVERHEAD if self.rule["auto"] else 0.0

    def due(self, step: int, now: float) -> bool:
        if self.rule["steps"] is not None:
            return step - self.last_step >= self.rule["steps"]
        if self.rule["seconds"] is not None:
            return now - self.last_t >= max(self.rule["seconds"], self.min_gap)
        return False


def path_for(record_path) -> Path:
    return Path(record_path).with_suffix(SUFFIX)


def rng_state() -> dict:
    """This process's random streams as tensors and plain values (torch.load(weights_only) reads them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None,
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )


class CellCheckpoint:
    """One cell's checkpoint file and what this launch did with it (the record's `checkpoint` section)."""

    def __init__(self, path, run_id: str, config_hash: str, every=None, last_seen: float | None = None):
        self.path, self.run_id, self.config_hash = Path(path), str(run_id), str(config_hash)
        self.interval = Interval(every)
        self.saves, self.save_s = 0, 0.0
        self.resumes: list[dict] = []
        self.last_seen = last_seen  # when the interrupted launch last wrote anything (its log), for `lost_s`

    # -- reading -----------------------------------------------------------------------------------
    def load(self, total_steps: int, names: list[str]) -> dict | None:
        """The saved state of this cell, or None (no file; a file of another run is set aside with a
        warning, never trusted)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            problem = self._mismatch(state, total_steps, names)
        except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError ...
            problem = f"not loadable ({type(exc).__name__}: {str(exc)[:160]})"
        if problem:
            log.warning("checkpoint %s: %s; training from the start", self.path.name, problem)
            self.path.unlink(missing_ok=True)
            return None
        lost = None
        if str(state["reason"]).startswith("stop signal"):
            lost = 0.0  # saved at the stop: only the step under way when the signal came is trained again
        elif self.last_seen is not None:
            saved = datetime.fromisoformat(state["saved_at"]).timestamp()
            lost = round(max(0.0, self.last_seen - saved), 1)
        self.resumes = list(state.get("resumes") or []) + [
            {
                "from_step": int(state["steps"]),
                "epoch": int(state["epoch"]),
                "step_in_epoch": int(state["step_in_epoch"]),
                "saved_at": state["saved_at"],
                "reason": state["reason"],
                "lost_s": lost,
            }
        ]
        log.info(
            "checkpoint %s: resuming at step %d of %d (epoch %d, step %d in it; saved %s on %s)%s",
            self.path.name,
            state["steps"],
            total_steps,
            state["epoch"] + 1,
            state["step_in_epoch"],
            state["saved_at"],
            state["reason"],
            f"; about {lost:g} s of training lost" if lost else "",
        )
        return state

    def _mismatch(self, state, total_steps: int, names: list[str]) -> str | None:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return f"not a {FORMAT} file"
        if state.get("config_hash") != self.config_hash:
            return "written for another configuration"
        if state.get("total_steps") != int(total_steps):
            return f"saved for a {state.get('total_steps')}-step schedule, this run has {total_steps}"
        if sorted(names) != sorted(state["params"]):
            return "its trainable parameters are not this run's"
        return None

    # -- writing -----------------------------------------------------------------------------------
    def save(self, state: dict, reason: str) -> float:
        """Write `state` (the loop's, see bench/training/loop.py) atomically; returns the seconds it took."""
        t0 = time.perf_counter()
        full = dict(
            state,
            format=FORMAT,
            version=1,
            run_id=self.run_id,
            config_hash=self.config_hash,
            reason=reason,
            saved_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            resumes=self.resumes,
        )
        atomic_write(self.path, "wb", lambda fh: torch.save(full, fh))
        took = time.perf_counter() - t0
        self.saves += 1
        self.save_s += took
        log.info("checkpoint %s: saved at step %d (%s, %.2f s)", self.path.name, state["steps"], reason, took)
        return took

    def section(self) -> dict:
        """The record's `checkpoint` section."""
        return {
            "every": str(self.interval.setting),
            "saves": self.saves,
            "save_s": round(self.save_s, 4),
            "resumed": len(self.resumes),
            "resumes": self.resumes,
        }


def remove(record_path) -> None:
    """The cell's checkpoint and any temporary file a killed write left behind."""
    path = path_for(record_path)
    path.unlink(missing_ok=True)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
