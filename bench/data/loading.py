"""Reading a task's split into examples: from the local file under the task's root (the GLUE TSV or
parquet layout, or a user's own file) or, with root null, from the Hugging Face hub.

Why apart from bench/data/tasks.py: the task spec says *what* a task is (labels, metrics, splits, how
reports show it) and is read by every layer; loading is I/O with its own failure modes (a missing
file, a bad label, the hub offline), each of which must name the file and what was expected.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from bench.data.readers import DataError, Example, read_records

if TYPE_CHECKING:
    from bench.data.tasks import TaskSpec

GLUE_HUBS = ("nyu-mll/glue", "glue")


def _local_path(spec: TaskSpec, split: str) -> Path:
    return Path(spec.root).expanduser() / spec.splits[split]["path"]


def has_split(spec: TaskSpec, split: str) -> bool:
    """True when the split can be loaded: its local file exists, or (root null) the hub lists it."""
    if spec.root is None:
        return split in spec.hub["splits"]
    return split in spec.splits and _local_path(spec, split).is_file()


def _missing_file(spec: TaskSpec, split: str, path: Path) -> DataError:
    root = Path(spec.root).expanduser()
    present = [s for s in spec.splits if s != split and _local_path(spec, s).is_file()]
    if present:
        msg = (f"task {spec.name} has no {split} split in {root} (only {', '.join(present)} "
               f"{'is' if len(present) == 1 else 'are'} present): {path} does not exist.")
    else:
        msg = f"{path} not found (task {spec.name}, split {split})."
        if not root.is_dir():
            msg += f" The folder {root} does not exist."
    msg += f" Split paths are relative to the task's `root` ({spec.root})"
    if spec.hub and spec.hub["path"] in GLUE_HUBS:
        rel, fmt = spec.splits[split]["path"], spec.splits[split]["format"]
        msg += (", which for GLUE tasks is `data.glue_dir` (env BENCH_GLUE_DIR). GLUE is expected in the "
                "layout of the original download (download_glue_data.py): <glue_dir>/<TASK>/train.tsv and "
                f"dev.tsv; this task reads {rel}"
                + (" (the split's parquet file from the Hugging Face nyu-mll/glue dataset)" if fmt == "parquet"
                   else "") + f". Another file can be used with task.splits.{split}.path=...")
    else:
        msg += "; a relative root is taken from the current directory."
    if spec.hub:
        msg += (f" Or set the root to null (GLUE: data.glue_dir=null) to load {spec.hub['path']}"
                f"{'/' + spec.hub['name'] if spec.hub.get('name') else ''} from the Hugging Face hub.")
    return DataError(msg)


def _convert(spec: TaskSpec, rows, n_text: int, path: str, unit: str, label_field: str) -> list[Example]:
    index = {lab: i for i, lab in enumerate(spec.labels)} if spec.labels else None
    out = []
    for n, values in rows:
        texts = values[:n_text]
        for f, t in zip(spec.text_fields, texts):
            if t is None:
                raise DataError(f"text field {f!r} is missing (null)", path, n, unit)
        raw = values[n_text]
        if index is not None:
            key = raw.strip() if isinstance(raw, str) else ("" if raw is None else str(raw))
            label = index.get(key)
            if label is None:
                raise DataError(f"label {raw!r} in field {label_field!r} is not one of the task's labels "
                                f"{spec.labels}", path, n, unit)
        else:
            try:
                label = float(raw.strip() if isinstance(raw, str) else raw)
            except (TypeError, ValueError):
                label = None
            if label is None or not math.isfinite(label):
                raise DataError(f"score {raw!r} in field {label_field!r} is not a finite number", path, n, unit)
        out.append(Example(str(texts[0]), str(texts[1]) if n_text == 2 else None, label))
    if not out:
        raise DataError(f"split has no data rows (task {spec.name}); expected at least one example", path)
    return out


def load_split(spec: TaskSpec, split: str) -> list[Example]:
    """Read a split from the local file under spec.root, or from the hub when root is null."""
    if spec.root is None:
        return _load_hub(spec, split)
    if split not in spec.splits:
        raise DataError(f"task {spec.name} has no split {split!r}; configured splits: {list(spec.splits)}")
    s = spec.splits[split]
    path = _local_path(spec, split)
    if not path.is_file():
        raise _missing_file(spec, split, path)
    text_fields = s.get("text_fields") or spec.text_fields
    label_field = s.get("label_field") or spec.label_field
    if len(text_fields) != len(spec.text_fields):
        raise ValueError(f"task {spec.name}: splits.{split}.text_fields must have {len(spec.text_fields)} entries")
    unit, rows = read_records(path, s["format"], s["header"], s["columns"], [*text_fields, label_field])
    return _convert(spec, rows, len(text_fields), str(path), unit, label_field)


def _load_hub(spec: TaskSpec, split: str) -> list[Example]:
    hub = spec.hub
    if split not in hub["splits"]:
        raise DataError(f"task {spec.name} has no split {split!r} on the hub; hub.splits: {list(hub['splits'])}")
    hub_split = hub["splits"][split]
    where = f"hub {hub['path']}{'/' + hub['name'] if hub.get('name') else ''} split {hub_split}"
    import datasets

    try:
        ds = datasets.load_dataset(hub["path"], hub.get("name"), split=hub_split)
    except Exception as e:  # offline, unknown dataset, auth ...: say what to do instead
        raise DataError(f"task {spec.name}: could not load {where} ({type(e).__name__}: {e}). To use local "
                        f"files instead, set the task root (GLUE: data.glue_dir / env BENCH_GLUE_DIR).") from e
    text_fields = hub.get("text_fields") or spec.text_fields
    label_field = hub.get("label_field") or spec.label_field
    missing = [f for f in [*text_fields, label_field] if f not in ds.column_names]
    if missing:
        raise DataError(f"lacks column(s) {missing}; has {ds.column_names}", where)
    cols = ds.select_columns([*text_fields, label_field]).to_dict()
    values = [cols[f] for f in text_fields] + [_hub_labels(spec, cols[label_field], where)]
    rows = ((n, list(v)) for n, v in enumerate(zip(*values), 1))
    return _convert(spec, rows, len(text_fields), where, "row", label_field)


def _hub_labels(spec: TaskSpec, labels: list, where: str) -> list:
    """Hub ClassLabel ints are class indices (task labels are ordered to match); map them to raw values."""
    if spec.kind != "classification":
        return labels
    out = []
    for n, v in enumerate(labels, 1):
        if isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v < len(spec.labels):
                raise DataError(f"label {v} is not a class index 0..{len(spec.labels) - 1} (-1 marks an "
                                f"unlabelled test split)", where, n, "row")
            v = spec.labels[v]
        out.append(v)
    return out
