"""Records -> one flat DataFrame row per record: the first step of bench.analysis.aggregate.

Kept apart from the statistics so that what a record contributes (identity, headline, every numeric
leaf of its measurement sections) is defined in one short place. Values stay on the records' own
scale (metrics 0-1); nothing here is averaged or formatted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.records.results import SEED_KEY, headline_of, record_selection_keys, selection_score

# Nested record sections whose numeric leaves are measurements (aggregated like metrics).
MEASURE_SECTIONS = ("params", "memory", "throughput", "time", "storage", "train", "data")
ERROR_FIELDS = ("type", "message", "phase", "where", "log")
STUDY_FIELDS = ("name", "role", "trial_index", "n_trials", "lr", "selected_lr", "selection_score", "trial_seed",
                "rejected")
# Quantities the tables and plots always show: present as columns (NaN) even when no record has
# them, so that a results folder from an older or partial runner still gives a report.
#: the record's `retention` section as columns (docs/retention.md): column -> path in the section.
#: forgetting: skill lost (positive = worse; encoders: similarity Spearman before - after, decoders: LM
#: loss after - before); drift: 1 - linear CKA of pooled features (0 = unchanged); intruders: intruder
#: dimensions summed over the adapted matrices, and per matrix.
RETENTION_COLUMNS = {"retention.forgetting": ("skill", "forgetting"), "retention.skill_before": ("skill", "before"),
                     "retention.skill_after": ("skill", "after"), "retention.cka": ("drift", "cka"),
                     "retention.intruders": ("intruders", "total"),
                     "retention.intruders_per_matrix": ("intruders", "mean_per_matrix"),
                     "retention.seconds": ("seconds",)}
CORE_QUANTITIES = ("params.trainable", "params.total", "params.head", "params.trainable_pct",
                   "memory.peak_rss_bytes", "memory.cuda_peak_allocated_bytes",
                   "throughput.train_samples_per_s", "time.train_s", "storage.bytes")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _flatten(prefix: str, node: dict, out: dict) -> None:
    # Hot loop (every leaf of every record): exact type checks first, JSON gives int/float.
    for k, v in node.items():
        t = type(v)
        if t is float or t is int:
            out[f"{prefix}.{k}"] = float(v)
        elif t is dict:
            _flatten(f"{prefix}.{k}", v, out)
        elif t is not bool and _is_number(v):
            out[f"{prefix}.{k}"] = float(v)


def retention_values(rec: dict) -> dict:
    """The retention columns of one record (absent where the record has no retention section)."""
    section, out = rec.get("retention"), {}
    if not isinstance(section, dict):
        return out
    for col, path in RETENTION_COLUMNS.items():
        node = section
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if _is_number(node):
            out[col] = float(node)
    if "retention.cka" in out:
        out["retention.drift"] = 1.0 - out["retention.cka"]
    return out


def records_to_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record (any status).

    Identity columns: model, method, method_label, task, seed, status, config_hash, finished_at
    (UTC Timestamp, NaT when absent), created_at, headline_metric, sweep, run_id, path (the record
    file, from `_path`), predictions (file name or None), error_type, error_message, error_phase,
    error_where, error_log, study_<f> for f in STUDY_FIELDS (None without a study block).
    Value columns (float): `headline` (= metrics[headline_metric]), `metrics.<name>` and
    `<section>.<leaf>` for every numeric leaf of params/memory/throughput/time/storage/train/data.
    """
    rows = []
    for rec in records:
        task = str(rec.get("task"))
        headline = headline_of(rec)
        metrics = rec.get("metrics") or {}
        error = rec.get("error") or {}
        row = {
            "model": str(rec.get("model")),
            "method": str(rec.get("method")),
            "method_label": str(rec.get("method_label") or rec.get("method")),
            "task": task,
            "seed": int(rec.get("seed")),
            "status": str(rec.get("status")),
            "config_hash": str(rec.get("config_hash") or ""),
            "finished_at": rec.get("finished_at"),
            "created_at": rec.get("created_at"),
            "headline_metric": headline,
            "sweep": rec.get("sweep"),
            "run_id": rec.get("run_id"),
            "path": rec.get("_path"),
            "predictions": rec.get("predictions") or None,
        }
        study = dict(rec.get("study")) if isinstance(rec.get("study"), dict) else {}
        if study and study.get("selection_score") is None:  # the runner records it as selection_metrics
            sel = rec.get("selection_metrics") or {}
            study["selection_score"] = (selection_score(record_selection_keys(rec), sel)
                                       if isinstance(sel, dict) else None)
        for f in STUDY_FIELDS:
            v = study.get(f)
            row[f"study_{f}"] = v if v is None or isinstance(v, str) or _is_number(v) else str(v)
        for f in ERROR_FIELDS:
            row[f"error_{f}"] = error.get(f) if isinstance(error, dict) else None
        val = metrics.get(headline) if isinstance(metrics, dict) else None
        row["headline"] = float(val) if _is_number(val) else np.nan
        if isinstance(metrics, dict):
            _flatten("metrics", metrics, row)
        for section in MEASURE_SECTIONS:
            if isinstance(rec.get(section), dict):
                _flatten(section, rec[section], row)
        row.update(retention_values(rec))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(SEED_KEY) + ["status", "headline"])
    absent = [q for q in CORE_QUANTITIES if q not in frame.columns]
    if absent:
        frame = pd.concat([frame, pd.DataFrame(np.nan, index=frame.index, columns=absent)], axis=1)
    for col in ("finished_at", "created_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, errors="coerce", format="ISO8601")
    for col in value_columns(frame):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def value_columns(frame: pd.DataFrame) -> list[str]:
    """The aggregated quantities: headline first, then metrics, then measurements (sorted)."""
    metric = sorted(c for c in frame.columns if c.startswith("metrics."))
    measure = sorted(c for c in frame.columns if c.split(".", 1)[0] in (*MEASURE_SECTIONS, "retention") and "." in c)
    return (["headline"] if "headline" in frame.columns else []) + metric + measure
