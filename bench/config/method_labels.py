"""A cell's method label (`lora`, `lora[r=16]`): how reports, record names and resume tell method
variants apart.

The label names the settings given on the command line but shows their *resolved* values in one
spelling: `train.lr=1e-4` typed for one cell and the same value in a `-m` sweep (which Hydra
hands over as `train.lr=0.0001`) must give one label, or one configuration appears as two methods
in a report and resume misses the finished cell. A cell with no method setting given keeps the bare
method name, which existing records and baselines rely on.

Only reads a config (a DictConfig or a plain dict), so the parameter counter and the runner can
both use it without importing the sweep machinery.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.config.renamed import renamed_for

# Hydra override keys that name a method variant, besides the `method.` settings themselves.
LABEL_KEYS = {"train.lr": "lr"}
_NOT_LABELS = ("method._target_", "method.name")
_ABSENT = object()


def label_value(value: Any) -> str:
    """One spelling per value: 1e-4, 0.0001 and 1.0e-4 all give `0.0001`; 2.0 gives `2`; booleans
    and null as Hydra spells them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{label_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(label_value(v) for v in value) + "]"
    return str(value)


def file_label(path: str) -> str:
    """A peft file's short name: the folder of an `adapter_config.json` (peft's experiments and saved
    adapters are named by their folder), else the file's stem."""
    parts = str(path).rstrip("/").replace("\\", "/").split("/")
    name = parts[-1]
    if name == "adapter_config.json" and len(parts) > 1:
        return parts[-2]
    return name.removesuffix(".json")


def _lookup(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


#: a setting's text longer than this is shown as a hash in the label (a list of source records):
#: the label names a record file, which a file system limits to 255 bytes
LONG_VALUE = 48


def _short(text: str) -> str:
    if len(text) <= LONG_VALUE:
        return text
    import hashlib

    return "#" + hashlib.sha256(text.encode()).hexdigest()[:8]


def method_label(cfg: Any, overrides: list[str] | None) -> str:
    """`method` plus the method settings (and train.lr) set by `overrides`, with their values as
    resolved in `cfg`, e.g. `lora[r=16]`; `label=...` names a variant explicitly."""
    if cfg.get("label"):
        return str(cfg.get("label"))
    method = cfg.get("method") or {}
    name = str(method.get("name") or "method")
    shown: dict[str, str] = {}
    renamed = renamed_for(method)
    for ov in overrides or []:
        key = ov.lstrip("+~").partition("=")[0]
        if key.startswith("method.") and key[len("method."):] in renamed:  # an old name: shown as peft's
            key = "method." + renamed[key[len("method."):]]
        if key.startswith("method.") and key not in _NOT_LABELS:
            short = key[len("method."):]
        elif key in LABEL_KEYS:
            short = LABEL_KEYS[key]
        else:
            continue
        value = _lookup(cfg, key)
        if key == "method.config_file" and isinstance(value, str):  # method=peft: the file by its name, not its path
            shown["file"] = f"file={_short(file_label(value))}"
            continue
        shown[short] = f"~{short}" if value is _ABSENT else f"{short}={_short(label_value(value))}"
    return f"{name}[{','.join(sorted(shown.values()))}]" if shown else name
