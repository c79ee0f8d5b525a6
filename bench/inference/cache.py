"""One inference measurement per model structure, reused across cells and sweeps (`inference.share`,
`inference.cache`).

Why this is honest: latency, throughput and forward memory depend on the architecture, the shapes
and the numeric format, not on the values of the weights (dense fp32/bf16 kernels do the same work
whatever the numbers; the inputs are synthetic and identical for every variant). Cells that build
the same structure on the same machine therefore measure the same thing. The key is a hash of
everything that decides the timing: the model config, the method's structural settings (not its
learning rate or other training-only settings, not the seed or task), the number of labels, the
inference settings (lengths, batch, rounds, target precision, threads), max_seq_len, device and
CPU/GPU model, core count, precision, the torch, transformers and peft versions, and the
measuring code's protocol version. Any change gives another key, so a stale entry is never read;
the entry also carries the key's inputs, checked on load.

What stays per cell: the merge and its check against the cell's own trained weights (a wrong merge
shows up there), and the record says where its timings came from (`inference.shared`: the
measuring run's sweep, task, seed, run id and time). Where the entries live:
`<results_dir>/.inference_cache/<key>.json` (JSON, written atomically), so every sweep under one
results folder reuses them; `inference.cache=false` keeps them per sweep folder
(`<results_dir>/<sweep>/.inference_shared/`, shared within one sweep), and
`+inference.share=false` measures every cell.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bench.records.schema import atomic_write

#: parts of the `inference` section that depend on the structure only (copied between cells)
SHARED_PARTS = ("inputs", "device", "precision", "threads", "timer", "protocol", "reference", "aa_control",
                "settings", "added_length", "latency_batch1", "lengths_skipped", "throughput", "overhead", "memory",
                "precision_reached")
#: bump when bench/inference/cost.py or bench/inference/rounds.py measure differently: old entries are then not read
PROTOCOL = 3  # 3: a merged fresh build is timed once as the A/A control
FORMAT = "peft-bench-inference-cache"
#: method settings that change training only, never the trained model's structure
TRAINING_ONLY = ("lr", "cache_features", "init", "init_text", "tokenizer_path", "name")
#: settings that choose where a measurement comes from, not what is measured
NOT_MEASURED = ("share", "cache")


def _plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def structure_blob(cfg, num_labels: int, settings: dict, device: torch.device, precision: str) -> dict:
    """Everything that decides the timings (call it with the timing's thread count in force)."""
    import os

    from bench.measure.matmul_peak import device_name
    from bench.records.environment import package_version

    method = {k: v for k, v in dict(_plain(cfg.method)).items()
              if k not in TRAINING_ONLY and not str(k).startswith("lr_")}
    from bench.models.levers import weights_dtype

    blob = {"protocol": PROTOCOL, "model": _plain(cfg.model), "method": method, "num_labels": int(num_labels),
            "max_seq_len": int(cfg.train.max_seq_len),
            "settings": {k: v for k, v in settings.items() if k not in NOT_MEASURED},
            "device": device_name(device), "device_type": device.type, "cpu_count": os.cpu_count(),
            "precision": precision, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": package_version("transformers"), "peft": package_version("peft")}
    if weights_dtype(cfg.train) != "fp32":  # bf16 / 4-bit weights time differently; fp32 keys have no dtype
        blob["weights_dtype"] = weights_dtype(cfg.train)
    return blob


def structure_key(blob: dict) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def entry_path(cfg, key: str, settings: dict) -> Path:
    from bench.records.results import sweep_dir_of

    if settings.get("cache", True):
        return Path(str(cfg.results_dir)) / ".inference_cache" / f"{key}.json"
    return sweep_dir_of(cfg) / ".inference_shared" / f"{key}.json"


def measured_by(cfg, seed: int, run_id: str | None) -> dict:
    from datetime import UTC, datetime

    return {"sweep": str(cfg.get("sweep_name")), "task": str(cfg.task.name), "seed": int(seed), "run_id": run_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


def describe(who: dict) -> str:
    """`shared.from` as a line: `<sweep> / <task> / seed <n>`."""
    return f"{who.get('sweep')} / {who.get('task')} / seed {who.get('seed')}"


def load(path: Path, blob: dict | None = None) -> dict | None:
    """The entry at `path`, or None when there is none, it does not parse, or it was measured under
    other key inputs than `blob` (a hash collision or a hand-edited file is a miss, not a reuse)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(k in data for k in ("latency_batch1", "overhead")):
        return None
    if blob is not None and data.get("key_inputs") != json.loads(json.dumps(blob, default=str)):
        return None
    return data


def store(path: Path, section: dict, who: dict, blob: dict | None = None) -> None:
    """Keep the structure-only parts of a measured section; never fails the cell."""
    entry = {"format": FORMAT, "protocol": PROTOCOL, **{k: section[k] for k in SHARED_PARTS if k in section}}
    entry["measured_by"] = who
    entry["merge_status"] = (section.get("merge") or {}).get("status")
    if blob is not None:
        entry["key_inputs"] = json.loads(json.dumps(blob, default=str))
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
    who = entry.get("measured_by")
    who = who if isinstance(who, dict) else {"sweep": None, "task": str(who), "seed": None}
    out["shared"] = {"from": describe(who), "from_run_id": who.get("run_id"), "measured_at": who.get("at"),
                     "key": key,
                     "why": "same structure, shapes, settings, machine, precision, threads and library versions as "
                            "the run that measured it; timings do not depend on weight values "
                            "(bench/inference/cache.py); the merge and its check are this cell's own"}
    out["seconds"] = seconds
    return out
