"""Task layer: one YAML schema for GLUE and user tasks, strict data loading, seeded subsampling.

A task is data plus a scoring rule, so both live in the task YAML (conf/task/*.yaml; the
commented example is conf/task/example_csv.yaml). A new task needs a YAML file and data, no code.
Loading is strict (bench/data/loading.py, bench/data/readers.py): a benchmark number computed on
silently misread data is worse than no number.

Schema (keys beyond these are kept in TaskSpec.extra for other parts of the harness):
  name, kind (classification|regression), text_fields (1 or 2), label_field,
  labels (raw values in class-index order; classification only), label_names (optional),
  metrics, headline, root (folder for split paths; null -> hub), eval_splits (first = main),
  splits: {<split>: {path, format (tsv|csv|jsonl|parquet; default from the suffix),
           header (default true), columns (required without header), text_fields, label_field}},
  metric_suffix: {<eval split>: suffix} (optional; default "_<split>" for non-main splits),
  select_metric (optional): the metric, or list of metrics whose mean, every choice on the selection
  split is made on (best epoch, a study's rate); default the headline (bench.records.results.selection_keys),
  hub: {path, name, splits: {<split>: <hub split>}, text_fields, label_field} (optional),
  display_name, description, order (optional, display only: how reports name, caption and order the
  task; left out of the config hash, see bench/records/results.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.metrics import KNOWN_METRICS, compute_metrics
from bench.data.readers import FORMATS, DataError, Example, infer_format

__all__ = ["DataError", "Example", "TaskSpec", "evaluate_predictions", "metric_keys",
           "metric_suffix", "selection_keys", "selection_score", "task_spec"]

KINDS = ("classification", "regression")
METRICS_FOR_KIND = {"classification": ("accuracy", "f1", "matthews_correlation"),
                    "regression": ("pearson", "spearmanr")}
_KNOWN_KEYS = {"name", "kind", "text_fields", "label_field", "labels", "label_names", "metrics", "headline",
               "root", "splits", "eval_splits", "hub", "metric_suffix", "display_name", "description", "order",
               "select_metric"}
_SPLIT_KEYS = {"path", "format", "header", "columns", "text_fields", "label_field"}
_HUB_KEYS = {"path", "name", "splits", "text_fields", "label_field"}


@dataclass
class TaskSpec:
    name: str
    kind: str
    text_fields: list[str]
    label_field: str
    labels: list[str] | None
    label_names: list[str] | None
    metrics: list[str]
    headline: str
    eval_splits: list[str]
    splits: dict
    root: str | None
    hub: dict | None
    metric_suffix: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    display_name: str | None = None
    description: str | None = None
    order: float | None = None
    select_metric: list[str] = field(default_factory=list)  # [] -> the headline

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2


# ----------------------------------------------------------------------------------------- validation

def _bad(name: str, key: str, expected: str, got: Any = None) -> ValueError:
    got_txt = "" if got is None else f", got {got!r}"
    return ValueError(f"task {name}: field `{key}` must be {expected}{got_txt}")


def _str_list(name: str, key: str, value: Any, n_min: int = 1, n_max: int | None = None) -> list[str]:
    count = f"{n_min}" if n_max == n_min else (f"{n_min}-{n_max}" if n_max else f"at least {n_min}")
    if not isinstance(value, (list, tuple)) or not (n_min <= len(value) <= (n_max or len(value))) \
            or not all(isinstance(v, str) and v for v in value):
        raise _bad(name, key, f"a list of {count} non-empty strings", value)
    return list(value)


def _to_plain(cfg: Any) -> dict:
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        OmegaConf = None
    if OmegaConf is not None and OmegaConf.is_config(cfg):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # e.g. ${data.glue_dir} with no `data` section
            raise ValueError(f"task config could not be resolved: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"task config must be a mapping, got {type(cfg).__name__}")  # noqa: TRY004
    return cfg


def task_spec(cfg: Any) -> TaskSpec:
    """Validate a task config (DictConfig or dict) so that mistakes surface before any training."""
    c = _to_plain(cfg)
    name = c.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"task config: field `name` must be a non-empty string, got {name!r}")
    kind = c.get("kind")
    if kind not in KINDS:
        raise _bad(name, "kind", f"one of {list(KINDS)}", kind)
    text_fields = _str_list(name, "text_fields", c.get("text_fields"), 1, 2)
    label_field = c.get("label_field")
    if not isinstance(label_field, str) or not label_field:
        raise _bad(name, "label_field", "a non-empty string (the column holding the label)", label_field)
    labels, label_names = _labels(name, kind, c.get("labels"), c.get("label_names"))
    splits, root, hub = _sources(name, c)
    eval_splits = _eval_splits(name, c, splits, root, hub)
    suffix = c.get("metric_suffix") or {}
    if not isinstance(suffix, dict) or not all(k in eval_splits[1:] and isinstance(v, str) and v
                                               for k, v in suffix.items()):
        raise _bad(name, "metric_suffix", "a mapping {non-main eval split: suffix string}", suffix)
    spec = TaskSpec(name, kind, text_fields, label_field, labels, label_names, [], "", eval_splits, splits,
                    root, hub, dict(suffix), {k: v for k, v in c.items() if k not in _KNOWN_KEYS})
    spec.metrics, spec.headline = _metrics(spec, c)
    _display(spec, c)
    spec.select_metric = _select_metric(spec, c.get("select_metric"))
    return spec


def _labels(name: str, kind: str, labels, label_names):
    """Raw label values (as strings: YAML `[0, 1]` means `["0", "1"]`) and display names, for a
    classification task; nothing for a regression task."""
    if kind == "classification":
        if isinstance(labels, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in labels):
            labels = [str(v) for v in labels]
        labels = _str_list(name, "labels", labels, 2)
        if len(set(labels)) != len(labels):
            raise _bad(name, "labels", "a list of distinct raw label values", labels)
        if label_names is not None:
            label_names = _str_list(name, "label_names", label_names, len(labels), len(labels))
    elif labels is not None or label_names is not None:
        raise _bad(name, "labels", "absent (or null) for a regression task", labels)
    return labels, label_names


def _sources(name: str, c: dict):
    """Where the rows come from: local split files under `root`, else the hub section."""
    splits_cfg = c.get("splits") or {}
    if not isinstance(splits_cfg, dict):
        raise _bad(name, "splits", "a mapping of split name -> {path, format, ...}", splits_cfg)
    splits = {s: _split(name, s, v) for s, v in splits_cfg.items()}
    hub = _hub(name, c.get("hub"))
    root = c.get("root")
    if root is not None and (not isinstance(root, (str, Path)) or not str(root)):
        raise _bad(name, "root", "a folder path or null (null: read from the hub)", root)
    root = None if root is None else str(root)
    if root is None and hub is None:
        raise ValueError(f"task {name}: `root` is null and no `hub` is configured; set root "
                         f"(for GLUE: data.glue_dir / env BENCH_GLUE_DIR) or add a hub section")
    if root is not None and not splits:
        raise _bad(name, "splits", "a non-empty mapping when `root` is set", splits_cfg)
    return splits, root, hub


def _eval_splits(name: str, c: dict, splits: dict, root, hub) -> list[str]:
    eval_splits = _str_list(name, "eval_splits", c.get("eval_splits"), 1)
    for s in eval_splits:
        if root is not None and s not in splits:
            raise _bad(name, "eval_splits", f"names from `splits` {list(splits)}", s)
        if root is None and s not in hub["splits"]:
            raise _bad(name, "eval_splits", f"names from `hub.splits` {list(hub['splits'])}", s)
    return eval_splits


def _metrics(spec: TaskSpec, c: dict) -> tuple[list[str], str]:
    """The reported metrics (each computable for the task's kind, on some eval split) and the headline."""
    name, kind = spec.name, spec.kind
    metrics = _str_list(name, "metrics", c.get("metrics"), 1)
    reportable = {key for s in spec.eval_splits for key in metric_keys(spec, s, METRICS_FOR_KIND[kind]).values()}
    for m in metrics:
        if m not in reportable:
            raise _bad(name, "metrics", f"names from {list(METRICS_FOR_KIND[kind])} for a {kind} task"
                       f" (known: {list(KNOWN_METRICS)}), optionally with the suffix of a non-main eval"
                       f" split ({[metric_suffix(spec, s) for s in spec.eval_splits[1:]]})", m)
    if "f1" in metrics and len(spec.labels) != 2:
        raise ValueError(f"task {name}: field `metrics` has f1 (binary, class index 1 positive), which needs "
                         f"exactly 2 labels; this task has {len(spec.labels)}")
    headline = c.get("headline")
    if headline not in metrics:
        raise _bad(name, "headline", f"one of `metrics` {metrics}", headline)
    return metrics, headline


def _display(spec: TaskSpec, c: dict) -> None:
    """What reports show of the task: its display name, description and place in the task order."""
    for key in ("display_name", "description"):
        v = c.get(key)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise _bad(spec.name, key, "a non-empty string or absent (shown in reports)", v)
        setattr(spec, key, v)
    order = c.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))
                              or not math.isfinite(order)):
        raise _bad(spec.name, "order", "a number or absent (reports list tasks by it, then alphabetically)", order)
    spec.order = order


def _select_metric(spec: TaskSpec, value: Any) -> list[str]:
    """`select_metric`: absent, a metric name or a list of them, from the main split's metric keys
    (the selection split is scored under those names)."""
    if value is None:
        return []
    allowed = sorted(set(metric_keys(spec, spec.eval_splits[0]).values()))
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names \
            or not all(isinstance(v, str) and v in allowed for v in names) \
            or len(set(names)) != len(names):
        raise _bad(spec.name, "select_metric", f"absent, one of {allowed} or a list of distinct names from them "
                   "(the selection score is their mean)", value)
    return list(names)


def selection_keys(spec: TaskSpec) -> list[str]:
    """The metric(s) whose mean a choice on the selection split maximises (default: the headline)."""
    return list(spec.select_metric) or [spec.headline]


def selection_score(spec: TaskSpec, metrics: dict) -> float:
    """The selection score of one evaluation's metrics (keys without a split suffix)."""
    keys = selection_keys(spec)
    return float(sum(metrics[k] for k in keys) / len(keys))


def _split(name: str, split: str, v: Any) -> dict:
    key = f"splits.{split}"
    if not isinstance(v, dict) or not isinstance(v.get("path"), str) or not v["path"]:
        raise _bad(name, key, "a mapping with a `path` (relative to `root`)", v)
    unknown = set(v) - _SPLIT_KEYS
    if unknown:
        raise _bad(name, key, f"a mapping with keys from {sorted(_SPLIT_KEYS)}", sorted(unknown))
    fmt = v.get("format") or infer_format(v["path"])
    if fmt not in FORMATS:
        raise _bad(name, f"{key}.format", f"one of {list(FORMATS)} (or a path ending in .tsv/.csv/.jsonl/.parquet)",
                   v.get("format"))
    header = v.get("header", True)
    if not isinstance(header, bool):
        raise _bad(name, f"{key}.header", "true or false", header)
    columns = v.get("columns")
    if columns is not None:
        if fmt not in ("tsv", "csv"):
            raise _bad(name, f"{key}.columns", "absent for jsonl/parquet (they name their own fields)", columns)
        columns = _str_list(name, f"{key}.columns", columns, 1)
    elif not header and fmt in ("tsv", "csv"):
        raise _bad(name, f"{key}.columns", "the list of column names when `header: false`")
    out = {"path": v["path"], "format": fmt, "header": header, "columns": columns}
    if v.get("text_fields") is not None:
        out["text_fields"] = _str_list(name, f"{key}.text_fields", v["text_fields"], 1, 2)
    if v.get("label_field") is not None:
        out["label_field"] = str(v["label_field"])
    return out


def _hub(name: str, v: Any) -> dict | None:
    if v is None:
        return None
    if not isinstance(v, dict) or not isinstance(v.get("path"), str) or not isinstance(v.get("splits"), dict) \
            or not v["splits"] or set(v) - _HUB_KEYS:
        raise _bad(name, "hub", f"null or a mapping with `path`, `splits` and optional keys from "
                   f"{sorted(_HUB_KEYS)}", v)
    out = {"path": v["path"], "name": v.get("name"), "splits": {str(k): str(s) for k, s in v["splits"].items()}}
    if v.get("text_fields") is not None:
        out["text_fields"] = _str_list(name, "hub.text_fields", v["text_fields"], 1, 2)
    if v.get("label_field") is not None:
        out["label_field"] = str(v["label_field"])
    return out


# ---------------------------------------------------------------------------------------- evaluation

def metric_suffix(spec: TaskSpec, split: str) -> str:
    """The suffix of a split's metric keys: "" for the main eval split (MNLI mismatched: "_mm")."""
    if split == spec.eval_splits[0]:
        return ""
    return spec.metric_suffix.get(split, f"_{split}")


def metric_keys(spec: TaskSpec, split: str, base: Sequence[str] | None = None) -> dict[str, str]:
    """{base metric: reported key} for a split; the main eval split has no suffix (MNLI: accuracy_mm)."""
    if base is None:
        base = []
        for m in spec.metrics:
            for s in spec.eval_splits[1:]:
                if m.endswith(metric_suffix(spec, s)) and m[: -len(metric_suffix(spec, s))] in KNOWN_METRICS:
                    m = m[: -len(metric_suffix(spec, s))]
                    break
            if m not in base:
                base.append(m)
    return {b: b + metric_suffix(spec, split) for b in base}


def evaluate_predictions(spec: TaskSpec, split: str, predictions, references) -> dict[str, float]:
    """Score one split with the task's metrics; keys carry the split's suffix (see metric_keys)."""
    import numpy as np

    preds = np.asarray(predictions, dtype=np.float64)
    refs = np.asarray(references, dtype=np.float64)
    if preds.ndim != 1 or preds.shape != refs.shape:
        raise ValueError(f"task {spec.name} {split}: predictions {preds.shape} and references {refs.shape} must "
                         f"be 1-d and of equal length")
    if spec.kind == "classification":
        for what, a in (("predictions", preds), ("references", refs)):
            if not np.all((a == np.round(a)) & (a >= 0) & (a < spec.num_labels)):
                raise ValueError(f"task {spec.name} {split}: {what} must be class indices 0..{spec.num_labels - 1}"
                                 f" (argmax of the logits)")
    keys = metric_keys(spec, split)
    scores = compute_metrics(list(keys), preds, refs)
    return {keys[m]: v for m, v in scores.items()}
