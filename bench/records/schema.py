"""Result records: the one file format every other part of peft-bench agrees on.

Writing is atomic (temp file + fsync + rename in the same folder) so that a killed sweep never
leaves a half-written record behind; reading never raises on a bad file but reports it, so one
hand-edited record cannot take a report or a regression gate down with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config.rules import HASHED_UNLESS_DEFAULT, NOT_HASHED
from bench.config.schema import METHOD_DECLARATIONS, identity_of

SCHEMA_VERSION = 5
#: Versions this code reads. 2 added `predictions` (per-example predictions file), the selection
#: split (`data.selection`, `selection_metrics`) and optional sections (`study`, `inference`);
#: a version-1 record simply lacks them, and every reader treats them as optional. Keys added since
#: (`flops`, `train.stop_after_epochs`) are additive in the same way and did not bump the version.
#: 3 added `capabilities`, `collapse`, `trackers` and the inference section's
#: precision fields; every one is optional to readers, so versions 1 and 2 read as before.
#: 4 added `method_file` (method=peft: the peft file's path, sha256 and what of it was ignored, dropped or
#: replaced), `retention` (docs/retention.md), `checkpoint` (a cell's checkpoint saves and resumes,
#: bench/training/checkpoint.py) and the `interrupted` record's `error.signal`; all optional to readers.
#: 5 added `time.cpu_s` (the cell process's CPU time) and `time.load_avg` (the machine's 1-minute load
#: when the cell started and ended), so a time measured on a shared machine can be read for what it is.
READABLE_VERSIONS = (1, 2, 3, 4, 5)
PREDICTIONS_SUFFIX = ".predictions.json.gz"
TRACKING_DIR = "tracking"  # <results_dir>/tracking/: what the experiment trackers write (bench/recipe/trackers.py)
STATUSES = ("ok", "failed", "interrupted")
REQUIRED_FIELDS = ("schema_version", "status", "model", "task", "method", "seed")

#: keys of nodes that have no dataclass in bench.config.schema and still enter no run's identity: Hydra's own
#: node, the trackers, a study's per-cell bookkeeping, the process's cell count, where a task file was and how
#: reports show a task, what a method declares for experiments, and method=peft's file path (its content,
#: method.adapter_config, is hashed)
UNTYPED_UNHASHED = ("hydra", "logger", "study_cell", "_parallel_cells", "task.root", "task.display_name",
                    "task.description", "task.order", *(f"method.{k}" for k in METHOD_DECLARATIONS),
                    "method.config_file")
#: every key left out of the config hash: the fields whose identity is NOT_HASHED (bench.config.schema), then the
#: untyped ones above
HASH_EXCLUDED = (*identity_of(NOT_HASHED), *UNTYPED_UNHASHED)
#: dotted key -> default of the fields hashed only when not at their default (HASHED_UNLESS_DEFAULT)
AT_DEFAULT_UNHASHED = identity_of(HASHED_UNLESS_DEFAULT)


def _old_spelling(cfg: dict) -> None:
    """Renamed method settings (bench.config.renamed) hashed in the spelling before, so a config written
    either way is one cell and every earlier record keeps its run id."""
    from bench.config.renamed import renamed_for

    method = cfg.get("method")
    if not isinstance(method, dict):
        return
    for old, new in renamed_for(method).items():
        if new in method and old not in method:
            method[old] = method.pop(new)


def _drop(cfg: dict, dotted: str) -> None:
    parts = dotted.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def _source_run_id(ref):
    """A source path's identity: the run_id its file or folder is named by (`<sweep>/<run_id>.json`,
    `<sweep>/deltas/<run_id>`; bench.records.results.resolve_kept). A task name (`train.init_from=mnli`)
    is not a path and stays as it is."""
    text = str(ref)
    if "/" not in text and not text.endswith(".json"):
        return ref
    name = text.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".json")


def _source_identity(cfg: dict) -> None:
    """Sources enter the hash by what they are, not by how their path was spelled: `results/x.json`,
    `./results/x.json`, an absolute path or the delta folder of the same record (and results moved to
    another folder, as results_dir is excluded) name one source, so they name one cell."""
    train, method = cfg.get("train"), cfg.get("method")
    if isinstance(train, dict) and train.get("init_from") not in (None, ""):
        train["init_from"] = _source_run_id(train["init_from"])
    if isinstance(method, dict) and isinstance(method.get("sources"), list):
        method["sources"] = [_source_run_id(s) for s in method["sources"]]


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of a resolved config without run-control settings."""
    cfg = json.loads(json.dumps(config, default=str))
    for key in HASH_EXCLUDED:
        _drop(cfg, key)
    for dotted, default in AT_DEFAULT_UNHASHED.items():  # at its default: the cell it was before the key
        *parents, key = dotted.split(".")
        node = cfg
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == default:
            del node[key]
    if ((cfg.get("train") or {}) if isinstance(cfg.get("train"), dict) else {}).get("select") != "best_epoch":
        # The selection score only chooses an epoch under best_epoch (a study's rate is chosen after the
        # trials ran, from their stored selection metrics): elsewhere it changes nothing a cell measures,
        # and leaving it out keeps every select=last cell (default sweep, gate) the cell it was.
        _drop(cfg, "task.select_metric")
    _source_identity(cfg)
    _old_spelling(cfg)
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def safe_label(text: str) -> str:
    """File-name-safe version of a method label (`lora[r=16]` -> `lora[r=16]` minus odd chars)."""
    keep = []
    for ch in text:
        keep.append(ch if ch.isalnum() or ch in "-_=.,[]+" else "_")
    return "".join(keep)


def record_stem(model: str, task: str, method_label: str, seed: int, chash: str) -> str:
    return f"{safe_label(model)}__{safe_label(task)}__{safe_label(method_label)}__s{seed}__{chash[:8]}"


def current_umask() -> int:
    """This process's umask, read without changing it where Linux says it (/proc/self/status, no
    race with other threads); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_mode() -> int:
    """The mode a plain open() gives a new file: 0o666 less the umask (group-readable on a shared
    results folder where the umask allows it)."""
    return 0o666 & ~current_umask()


def atomic_write(path: Path, mode: str, write) -> Path:
    """Create `path` atomically: `write(fh)` fills a temporary file in the same folder (fsynced),
    which then replaces `path`; a failure leaves no partial file behind. The file gets the mode a
    plain open() would give it (mkstemp's private 0600 would survive the rename and keep a shared
    results folder's records from the group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, plain_mode())
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_record(path: str | os.PathLike, record: dict) -> Path:
    """Write `record` as JSON to `path` atomically; returns the final path."""
    def write(fh):
        json.dump(record, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")

    return atomic_write(Path(path), "w", write)


def _json_default(obj: Any):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


#: What is wrong with a bad record file, in the words reports and the gate print (BadRecord.kind).
BAD_KINDS = ("truncated", "not valid JSON", "unknown schema_version", "not a record", "cannot read")
#: A record's file name (bench.records.schema.record_stem + .json): such a file that holds no record is named as bad;
#: any other JSON in a results folder (baselines, a delta folder's config files) is not a record and is skipped.
RECORD_NAME = re.compile(r"__s-?\d+__[0-9a-f]{8}\.json$")


@dataclass
class BadRecord:
    """A file that looks like a record but cannot be used; reported by file and reason, never fatal.
    `kind`: one of BAD_KINDS, so a reader can count or group them."""

    path: Path
    reason: str
    kind: str = "not a record"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _json_problem(raw: str, exc: json.JSONDecodeError) -> tuple[str, str]:
    """(kind, reason) of a file that does not parse: `truncated` when the parser ran out of text
    (a write cut short, a full disk, a copy that stopped), else `not valid JSON` (a hand edit)."""
    where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if not raw.strip():
        return "truncated", "truncated: the file is empty"
    if exc.pos >= len(raw.rstrip()) or exc.msg.startswith("Unterminated string"):  # a string runs to the end
        return "truncated", f"truncated: the JSON ends before it is complete ({where})"
    return "not valid JSON", f"not valid JSON ({where})"


def read_record(path: str | os.PathLike, parsed: Any = None) -> dict:
    """Read and validate one record; raises ValueError with the file name and the problem.
    `parsed`: the file's JSON when the caller has already parsed it."""
    path = Path(path)
    if parsed is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    rec = parsed
    if not isinstance(rec, dict):
        # a ValueError, not a TypeError: callers catch ValueError for any unreadable record
        raise ValueError(f"{path}: expected a JSON object, found {type(rec).__name__}")  # noqa: TRY004
    # the version first: a newer schema may name its fields differently, so its other checks would mislead
    if "schema_version" in rec and rec["schema_version"] not in READABLE_VERSIONS:
        raise ValueError(f"{path}: unknown schema_version {rec['schema_version']!r}: this peft-bench reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))} "
                         "(written by a newer peft-bench? upgrade to read it)")
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    if isinstance(rec["seed"], bool) or not isinstance(rec["seed"], int):
        raise ValueError(f"{path}: seed {rec['seed']!r}, expected an integer")  # noqa: TRY004 - as above
    for key in ("model", "task", "method"):
        if not isinstance(rec[key], str) or not rec[key]:
            raise ValueError(f"{path}: {key} {rec[key]!r}, expected a non-empty string")
    if rec["status"] not in STATUSES:
        raise ValueError(f"{path}: status {rec['status']!r}, expected one of {', '.join(STATUSES)}")
    if rec["status"] == "ok" and not isinstance(rec.get("metrics"), dict):
        raise ValueError(f"{path}: status ok but no 'metrics' object")
    return rec


def iter_record_files(root: str | os.PathLike) -> Iterable[Path]:
    root = Path(root)
    if root.is_file():
        yield root
        return
    for p in sorted(root.rglob("*.json")):  # predictions files end in .json.gz: not matched
        parts = p.relative_to(root).parts
        if p.name.startswith(".") or any(part.startswith(".") for part in parts[:-1]):
            continue
        if parts[0] == TRACKING_DIR and len(parts) > 1:  # trackers' copies of records (bench/recipe/trackers.py)
            continue
        yield p


def load_records(root: str | os.PathLike) -> tuple[list[dict], list[BadRecord]]:
    """All records under `root` (recursively). Each good record gets `_path` (its file).

    JSON files that are not records (no `schema_version`, and not named like a record) are skipped
    silently so that a results folder may also hold baselines, delta folders or other JSON; files
    that claim to be records but are broken are returned as BadRecord with a kind and a reason
    (truncated, not valid JSON, unknown schema_version, not a record), so that every reader can
    name them and go on.
    """
    good: list[dict] = []
    bad: list[BadRecord] = []
    for p in iter_record_files(root):
        try:
            raw = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            bad.append(BadRecord(p, f"cannot read ({getattr(exc, 'strerror', None) or exc})", "cannot read"))
            continue
        try:
            probe = json.loads(raw)
        except json.JSONDecodeError as exc:
            kind, reason = _json_problem(raw, exc)
            bad.append(BadRecord(p, reason, kind))
            continue
        if not isinstance(probe, dict) or "schema_version" not in probe:
            if RECORD_NAME.search(p.name):
                held = ("a JSON object without schema_version" if isinstance(probe, dict)
                        else f"a JSON {type(probe).__name__}")
                bad.append(BadRecord(p, f"not a record: named like one but holds {held}", "not a record"))
            continue
        try:
            rec = read_record(p, parsed=probe)
        except ValueError as exc:
            reason = str(exc).split(": ", 1)[-1]
            if probe.get("schema_version") in READABLE_VERSIONS:
                bad.append(BadRecord(p, f"not a record: {reason}", "not a record"))
            else:
                bad.append(BadRecord(p, reason, "unknown schema_version"))
            continue
        rec["_path"] = str(p)
        good.append(rec)
    return good, bad


def bad_record_lines(bad: list[BadRecord], prefix: str = "unreadable record (ignored): ") -> list[str]:
    """One line per bad record file, `<prefix><path>: <reason>`: what the report and the gate print,
    so nobody has to hunt for the files behind "2 unreadable"."""
    return [f"{prefix}{b}" for b in bad]


# ------------------------------------------------------------------------------- per-example predictions

def write_predictions(path: str | os.PathLike, payload: dict) -> Path:
    """Write a predictions file (gzip JSON) atomically.

    Layout: {"format": "peft-bench-predictions", "version": 1, "run_id", "task", "kind"
    (classification|regression), "num_labels", "splits": {<split>: {"role": "eval"|"selection",
    "metric_suffix": str, "ids": [row index in the split's file], "predictions": [class index or
    float], "references": [...]}}}. Ids index the rows of the split as the task loader reads them,
    so two runs on the same task can be paired example by example.
    """
    import gzip

    blob = json.dumps(payload, separators=(",", ":"), default=_json_default).encode("utf-8")

    def write(fh):
        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(blob)

    return atomic_write(Path(path), "wb", write)


def predictions_path(record: dict) -> Path | None:
    """Where a record's predictions file is (None for records without one, e.g. schema 1)."""
    name = record.get("predictions")
    if not name:
        return None
    base = Path(record["_path"]).parent if record.get("_path") else Path(".")
    return base / name


def load_predictions(record: dict) -> dict | None:
    """The record's per-example predictions, or None when it has none; ValueError naming the
    file when the file is missing or unreadable."""
    import gzip

    path = predictions_path(record)
    if path is None:
        return None
    try:
        with gzip.open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: predictions file named by record {record.get('run_id')} is missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read predictions ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("splits"), dict):
        raise ValueError(f"{path}: not a peft-bench predictions file (no 'splits' object)")  # noqa: TRY004 - as above
    return data
