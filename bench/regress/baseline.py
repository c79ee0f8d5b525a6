"""Baseline files: the aggregated cells of one sweep, small enough to commit.

`results/baselines/<name>.json` (format `peft-bench-baseline`, version 1): `name`, `created_at`,
`direction` (the gate's default: `higher` = only drops regress, `both` = any change beyond the
tolerance), `source` (results folder, sweeps, record count, git commits), `environments` (distinct
run environments with their cell counts) and `cells`, one per (model, method_label, task) with
metric mean/std/n, trainable/total parameters, peak memory, train throughput, env and config hashes.
Optional `predictions` ({file, sha256, bytes, n_cells}) names the sibling file with every seed's
per-example predictions of the headline split (predictions.py), which the paired test needs; a
baseline without it (saved before schema-2 records, or with --no-predictions) is gated by the
per-cell rules alone. A cell's optional `retention` ({quantity: {mean, std, n, seeds, values}}, where the
records measured it) feeds `check --gate-on`; `seeds`/`values` (the per-seed values its seed-aware test
reads) are absent from baselines saved before that test existed, which are gated by the tolerance rule.
"""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

from .cells import ENV_MATCH, UnusableInput, cell_id, summarize

FORMAT = "peft-bench-baseline"
FORMAT_VERSION = 1
DEFAULT_DIR = Path("results") / "baselines"
DIRECTIONS = ("higher", "both")


def make_baseline(records: list[dict], name: str, results_dir: str, direction: str = "higher",
                  allow_failed: bool = False) -> tuple[dict, list[str]]:
    """Baseline document from records; also returns the ids of cells left out (no ok record).

    Raises UnusableInput when some cell has no ok record and `allow_failed` is off: a baseline must
    not silently lack a cell, because a cell missing from the baseline is never gated.
    """
    cells, facts = summarize(records)
    dropped = [cid for cid, c in cells.items() if c["n_ok"] == 0]
    if dropped and not allow_failed:
        raise UnusableInput(f"{len(dropped)} cell(s) without an ok record: {', '.join(dropped)} "
                            "(fix and rerun them, or pass --allow-failed to leave them out of the baseline)")
    out_cells = []
    envs: dict[tuple, int] = {}
    for cid, c in cells.items():
        if cid in dropped:
            continue
        out_cells.append({k: c[k] for k in ("model", "method", "method_label", "task", "headline_metric", "n_ok",
                                             "seeds", "metrics", "params", "perf", "env", "config_hashes",
                                             "portable_hashes")})
        if c.get("retention"):  # (optional) only where the records measured it: older baselines read the same
            out_cells[-1]["retention"] = c["retention"]
        key = tuple(c["env"].get(f) for f in ENV_MATCH)
        envs[key] = envs.get(key, 0) + 1
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "direction": direction,
        "source": {"results_dir": str(results_dir), "sweeps": facts["sweeps"], "n_records": facts["n_records"],
                   "n_conflicts": facts["n_conflicts"], "git_commits": facts["git_commits"],
                   "git_dirty": facts["git_dirty"], "left_out": dropped},
        "environments": [dict(zip(ENV_MATCH, k), n_cells=n) for k, n in envs.items()],
        "cells": out_cells,
    }
    return doc, dropped


def baseline_predictions(records: list[dict], doc: dict) -> tuple[dict, list[str]]:
    """{cell id: stored predictions} for the baseline's cells whose every kept ok record has a
    predictions file, and one line per cell left without (so that `save` says which cells the
    paired test will not cover)."""
    from .predictions import cell_entry, record_seed_data

    cells, _ = summarize(records)
    out, lines = {}, []
    for c in doc["cells"]:
        cid = cell_id(c["model"], c["method_label"], c["task"])
        recs = cells[cid]["_records"]
        data, metric, split, problems = record_seed_data(recs, c["headline_metric"])
        if problems or len(data) != len(recs):
            lines.append(f"no predictions stored for {cid}: {problems[0] if problems else 'seeds without predictions'}")
            continue
        kind = "regression" if metric in ("pearson", "spearmanr") else "classification"
        entry = cell_entry(data, metric, split, kind)
        if isinstance(entry, str):
            lines.append(f"no predictions stored for {cid}: {entry}")
            continue
        out[cid] = entry
    return out, lines


def write_baseline(doc: dict, out_dir: str | Path, predictions: dict | None = None) -> Path:
    """Write NAME.json, and NAME.predictions.json.gz beside it when `predictions` has cells (named
    in the baseline with its sha256; a stale side file of an earlier save is removed)."""
    from .predictions import SUFFIX, write_side_file

    path = Path(out_dir) / f"{doc['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if predictions:
        write_side_file(doc, predictions, path.parent)
    else:
        doc.pop("predictions", None)
        (path.parent / f"{doc['name']}{SUFFIX}").unlink(missing_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(_dumps(doc) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _dumps(node, indent: int = 0) -> str:
    """JSON with one line per leaf object or list (a stat, params, env): small, diff-friendly."""
    flat = json.dumps(node, allow_nan=False)
    if not isinstance(node, (dict, list)) or len(flat) <= 100 or \
            all(not isinstance(v, (dict, list)) for v in (node.values() if isinstance(node, dict) else node)):
        return flat
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(node, dict):
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in node.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    return "[\n" + ",\n".join(inner + _dumps(v, indent + 1) for v in node) + "\n" + pad + "]"


def resolve(name_or_path: str, baselines_dir: str | Path = DEFAULT_DIR) -> Path:
    """A path to an existing file, else `<baselines_dir>/<name>.json`."""
    p = Path(name_or_path)
    if p.is_file() or p.suffix == ".json" or "/" in name_or_path:
        return p
    return Path(baselines_dir) / f"{name_or_path}.json"


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_stat(where: str, s) -> None:
    if not isinstance(s, dict) or not _num(s.get("mean")):
        raise ValueError(f"{where}: expected {{mean: number, std, n}}, found {json.dumps(s)[:60]}")
    if s.get("std") is not None and not _num(s["std"]):
        raise ValueError(f"{where}.std: expected a number or null, found {s['std']!r}")
    if not isinstance(s.get("n"), int) or s["n"] < 1:
        raise ValueError(f"{where}.n: expected an integer >= 1, found {s.get('n')!r}")


def validate(doc) -> None:
    """Raise ValueError/TypeError naming the first problem (path inside the document and what is wrong)."""
    if not isinstance(doc, dict):
        raise TypeError(f"expected a JSON object, found {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise ValueError(f"'format' is {doc.get('format')!r}, expected {FORMAT!r} (is this a baseline file?)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"'format_version' is {doc.get('format_version')!r}, expected {FORMAT_VERSION}")
    if doc.get("direction", "higher") not in DIRECTIONS:
        raise ValueError(f"'direction' is {doc.get('direction')!r}, expected one of {', '.join(DIRECTIONS)}")
    cells = doc.get("cells")
    if not isinstance(cells, list) or not cells:
        raise ValueError("'cells' must be a non-empty list")
    for i, c in enumerate(cells):
        if not isinstance(c, dict):
            raise TypeError(f"cells[{i}]: expected an object")
        for k in ("model", "method_label", "task"):
            if not isinstance(c.get(k), str) or not c[k]:
                raise ValueError(f"cells[{i}].{k}: expected a non-empty string, found {c.get(k)!r}")
        where = f"cells[{i}] ({c['model']}/{c['method_label']}/{c['task']})"
        if not isinstance(c.get("metrics"), dict) or not c["metrics"]:
            raise ValueError(f"{where}.metrics: expected a non-empty object")
        for m, s in c["metrics"].items():
            _check_stat(f"{where}.metrics.{m}", s)
        params = c.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("trainable"), int):
            raise TypeError(f"{where}.params.trainable: expected an integer")
        for q, s in (c.get("perf") or {}).items():
            _check_stat(f"{where}.perf.{q}", s)
        if not isinstance(c.get("env", {}), dict):
            raise TypeError(f"{where}.env: expected an object")
    if doc.get("predictions") is not None:
        from .predictions import validate_ref
        validate_ref(doc["predictions"])


def load_baseline(name_or_path: str, baselines_dir: str | Path = DEFAULT_DIR) -> tuple[dict, Path]:
    """Read and validate a baseline; UnusableInput with the file name and the problem otherwise."""
    path = resolve(name_or_path, baselines_dir)
    if not path.is_file():
        known = sorted(p.stem for p in Path(baselines_dir).glob("*.json")) if Path(baselines_dir).is_dir() else []
        hint = f"; known baselines in {baselines_dir}: {', '.join(known)}" if known else ""
        raise UnusableInput(f"baseline {path}: no such file{hint}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UnusableInput(f"baseline {path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        what = f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
        raise UnusableInput(f"baseline {path}: not valid JSON ({what})") from None
    try:
        validate(doc)
    except (TypeError, ValueError) as exc:
        raise UnusableInput(f"baseline {path}: {exc}") from None
    doc.setdefault("direction", "higher")
    return doc, path
