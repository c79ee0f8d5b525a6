"""The "before" side of retention, measured once per backbone and kept as data (no pickle).

The key is a hash of everything the base model's outputs on the sample depend on: the model config
(pretrained weights by source; a random-weight build also by the seed that drew its weights), the
sample (task, split, rows' fingerprint), max_seq_len, the precision and device type, the pooling
the head reads, the torch and transformers versions and this protocol's version. An entry is
`<results_dir>/.retention_cache/<key>.npz`: the base's features as float32 arrays and a JSON text
with the base's skill and who measured it, read with `allow_pickle=False`; an entry that does not
load or whose key inputs differ is a miss, measured again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from bench.config.schema import model_setting
from bench.records.schema import atomic_write

#: bump when bench/retention/measure.py measures the base differently: old entries are then not read
PROTOCOL = 1
FORMAT = "peft-bench-retention-reference"


def key_blob(cfg, sample_info: dict, seed: int, precision: str, device_type: str, pooling: str) -> dict:
    import torch
    from omegaconf import OmegaConf

    from bench.records.environment import package_version

    model = OmegaConf.to_container(cfg.model, resolve=True)
    blob = {
        "protocol": PROTOCOL,
        "model": model,
        "pooling": pooling,
        "sample": {k: sample_info[k] for k in ("task", "split", "rows", "fingerprint")},
        "max_seq_len": int(cfg.train.max_seq_len),
        "precision": precision,
        "device_type": device_type,
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
    }
    if not model_setting(model, "pretrained"):
        blob["seed"] = int(
            seed
        )  # random weights are drawn from the seed (bench.models.backbones.build_model)
    return blob


def key_of(blob: dict) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def entry_path(cfg, key: str) -> Path:
    return Path(str(cfg.results_dir)) / ".retention_cache" / f"{key}.npz"


def load(path: Path, blob: dict) -> dict | None:
    """{"meta": ..., "mean": array, "pooled": array}, or None (missing, unreadable, other key inputs)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            entry = {"meta": meta, "mean": z["mean"], "pooled": z["pooled"]}
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("format") != FORMAT or meta.get("key_inputs") != json.loads(json.dumps(blob, default=str)):
        return None
    return entry


def store(path: Path, blob: dict, measured: dict, values: dict, who: dict) -> None:
    """Write an entry atomically; a failure to write is not a failure of the cell."""
    meta = {
        "format": FORMAT,
        "protocol": PROTOCOL,
        "key_inputs": json.loads(json.dumps(blob, default=str)),
        "values": values,
        "measured_by": who,
    }
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "mean": measured["mean"].astype(np.float32),
        "pooled": measured["pooled"].astype(np.float32),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, "wb", lambda fh: np.savez(fh, **arrays))
    except OSError:
        pass
