"""The results layer: what every reader of records (report, regression gate, reproduction, the
end-of-sweep summary) must agree on, defined once.

* `sweep_dir`: where a sweep's records live, `<results_dir>/<sweep_name>`.
* `newest_per_seed`: which record counts when one seed cell was run more than once.
* `TaskCatalog`: task order, headline metric, display name and caption, read from the task specs
  stored in the records themselves (`record["config"]["task"]`), so a user's own task is shown
  as its YAML says; GLUE tasks without those fields fall back to the usual GLUE order and captions.
* `fmt_count` and `text_table`: how parameter counts and plain-text tables print.

Everything here reads records only (plain dicts as bench.records.schema.load_records returns them); it
never imports the report or the runner, so both can depend on it.

Record format: no new field. A task's optional display fields (`display_name`, `description`,
`order`; bench/data/tasks.py) travel inside the resolved config every record already stores, and are
left out of the config hash (records.HASH_EXCLUDED), so records of schema 1 and 2 read unchanged.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

#: Identity of one seed cell: records agreeing on these are reruns of one another.
SEED_KEY = ("model", "method_label", "task", "seed")

# ------------------------------------------------------------------------------------------- where


def sweep_dir(results_dir: str | os.PathLike, sweep_name: str) -> Path:
    """The folder of one sweep's records (and its ledger, deltas and logs)."""
    if not str(sweep_name):
        raise ValueError("sweep_name is empty: records would land directly in the results folder")
    return Path(str(results_dir)) / str(sweep_name)


def sweep_dir_of(cfg) -> Path:
    """`sweep_dir` of a composed config (anything with `results_dir` and `sweep_name`)."""
    return sweep_dir(cfg.results_dir, cfg.sweep_name)


def delta_dir(sweep: str | os.PathLike, run_id: str) -> Path:
    """Where a cell's kept delta lives: `<sweep>/deltas/<run_id>`, beside its record `<sweep>/<run_id>.json`."""
    return Path(sweep) / "deltas" / run_id


def record_of_delta(folder: str | os.PathLike) -> Path:
    """The record of a kept delta folder (the inverse of `delta_dir`): its name is the record's run_id."""
    folder = Path(folder)
    return folder.parent.parent / f"{folder.name}.json"


def kept_delta(record: dict, record_path: str | os.PathLike | None = None) -> Path | None:
    """The record's kept delta folder, or None. `storage.kept_at` is written as the run saw it
    (relative to the directory the run started in when results_dir was relative), so a reader
    started elsewhere, or results moved to another machine, would not find it: the folder beside
    the record (`delta_dir(record's folder, run_id)`) is tried next."""
    kept = (record.get("storage") or {}).get("kept_at")
    if not kept:
        return None
    if Path(kept).is_dir():
        return Path(kept)
    where = record_path or record.get("_path")
    if where and record.get("run_id"):
        beside = delta_dir(Path(where).parent, str(record["run_id"]))
        if beside.is_dir():
            return beside
    return None


class SourceError(ValueError):
    """A reference that does not name an ok record with a kept delta; the message names the file and
    what was expected, and each caller prefixes the option it came from."""


@dataclass(frozen=True)
class KeptSource:
    """An ok record and its kept delta folder, both resolved to absolute paths."""

    record: dict
    path: Path    # the record file
    delta: Path   # the kept delta folder (holds method.json)

    @cached_property
    def settings(self) -> dict:
        """The delta's method settings as its run wrote them (method.json); read once."""
        return json.loads((self.delta / "method.json").read_text(encoding="utf-8"))

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def config(self) -> dict:
        return self.record["config"]

    @property
    def headline(self) -> str:
        return self.record["headline_metric"]

    def entry(self) -> dict:
        """A composed record's `composed_from` entry for this source (bench/methods/composed.py)."""
        return {"run_id": self.record.get("run_id"), "record": str(self.path), "task": self.record.get("task"),
                "seed": self.record.get("seed"), "delta": str(self.delta), "method": self.settings.get("method")}


def resolve_kept(ref: str | os.PathLike) -> KeptSource:
    """The one reading of a source reference, shared by `train.init_from`, `bench.compose` and the
    learned combinations' `method.sources`, so that all three accept the same two spellings (the
    record file `<sweep>/<run_id>.json` or its kept delta folder `<sweep>/deltas/<run_id>`) and
    refuse the same things (a missing file, an unreadable or failed record, no kept delta)."""
    from bench.records.schema import read_record

    p = Path(str(ref))
    if p.is_dir():
        rec_path = record_of_delta(p)
        if not rec_path.is_file():
            raise SourceError(f"{rec_path}: no record for the delta folder {p} (a kept delta's folder name is its "
                              "record's run_id)")
    elif p.suffix == ".json":
        if not p.is_file():
            raise SourceError(f"{p}: no such record file (expected a <sweep>/<run_id>.json of a cell run with "
                              "save_delta=true)")
        rec_path = p
    else:
        raise SourceError(f"{p}: no such delta folder or record file (expected <sweep>/<run_id>.json or "
                          "<sweep>/deltas/<run_id>)")
    try:
        rec = read_record(rec_path)  # the one record reader: truncated JSON, unknown schema versions named
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    if rec.get("status") != "ok":
        raise SourceError(f"{rec_path}: the record has status {rec.get('status')!r}; only ok records are sources")
    kept = p if p.is_dir() else kept_delta(rec, rec_path)
    if kept is None or not (kept / "method.json").is_file():
        raise SourceError(f"{rec_path}: the record kept no delta folder with a method.json (run the source cell "
                          "with save_delta=true)")
    return KeptSource(rec, rec_path.resolve(), kept.resolve())


# ----------------------------------------------------------------------------------- which record


def _timestamp(rec: dict) -> float:
    """finished_at (else created_at) as seconds; -inf when absent or unparsable, so such records
    lose to any dated one. Parsed rather than compared as text: `Z` and `+00:00` are the same time."""
    for key in ("finished_at", "created_at"):
        v = rec.get(key)
        if isinstance(v, str) and v:
            try:
                dt = datetime.fromisoformat(v)
            except ValueError:
                continue
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return -math.inf


def recency(rec: dict) -> tuple:
    """Sort key, oldest first: time, then an ok record over a failed one, then the file path."""
    return (_timestamp(rec), rec.get("status") == "ok", str(rec.get("_path") or ""))


def seed_key(rec: dict, fields: Sequence[str] = SEED_KEY) -> tuple:
    return tuple(rec.get("method_label") or rec.get("method") if f == "method_label" else rec.get(f)
                 for f in fields)


def newest_per_seed(records: Iterable[dict], fields: Sequence[str] = SEED_KEY) -> tuple[list[dict], list[list[dict]]]:
    """One record per seed cell (`fields`), the newest by `recency`: a rerun with a changed config
    replaces the old result instead of being averaged with it. Returns (kept, superseded groups):
    each group lists every record of a seed cell that had several, oldest first (kept one last).
    Every status counts, so a newer failed run hides an older ok one: the cell as it stands."""
    groups: dict[tuple, list[dict]] = {}
    for rec in sorted(records, key=recency):
        groups.setdefault(seed_key(rec, fields), []).append(rec)
    return [g[-1] for g in groups.values()], [g for g in groups.values() if len(g) > 1]


# ------------------------------------------------------------------------------------------- tasks

#: GLUE fallbacks for records whose task spec lacks the display fields: (caption, headline), in
#: the order papers print GLUE.
GLUE = {
    "cola": ("CoLA, grammatical acceptability", "matthews_correlation"),
    "sst2": ("SST-2, sentiment of movie-review sentences", "accuracy"),
    "mrpc": ("MRPC, paraphrase (F1 of the equivalent class, and accuracy)", "f1"),
    "stsb": ("STS-B, sentence similarity scores", "pearson"),
    "qqp": ("QQP, duplicate questions (F1, and accuracy)", "f1"),
    "mnli": ("MNLI, entailment (matched dev set; mismatched as accuracy_mm)", "accuracy"),
    "qnli": ("QNLI, question answering as entailment", "accuracy"),
    "rte": ("RTE, entailment", "accuracy"),
    "wnli": ("WNLI, coreference as entailment", "accuracy"),
}
DEFAULT_HEADLINE = "accuracy"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    display_name: str
    headline: str
    description: str
    order: float  # position in tables; tasks without one follow, alphabetically


def _spec_of(rec: dict) -> dict:
    task = (rec.get("config") or {}).get("task") if isinstance(rec.get("config"), dict) else None
    return task if isinstance(task, dict) else {}


def _info(name: str, spec: dict, headline: str | None) -> TaskInfo:
    glue = GLUE.get(name)
    order = spec.get("order")
    if not isinstance(order, numbers.Real) or isinstance(order, bool):
        order = list(GLUE).index(name) if glue else math.inf
    return TaskInfo(name, str(spec.get("display_name") or name),
                    str(headline or spec.get("headline") or (glue[1] if glue else DEFAULT_HEADLINE)),
                    str(spec.get("description") or (glue[0] if glue else "")), float(order))


class TaskCatalog:
    """Display facts of the tasks in a set of records; the newest record's spec wins when a task's
    YAML changed between runs. Unknown task names get GLUE fallbacks or generic defaults."""

    def __init__(self, infos: dict[str, TaskInfo] | None = None):
        self._infos = dict(infos or {})

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> TaskCatalog:
        infos = {}
        for rec in sorted(records, key=recency):
            name = str(rec.get("task"))
            infos[name] = _info(name, _spec_of(rec), rec.get("headline_metric"))
        return cls(infos)

    def info(self, task: str) -> TaskInfo:
        return self._infos.get(str(task)) or _info(str(task), {}, None)

    def headline(self, task: str) -> str:
        return self.info(task).headline

    def key(self, task: str) -> tuple[float, str]:
        return (self.info(task).order, str(task))

    def sort(self, tasks: Iterable) -> list[str]:
        return sorted({str(t) for t in tasks}, key=self.key)


def selection_keys(spec: dict, headline: str | None = None) -> list[str]:
    """The selection-split metric(s) every choice (best epoch, a study's rate) is made on: the task
    spec's `select_metric` (one name, or a list whose mean is the score), else the headline.

    Why not always the headline: on an imbalanced task the F1 of the positive class is maximised by
    predicting that class everywhere (MRPC: F1 81.2 at 68.4 % accuracy), so choosing on it rewards a
    collapsed run; GLUE's own task score for MRPC/QQP (mean of F1 and accuracy) does not (docs/protocol.md)."""
    sel = spec.get("select_metric") if isinstance(spec, dict) else None
    if isinstance(sel, str) and sel:
        return [sel]
    if isinstance(sel, (list, tuple)) and sel and all(isinstance(k, str) and k for k in sel):
        return list(sel)
    head = headline or (spec.get("headline") if isinstance(spec, dict) else None)
    return [str(head)] if head else []


def selection_name(keys: Sequence[str]) -> str:
    """How a selection score is named in logs and records: `f1` or `mean(f1, accuracy)`."""
    return keys[0] if len(keys) == 1 else f"mean({', '.join(keys)})"


def selection_score(keys: Sequence[str], metrics: dict | None) -> float | None:
    """Mean of `metrics[k]` over the selection keys; None when any is missing or not finite."""
    vals = [(metrics or {}).get(k) for k in keys]
    if not keys or not all(_finite(v) for v in vals):
        return None
    return float(sum(vals) / len(vals))


def record_selection_keys(rec: dict) -> list[str]:
    """`selection_keys` of a record's own task spec and headline (older records: the headline)."""
    return selection_keys(_spec_of(rec), headline_of(rec))


def headline_of(rec: dict) -> str:
    """The metric a record leads with: its own `headline_metric`, else its task spec's, else GLUE's."""
    return _info(str(rec.get("task")), _spec_of(rec), rec.get("headline_metric")).headline


# ------------------------------------------------------------------------------------------ printing


def cpu_per_thread(rec: dict) -> float | None:
    """A cell's CPU seconds per torch thread (schema 5 `time.cpu_s`): with one thread per cell, the wall
    time it would have taken on a quiet machine. None for records before schema 5."""
    cpu = (rec.get("time") or {}).get("cpu_s")
    if cpu is None:
        return None
    return float(cpu) / max(1, int((rec.get("env") or {}).get("torch_threads") or 1))


def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def fmt_count(n, missing: str = "–") -> str:
    """A parameter count: exact below 1,000 (head_only's 385 prints as `385`), else three
    significant digits with K/M/B (1.23K, 38.4K, 22.7M, 125M, 1.10B), as papers print sizes.
    A mean over tasks is rounded to a whole count first. `missing` for None/NaN."""
    if not _finite(n):
        return missing
    n = round(float(n))
    if abs(n) < 1000:
        return str(int(n))
    for div, unit in ((1e3, "K"), (1e6, "M"), (1e9, "B")):
        text = f"{n / div:#.3g}".rstrip(".")
        if abs(float(text)) < 1000 or unit == "B":
            return (text if "e" not in text else f"{n / div:,.0f}") + unit
    raise AssertionError("unreachable")


def text_table(header: Sequence, rows: Iterable[Sequence], right: Iterable[int] = (),
               max_width: int | None = None) -> str:
    """Fixed-width plain text for a terminal: header, a rule, rows; columns in `right` are
    right-aligned, cells longer than `max_width` are cut with `…`; no trailing blanks."""
    table = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    if max_width:
        table = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r] for r in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    right = set(right)
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["GLUE", "SEED_KEY", "TaskCatalog", "TaskInfo", "cpu_per_thread", "fmt_count", "headline_of",
           "newest_per_seed", "recency",
           "record_selection_keys", "seed_key", "selection_keys", "selection_name", "selection_score", "sweep_dir",
           "sweep_dir_of", "text_table"]
