"""One inference measurement per model structure in a sweep, not one per cell (`inference.share`).

Why this is honest: latency, throughput and forward memory depend on the architecture, the shapes
and the numeric format, not on the values of the weights (dense fp32/bf16 kernels do the same work
whatever the numbers; the inputs are synthetic and identical for every variant). Cells of one sweep
that build the same structure (same model and method settings, same number of labels, same
inference settings, device, precision, threads and torch) therefore measure the same thing; in the
default sweep CoLA, SST-2 and MRPC share one measurement per method (STS-B's one-output head is its
own structure), which saves about 20 s per cell on the reference CPU.

What stays per cell: the merge and its check against the cell's own trained weights (a wrong merge
shows up there), and the record says where its timings came from (`inference.shared`). The shared
entries live in `<results_dir>/<sweep>/.inference_shared/`; a new sweep (another folder) measures
anew, and `+inference.share=false` measures every cell.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bench.records import atomic_write

#: parts of the `inference` section that depend on the structure only (copied between cells)
SHARED_PARTS = ("inputs", "device", "precision", "threads", "timer", "protocol", "reference", "aa_control",
                "settings", "added_length", "latency_batch1", "lengths_skipped", "throughput", "overhead", "memory")


def structure_key(cfg, num_labels: int, settings: dict, device: torch.device, precision: str) -> str:
    from omegaconf import OmegaConf

    from bench.peak import device_name

    def plain(node):
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    blob = {"model": plain(cfg.model), "method": plain(cfg.method), "num_labels": int(num_labels),
            "max_seq_len": int(cfg.train.max_seq_len), "settings": {k: v for k, v in settings.items() if k != "share"},
            "device": device_name(device), "precision": precision, "threads": torch.get_num_threads(),
            "torch": torch.__version__}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def entry_path(cfg, key: str) -> Path:
    from bench.results import sweep_dir_of

    return sweep_dir_of(cfg) / ".inference_shared" / f"{key}.json"


def load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and all(k in data for k in ("latency_batch1", "overhead")) else None


def store(path: Path, section: dict, measured_by: str) -> None:
    """Keep the structure-only parts of a measured section; never fails the cell."""
    entry = {k: section[k] for k in SHARED_PARTS if k in section}
    entry["measured_by"] = measured_by
    entry["merge_status"] = (section.get("merge") or {}).get("status")
    try:
        atomic_write(path, "w", lambda fh: json.dump(entry, fh))
    except OSError:
        pass


def reuse(entry: dict, merge: dict, seconds: float, key: str) -> dict:
    """This cell's section: the shared timings + its own merge and check."""
    out = {k: entry[k] for k in SHARED_PARTS if k in entry}
    out["merge"] = merge
    if merge.get("status") != entry.get("merge_status"):  # the timed merged variant is not what this cell has
        out["overhead"] = dict(out["overhead"], merged=None)
    out["shared"] = {"from": entry.get("measured_by"), "key": key,
                     "why": "same structure, shapes, settings, device, precision and threads as the cell that "
                            "measured it; timings do not depend on weight values (bench/inference_share.py); the "
                            "merge and its check are this cell's own"}
    out["seconds"] = seconds
    return out
