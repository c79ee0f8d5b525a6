"""A cell's runtime choices, apart from the recipe that uses them: the phase clock behind
`time.phases_s`, the device, precision, padding multiple and thread count a setting resolves to, the
training-length rule, seeding, and the libraries preloaded before cells fork.

Why apart: the sweep layer (bench/sweep/execute.py, cost_pass.py, distributed.py) and tests need these
without the recipe's steps, and bench/recipe/finetune.py reads as the steps of a cell.
"""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

from bench.config.schema import check_value
from bench.cores import usable_cores
from bench.errors import ConfigError


class Phase:
    """Tracks which phase a cell is in, so a failure record can say where it happened, and how long
    each phase took (`seconds`: the record's `time.phases_s`, the breakdown of a cell's fixed costs
    in docs/performance.md; a phase entered twice adds up)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._name, self._since = "validate", time.perf_counter()

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        now = time.perf_counter()
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + now - self._since
        self._name, self._since = value, now

    def durations(self) -> dict[str, float]:
        """Seconds per phase so far, the running phase included up to now."""
        out = dict(self.seconds)
        out[self._name] = out.get(self._name, 0.0) + time.perf_counter() - self._since
        return {k: round(v, 4) for k, v in out.items()}


def preload_libraries() -> None:
    """Import peft (and with it transformers' model code) in the process that forks the cells, so a
    sweep's cells inherit it instead of each importing it again (the cell's validate +
    build phases went from 4.5 s to 0.7 s at ~70 % foreign CPU load; a single cell pays it once in
    the parent instead, every later cell of a sweep not at all). Touches no device (CUDA stays
    uninitialised)."""
    try:
        import peft  # noqa: F401
    except ImportError:  # pragma: no cover - peft is a dependency; a cell without it fails later, clearly
        pass


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r}: CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    return check_value("train.precision", name)


def pick_pad_multiple(setting, device: torch.device) -> int:
    """`auto`: 8 on CUDA, 1 (no rounding) on CPU. On a GPU every new padded length costs a new
    attention/matmul plan; measured on an H200 (docs/gpu.md), the first epoch of a cell ran several
    times slower than later ones while those plans were built. On CPU extra padding is only cost."""
    if check_value("train.pad_to_multiple_of", setting) in (None, "auto"):
        return 8 if device.type == "cuda" else 1
    return setting


def resolve_threads(setting, parallel_cells) -> int:
    """`auto`: split the cores this process may use (bench.cores) between cells that run at the same time
    (joblib n_jobs), so parallel cells never oversubscribe the CPU; an integer is taken as given."""
    cores = usable_cores()
    if check_value("train.threads", setting) in (None, "auto"):
        return max(1, cores // max(1, int(parallel_cells or 1)))
    return setting


def length_rule(epochs: int, min_steps: int | None, n_examples: int, effective_batch: int) -> dict | None:
    """train.min_steps: at least this many optimizer steps, reached by raising the epoch count:
    epochs = max(train.epochs, ceil(min_steps / steps per epoch)). Why: a fixed epoch count gives
    K = 100 four steps at batch 32, which measures the warm-up, not the method; whole epochs keep
    every example seen equally often. None when unset; else the rule as recorded (train.length_rule)."""
    if not min_steps:
        return None
    per_epoch = max(1, -(-int(n_examples) // int(effective_batch)))
    return {"rule": "epochs = max(train.epochs, ceil(train.min_steps / steps_per_epoch))",
            "min_steps": int(min_steps), "configured_epochs": int(epochs),
            "epochs": max(int(epochs), -(-int(min_steps) // per_epoch)), "steps_per_epoch": per_epoch}


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS is only deterministic with a fixed workspace; it reads this when it first starts,
        # which in a cell is after this line (the cell runs in its own process).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
