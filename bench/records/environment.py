"""The environment of a run, recorded in every record so numbers can be compared honestly."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def package_version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of a clone. An installed wheel has no repository of its own: asking git in
    site-packages could report whatever project the environment happens to sit in, so it reports
    nothing (the record's `bench` version identifies the code instead)."""
    from bench.config.confdir import is_checkout

    if not is_checkout():
        return None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=5, check=False).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip() != ""
        return commit, dirty if commit else None
    except (OSError, subprocess.SubprocessError):
        return None, None


PARALLEL_CELLS_ENV = "BENCH_PARALLEL_CELLS"


def parallel_cells() -> int:
    """How many cells share this machine's cores right now, as `python -m bench` found from its
    launcher (bench/cli.py). An environment variable rather than a config key, so the config a
    record keeps is the one the user composed; forked and spawned cells inherit it alike. Unset
    (the in-process API, scripts): 1."""
    try:
        return max(1, int(os.environ.get(PARALLEL_CELLS_ENV) or 1))
    except ValueError:
        return 1


def environment(device: torch.device) -> dict:
    commit, dirty = git_state()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
        "peft": package_version("peft"),
        "datasets": package_version("datasets"),
        "evaluate": package_version("evaluate"),
        "hydra": package_version("hydra-core"),
        "bench": package_version("peft-bench"),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "cuda_device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda_version": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "parallel_cells": parallel_cells(),  # cells run beside this one (their load is in its timings)
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
