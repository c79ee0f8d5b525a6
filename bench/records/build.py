"""Assembling a record: its identity fields, its predictions file's name, what a failure leaves in it.

Why one builder: a trained cell's record (bench/sweep/execute.py), a failed or interrupted cell's
record and a composed model's record (bench/compose/core.py) are read by the same readers (report,
gate, reproduction, resume); when each place assembled its own, the identity fields, the timestamps
and the predictions file's naming could drift apart. The measured sections come from whoever
measured them (the recipe, the composition); the envelope comes from here."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.records.schema import (
    PREDICTIONS_SUFFIX,
    SCHEMA_VERSION,
    config_hash,
    record_stem,
    write_predictions,
)


def now() -> str:
    """A record's timestamps: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def identity(*, model: str, task: str, method: str, label: str, seed: int, config: dict, sweep: str) -> dict:
    """The fields that say which cell a record is: the run id is the record's file stem, made of the
    model, task, method label, seed and the hash of the resolved config (so resume finds it)."""
    chash = config_hash(config)
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": record_stem(model, task, label, int(seed), chash),
        "sweep": sweep,
        "model": model,
        "task": task,
        "method": method,
        "method_label": label,
        "seed": int(seed),
        "config": config,
        "config_hash": chash,
    }


def predictions_name(record_path: Path) -> str:
    """The predictions file beside a record: `<run_id>.predictions.json.gz`."""
    return Path(record_path).name[: -len(".json")] + PREDICTIONS_SUFFIX


def write_predictions_beside(record_path: Path, predictions: dict, run_id: str) -> str:
    """Write a record's predictions file (before the record, so an ok record never names a missing
    file) and return the name the record stores."""
    name = predictions_name(record_path)
    write_predictions(Path(record_path).parent / name, dict(predictions, run_id=run_id))
    return name


def failed(record: dict, partial: dict, *, status: str, etype: str, message: str, phase: str, where: str,
           log_name: str) -> dict:
    """A failed or interrupted cell's record: what it had measured before the failure (`partial`:
    data, params, memory, env ...) kept, no metrics, and an `error` that names the phase and the log."""
    record.update({k: v for k, v in partial.items() if k != "run_id"})
    record.update({
        "status": status,
        "metrics": {},
        "error": {"type": etype, "message": message, "phase": phase, "where": where, "log": log_name},
        "finished_at": now(),
    })
    return record
