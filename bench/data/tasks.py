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

from bench.config.resolvers import resolved
from bench.config.schema import BOOL, MAPPING, TEXT, Rule, check_value, choice, list_of, unknown_key
from bench.data.metrics import KNOWN_METRICS, compute_metrics
from bench.data.readers import FORMATS, DataError, Example, infer_format
from bench.errors import ConfigError

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
# Every field is checked by bench.config.schema's rules and check_value, as settings and method fields are: the
# message names the task and the field, shows the value and says what was expected. A bad task file raises
# ValueError (bench.recipe.validate.check turns it into a ConfigError, exit 2).

def _check(name: str, key: str, value: Any, rule: Rule) -> Any:
    """`value` of the task's field `key` against `rule`; ValueError "task NAME: `KEY`=VALUE: expected ..."."""
    return check_value(f"task {name}: `{key}`", value, rule, ValueError)


def _texts(lo: int = 1, hi: int | None = None) -> Rule:
    """A list of `lo` to `hi` non-empty strings."""
    count = f"{lo}" if hi == lo else (f"{lo}-{hi}" if hi else f"at least {lo}")
    return list_of(TEXT, f"a list of {count} non-empty strings", lo, hi)


LABEL_VALUE = Rule("a raw label value", lambda v: (isinstance(v, int) and not isinstance(v, bool)) or TEXT(v))
LABELS = Rule("a list of at least 2 distinct raw label values (strings or integers)",
              lambda v: list_of(LABEL_VALUE, "", 2)(v) and len({str(x) for x in v}) == len(v))
ABSENT_FOR_REGRESSION = Rule("absent (or null) for a regression task", lambda v: v is None)
ROOT = Rule("a folder path or null (null: read from the hub)",
            lambda v: v is None or (isinstance(v, (str, Path)) and TEXT(str(v))))
SPLITS = Rule("a mapping of split name -> {path, format, ...}", lambda v: isinstance(v, dict))
SPLIT = Rule("a mapping with a `path` (relative to `root`)", lambda v: isinstance(v, dict) and TEXT(v.get("path")))
SHOWN = Rule("a non-empty string or absent (shown in reports)",
             lambda v: v is None or (isinstance(v, str) and TEXT(v.strip())))
ORDER = Rule("a number or absent (reports list tasks by it, then alphabetically)",
             lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)))
HUB = Rule(f"null or a mapping with `path` and `splits` (keys from {sorted(_HUB_KEYS)})",
           lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("path"), str)
                                   and isinstance(v.get("splits"), dict) and bool(v["splits"])))


def _to_plain(cfg: Any) -> dict:
    try:
        cfg = resolved(cfg, "task")  # a task file's own interpolation, e.g. ${data.glue_dir} with no `data` section
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return check_value("task config", cfg, MAPPING, ValueError)


def _known_keys(name: str, key: str, v: dict, valid) -> None:
    """Every key of the mapping `key` is one of `valid`; else the nearest valid one is named."""
    for k in v:
        if k not in valid:
            raise unknown_key(f"task {name}: `{key}.{k}`", k, sorted(valid), ValueError)


def task_spec(cfg: Any) -> TaskSpec:
    """Validate a task config (DictConfig or dict) so that mistakes surface before any training."""
    c = _to_plain(cfg)
    name = check_value("task config: `name`", c.get("name"), TEXT, ValueError)
    kind = _check(name, "kind", c.get("kind"), choice(*KINDS))
    text_fields = list(_check(name, "text_fields", c.get("text_fields"), _texts(1, 2)))
    label_field = _check(name, "label_field", c.get("label_field"),
                         Rule("a non-empty string (the column holding the label)", TEXT))
    labels, label_names = _labels(name, kind, c.get("labels"), c.get("label_names"))
    splits, root, hub = _sources(name, c)
    eval_splits = _eval_splits(name, c, splits, root, hub)
    suffix = _check(name, "metric_suffix", c.get("metric_suffix") or {},
                    Rule("a mapping {non-main eval split: suffix string}", lambda v: isinstance(v, dict) and all(
                        k in eval_splits[1:] and TEXT(x) for k, x in v.items())))
    spec = TaskSpec(name, kind, text_fields, label_field, labels, label_names, [], "", eval_splits, splits,
                    root, hub, dict(suffix), {k: v for k, v in c.items() if k not in _KNOWN_KEYS})
    spec.metrics, spec.headline = _metrics(spec, c)
    _display(spec, c)
    spec.select_metric = _select_metric(spec, c.get("select_metric"))
    return spec


def _labels(name: str, kind: str, labels, label_names):
    """Raw label values (as strings: YAML `[0, 1]` means `["0", "1"]`) and display names, for a
    classification task; nothing for a regression task."""
    if kind != "classification":
        _check(name, "labels", labels, ABSENT_FOR_REGRESSION)
        _check(name, "label_names", label_names, ABSENT_FOR_REGRESSION)
        return None, None
    labels = [str(v) for v in _check(name, "labels", labels, LABELS)]
    if label_names is not None:
        label_names = list(_check(name, "label_names", label_names, _texts(len(labels), len(labels))))
    return labels, label_names


def _sources(name: str, c: dict):
    """Where the rows come from: local split files under `root`, else the hub section."""
    splits_cfg = _check(name, "splits", c.get("splits") or {}, SPLITS)
    splits = {s: _split(name, s, v) for s, v in splits_cfg.items()}
    hub = _hub(name, c.get("hub"))
    root = _check(name, "root", c.get("root"), ROOT)
    if hub is None:
        _check(name, "root", root, Rule("a folder path when no `hub` section is configured (for GLUE: "
                                        "data.glue_dir / env BENCH_GLUE_DIR)", lambda v: v is not None))
    root = None if root is None else str(root)
    if root is not None:
        _check(name, "splits", splits_cfg, Rule("a non-empty mapping when `root` is set", bool))
    return splits, root, hub


def _eval_splits(name: str, c: dict, splits: dict, root, hub) -> list[str]:
    eval_splits = list(_check(name, "eval_splits", c.get("eval_splits"), _texts(1)))
    where, known = ("`splits`", list(splits)) if root is not None else ("`hub.splits`", list(hub["splits"]))
    _check(name, "eval_splits", eval_splits, Rule(f"names from {where} {known}", lambda v: set(v) <= set(known)))
    return eval_splits


def _metrics(spec: TaskSpec, c: dict) -> tuple[list[str], str]:
    """The reported metrics (each computable for the task's kind, on some eval split) and the headline."""
    name, kind = spec.name, spec.kind
    metrics = list(_check(name, "metrics", c.get("metrics"), _texts(1)))
    reportable = {key for s in spec.eval_splits for key in metric_keys(spec, s, METRICS_FOR_KIND[kind]).values()}
    _check(name, "metrics", metrics, Rule(
        f"names from {list(METRICS_FOR_KIND[kind])} for a {kind} task (known: {list(KNOWN_METRICS)}), optionally "
        f"with the suffix of a non-main eval split ({[metric_suffix(spec, s) for s in spec.eval_splits[1:]]})",
        lambda v: set(v) <= reportable))
    n = len(spec.labels or [])
    _check(name, "metrics", metrics, Rule(f"no f1 for this task's {n} labels (f1 is binary, class index 1 "
                                          "positive: it needs exactly 2 labels)", lambda v: "f1" not in v or n == 2))
    headline = _check(name, "headline", c.get("headline"), Rule(f"one of `metrics` {metrics}", lambda v: v in metrics))
    return metrics, headline


def _display(spec: TaskSpec, c: dict) -> None:
    """What reports show of the task: its display name, description and place in the task order."""
    for key in ("display_name", "description"):
        setattr(spec, key, _check(spec.name, key, c.get(key), SHOWN))
    spec.order = _check(spec.name, "order", c.get("order"), ORDER)


def _select_metric(spec: TaskSpec, value: Any) -> list[str]:
    """`select_metric`: absent, a metric name or a list of them, from the main split's metric keys
    (the selection split is scored under those names)."""
    if value is None:
        return []
    allowed = sorted(set(metric_keys(spec, spec.eval_splits[0]).values()))
    names = [value] if isinstance(value, str) else value
    _check(spec.name, "select_metric", value, Rule(
        f"absent, one of {allowed} or a list of distinct names from them (the selection score is their mean)",
        lambda _: list_of(choice(*allowed), "")(names) and len(set(names)) == len(names)))
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
    _check(name, key, v, SPLIT)
    _known_keys(name, key, v, _SPLIT_KEYS)
    fmt = v.get("format") or infer_format(v["path"])
    _check(name, f"{key}.format", v.get("format"), Rule(
        f"one of {list(FORMATS)} (or a path ending in .tsv/.csv/.jsonl/.parquet)", lambda _: fmt in FORMATS))
    header = _check(name, f"{key}.header", v.get("header", True), BOOL)
    columns = v.get("columns")
    if columns is not None:
        _check(name, f"{key}.columns", columns, Rule("absent for jsonl/parquet (they name their own fields)",
                                                     lambda _: fmt in ("tsv", "csv")))
        columns = list(_check(name, f"{key}.columns", columns, _texts(1)))
    elif not header and fmt in ("tsv", "csv"):
        _check(name, f"{key}.columns", columns, Rule("the list of column names when `header: false`",
                                                     lambda v: v is not None))
    out = {"path": v["path"], "format": fmt, "header": header, "columns": columns}
    if v.get("text_fields") is not None:
        out["text_fields"] = list(_check(name, f"{key}.text_fields", v["text_fields"], _texts(1, 2)))
    if v.get("label_field") is not None:
        out["label_field"] = str(v["label_field"])
    return out


def _hub(name: str, v: Any) -> dict | None:
    if _check(name, "hub", v, HUB) is None:
        return None
    _known_keys(name, "hub", v, _HUB_KEYS)
    out = {"path": v["path"], "name": v.get("name"), "splits": {str(k): str(s) for k, s in v["splits"].items()}}
    if v.get("text_fields") is not None:
        out["text_fields"] = list(_check(name, "hub.text_fields", v["text_fields"], _texts(1, 2)))
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
