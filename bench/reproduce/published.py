"""The published numbers (bench/reproduce/published.csv): reading, validating and parsing them.

`published.csv` holds one published number a row, copied with its citation from the shared
reference file and given structured columns (see COLUMNS). Nothing in it is corrected: where a
source disagrees with itself both values are kept and `curation` says which one is used; every
interpretation made while structuring (metric keys, harness mappings) is written in `curation`,
while `notes` keeps the shared file's text unchanged.

A *configuration* (`config_id`) is one published method setting on one model in one source; its
rows are the per-task numbers. `preset` names the experiment preset (conf/experiment/<preset>.yaml)
that sets model, method and the training hyperparameters as the source states them; the preset's
`reference.config_ids` lists the configurations it reproduces (tests check both directions; the
presets themselves are bench.reproduce.presets). `harness_overrides` are the Hydra overrides that
build the configuration's model + method in the harness (used by `bench.reproduce params`; empty
where the harness has no equivalent).

This module reads the file and nothing else (no config, no model), so the parameter checks, the
paper presets and the scaled run all depend on it and not on one another.

Versioning: DATA_VERSION below must equal the version in the file's first comment line; bump
both, and say what changed in docs/reproduce.md, whenever a value or column changes.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

DATA_VERSION = 1
CSV_PATH = Path(__file__).with_name("published.csv")

COLUMNS = (
    "row_id",            # unique: <config_id>/<task>[-<metric>]
    "config_id",         # <source key>/<model>/<method variant>
    "source", "table",   # paper (arXiv id) and table/section, as in the shared file
    "split",             # dev | test | not stated
    "model",             # as printed
    "model_key",         # conf/model/<key>.yaml, or empty
    "method",            # as printed
    "method_key",        # conf/method/<key>.yaml, or empty
    "method_config",     # as stated by the source or its official scripts (shared file's text)
    "r", "alpha", "target_modules", "adapter_size", "prompt_length",  # structured; 'unknown' = not stated
    "task",              # as printed
    "task_key",          # conf/task/<key>.yaml, or empty (averages, SuperGLUE, AX)
    "metric",            # as printed
    "metric_key",        # key in a record's `metrics` (0-1 scale there), or empty when the source is ambiguous
    "value",             # number, as printed (0-100 scale)
    "value_as_printed",  # the cell as printed (e.g. '83.2/86.4', split into two rows)
    "pm",                # ± as printed, or empty
    "aggregation",       # how the source aggregates runs (median of 5 runs, best run, ...)
    "trainable_params",  # as printed by the source
    "preset",            # experiment preset that reproduces the configuration, or empty
    "harness_overrides",  # Hydra overrides building model + method in the harness, or empty
    "read_from",         # where the number was read (citation)
    "notes",             # the shared file's notes, unchanged
    "curation",          # what was interpreted while structuring this row, and why
)


class ReferenceError(ValueError):
    """published.csv is malformed (message names the line and column)."""


@dataclass(frozen=True)
class Row:
    row_id: str
    config_id: str
    source: str
    table: str
    split: str
    model: str
    model_key: str
    method: str
    method_key: str
    method_config: str
    r: str
    alpha: str
    target_modules: str
    adapter_size: str
    prompt_length: str
    task: str
    task_key: str
    metric: str
    metric_key: str
    value: float
    value_as_printed: str
    pm: float | None
    aggregation: str
    trainable_params: str
    preset: str
    harness_overrides: str
    read_from: str
    notes: str
    curation: str
    line: int = field(default=0, compare=False)

    @property
    def cite(self) -> str:
        return f"{self.source}, {self.table}"


def _version_of(text: str) -> int | None:
    m = re.search(r"version (\d+)", text.splitlines()[0]) if text else None
    return int(m.group(1)) if m else None


def load(path: str | Path = CSV_PATH) -> list[Row]:
    """Parse and validate the reference file; raises ReferenceError with the line number."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    version = _version_of(text)
    if version != DATA_VERSION:
        raise ReferenceError(f"{path}: first line says version {version}, "
                             f"bench.reproduce.published.DATA_VERSION is {DATA_VERSION}")
    lines = text.splitlines(keepends=True)
    n_comments = 0
    while n_comments < len(lines) and lines[n_comments].startswith("#"):
        n_comments += 1
    reader = csv.DictReader(io.StringIO("".join(lines[n_comments:])))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ReferenceError(f"{path}: columns {reader.fieldnames} differ from bench.reproduce.published.COLUMNS")
    rows, seen = [], set()
    for i, rec in enumerate(reader):
        line = n_comments + 2 + i
        where = f"{path.name}:{line}"
        if None in rec or any(v is None for v in rec.values()):
            raise ReferenceError(f"{where}: wrong number of fields")
        if rec["row_id"] in seen:
            raise ReferenceError(f"{where}: duplicate row_id {rec['row_id']!r}")
        seen.add(rec["row_id"])
        try:
            value = float(rec["value"])
            pm = float(rec["pm"]) if rec["pm"] else None
        except ValueError:
            raise ReferenceError(f"{where}: value {rec['value']!r} / pm {rec['pm']!r} is not a number") from None
        if not math.isfinite(value):
            raise ReferenceError(f"{where}: value {value} is not finite")
        if rec["split"] not in ("dev", "test", "not stated"):
            raise ReferenceError(f"{where}: split {rec['split']!r}: expected dev, test or not stated")
        rows.append(Row(**{**rec, "value": value, "pm": pm}, line=line))
    return rows


def by_config(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.config_id, []).append(r)
    return out


# ----------------------------------------------------------------------------------------- counts

_COUNT = re.compile(r"(~)?(\d+(?:\.\d+)?)\s*([KMB])(?![a-zA-Z])")
_PCT = re.compile(r"(~)?(\d+(?:\.\d+)?)\s*%")
_UNIT = {"K": 1e3, "M": 1e6, "B": 1e9}


@dataclass(frozen=True)
class Published:
    """One published quantity: a count (parameters) or a percentage of the model, with the interval
    of true values that print as written (half a unit of the last printed digit either side)."""

    text: str
    kind: str           # "count" | "percent"
    value: float
    low: float
    high: float
    approx: bool        # printed with "~"

    def contains(self, x: float) -> bool:
        return self.low <= x < self.high

    def fmt(self, x: float) -> str:
        """`x` printed at this quantity's precision (to show what a measured count would print as)."""
        decimals = _decimals(self.text)
        if self.kind == "percent":
            return f"{x:.{decimals}f}%"
        unit = self.text.strip().lstrip("~")[-1]
        return f"{x / _UNIT[unit]:.{decimals}f}{unit}"


def _decimals(number_text: str) -> int:
    core = re.sub(r"[^0-9.]", "", number_text)
    return len(core.split(".")[1]) if "." in core else 0


def _interval(number: str, scale: float) -> tuple[float, float, float]:
    """Value and the interval that prints as `number`: half a unit of the last significant digit either
    side. Trailing zeros of an integer are not significant ('330' = 33 tens: [325, 335)), as usual for
    rounded sizes; with a decimal point every digit counts ('125.0' = [124.95, 125.05))."""
    v = float(number)
    if "." in number:
        unit = 10 ** (-_decimals(number))
    else:
        digits = number.lstrip("0") or "0"
        unit = 10 ** (len(digits) - len(digits.rstrip("0"))) if digits != "0" else 1
    half = 0.5 * unit * scale
    return v * scale, v * scale - half, v * scale + half


def parse_counts(text: str) -> list[Published]:
    """Every count and percentage in a printed `trainable_params` (or model name) cell, in order:
    '0.3M' -> [count 0.3M ± 0.05M]; '100% (~110M)' -> [100% ± 0.5, ~110M ± 0.5M];
    'not stated' -> []. Multipliers such as '(1.3x total)' are not quantities of the model."""
    found = []
    for m in _COUNT.finditer(text):
        v, lo, hi = _interval(m.group(2), _UNIT[m.group(3)])
        found.append((m.start(), Published(m.group(0).strip(), "count", v, lo, hi, bool(m.group(1)))))
    for m in _PCT.finditer(text):
        v, lo, hi = _interval(m.group(2), 1.0)
        found.append((m.start(), Published(m.group(0).strip(), "percent", v, lo, hi, bool(m.group(1)))))
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def model_size_in_name(model: str) -> Published | None:
    """'bert-large (330M)' -> 330M; names without a parenthesised size -> None."""
    m = re.search(r"\(([^)]*)\)", model)
    if not m:
        return None
    counts = [p for p in parse_counts(m.group(1)) if p.kind == "count"]
    return counts[0] if counts else None


__all__ = ["COLUMNS", "CSV_PATH", "DATA_VERSION", "Published", "ReferenceError", "Row", "by_config", "load",
           "model_size_in_name", "parse_counts"]
