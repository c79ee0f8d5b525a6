"""Per-example predictions for the gate: what `save` stores beside a baseline and how `check` pairs
them with the candidate's (the statistics are in paired.py).

A baseline must stay self-contained when committed, and records' prediction files live in a
results folder that is not committed, so `save` copies the headline split of every seed into one
sibling file, `<name>.predictions.json.gz`, named in the baseline (`predictions.file`, with its
sha256 so that a stale or swapped file is caught). Layout (format
`peft-bench-baseline-predictions`, version 1):

    {"format", "version", "baseline", "cells": {"model/label/task": {"metric": base metric name
     (the headline without its split suffix), "split", "kind", "ids": sorted union of the seeds'
     example ids, "references": aligned with ids, "seeds": {"0": [prediction or null per id]}}}}

Only the split that carries the headline metric is kept (MNLI: matched), which keeps the file to a
few kB per seed for the small GLUE dev sets (SST-2: 872 examples).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from bench.records import schema as R

from .cells import UnusableInput
from .paired import METRICS, PairedResult, holm, paired_test, stable_seed

FORMAT = "peft-bench-baseline-predictions"
VERSION = 1
SUFFIX = ".predictions.json.gz"
MIN_COMMON = 10  # fewer common examples than this: no paired test


def split_metric(splits: dict, headline: str) -> tuple[str, str] | None:
    """(split name, base metric) of the eval split that reports `headline` (its suffix removed)."""
    best = None
    for name, sp in splits.items():
        if not isinstance(sp, dict) or sp.get("role", "eval") != "eval":
            continue
        suf = sp.get("metric_suffix") or ""
        if headline.endswith(suf) and headline[:len(headline) - len(suf)] in METRICS \
                and (best is None or len(suf) > len(best[2])):
            best = (name, headline[:len(headline) - len(suf)], suf)
    return best[:2] if best else None


def record_seed_data(records: list[dict], headline: str) -> tuple[dict, str, str, list[str]]:
    """{seed: (ids, predictions, references)} of the headline split of ok records, the base metric,
    the split name, and problems (a record without predictions, an unreadable file). Raises nothing:
    the caller decides whether a problem is fatal."""
    out, problems, metric, split = {}, [], "", ""
    for rec in records:
        try:
            doc = R.load_predictions(rec)
        except ValueError as exc:
            problems.append(f"unreadable predictions: {exc}")
            continue
        if doc is None:
            problems.append(f"record {Path(rec.get('_path', '?')).name} has no predictions "
                            f"(schema {rec.get('schema_version')})")
            continue
        found = split_metric(doc["splits"], headline)
        if found is None:
            problems.append(f"{R.predictions_path(rec)}: no eval split reports {headline}")
            continue
        split, metric = found
        sp = doc["splits"][split]
        try:
            ids = np.asarray(sp["ids"], dtype=np.int64)
            preds = np.asarray(sp["predictions"], dtype=float)
            refs = np.asarray(sp["references"], dtype=float)
            if not (ids.ndim == preds.ndim == refs.ndim == 1 and len(ids) == len(preds) == len(refs)):
                raise ValueError("ids, predictions and references must be lists of equal length")
            if len(np.unique(ids)) != len(ids):
                raise ValueError("repeated example ids")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{R.predictions_path(rec)}: splits.{split}: {exc}")
            continue
        out[int(rec["seed"])] = (ids, preds, refs)
    return out, metric, split, problems


# ------------------------------------------------------------------------------ baseline side file

def _tolist(a: np.ndarray, kind: str) -> list:
    if kind == "classification":
        return [None if math.isnan(v) else int(v) for v in a.tolist()]
    return [None if math.isnan(v) else v for v in a.tolist()]


def cell_entry(seed_data: dict, metric: str, split: str, kind: str) -> dict | str:
    """The stored form of one cell's seeds, or a string saying why it cannot be stored."""
    ids = np.unique(np.concatenate([d[0] for d in seed_data.values()]))
    refs = np.full(len(ids), np.nan)
    entry = {"metric": metric, "split": split, "kind": kind, "ids": ids.tolist(), "seeds": {}}
    for seed in sorted(seed_data):
        sid, sp, sr = seed_data[seed]
        pos = np.searchsorted(ids, sid)
        seen = ~np.isnan(refs[pos])
        if np.any(refs[pos][seen] != sr[seen]):
            return f"seed {seed}: references differ from another seed's on the same ids"
        refs[pos] = sr
        row = np.full(len(ids), np.nan)
        row[pos] = sp
        entry["seeds"][str(seed)] = _tolist(row, kind)
    entry["references"] = _tolist(refs, kind)
    return entry


def write_side_file(doc: dict, cells: dict, out_dir: Path) -> Path:
    """Write `<name>.predictions.json.gz` and name it (with sha256 and size) in the baseline doc."""
    path = Path(out_dir) / f"{doc['name']}{SUFFIX}"
    blob = json.dumps({"format": FORMAT, "version": VERSION, "baseline": doc["name"], "cells": cells},
                      separators=(",", ":"), allow_nan=False).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(blob)
    tmp.replace(path)
    doc["predictions"] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                          "bytes": path.stat().st_size, "n_cells": len(cells)}
    return path


def validate_ref(ref) -> None:
    """The baseline's `predictions` field (optional): {file: plain file name, sha256}."""
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or not ref["file"] \
            or "/" in ref["file"] or "\\" in ref["file"]:
        raise ValueError(f"predictions: expected {{file: a file name beside the baseline, sha256}}, found "
                         f"{json.dumps(ref)[:60]}")
    if not isinstance(ref.get("sha256"), str):
        raise TypeError("predictions.sha256: expected a string")


def load_side_file(baseline: dict, bpath: Path) -> dict | None:
    """The baseline's stored predictions ({cid: entry}), None when it has none (an older baseline);
    UnusableInput naming the file when it is missing, altered or malformed."""
    ref = baseline.get("predictions")
    if not ref:
        return None
    path = Path(bpath).parent / ref["file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableInput(f"baseline predictions {path} (named by {bpath}): cannot read ({exc.strerror})") from None
    if hashlib.sha256(raw).hexdigest() != ref["sha256"]:
        raise UnusableInput(f"baseline predictions {path}: sha256 differs from the one in {bpath} "
                            "(file replaced or edited; re-save the baseline)")
    try:
        doc = json.loads(gzip.decompress(raw).decode())
    except (OSError, EOFError, ValueError) as exc:
        raise UnusableInput(f"baseline predictions {path}: not gzip JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("cells"), dict):
        raise UnusableInput(f"baseline predictions {path}: 'format' is not {FORMAT!r} or 'cells' is missing")
    for cid, e in doc["cells"].items():
        ok = isinstance(e, dict) and e.get("metric") in METRICS and isinstance(e.get("ids"), list) \
            and isinstance(e.get("references"), list) and len(e["references"]) == len(e["ids"]) \
            and isinstance(e.get("seeds"), dict) and all(isinstance(v, list) and len(v) == len(e["ids"])
                                                         for v in e["seeds"].values())
        if not ok:
            raise UnusableInput(f"baseline predictions {path}: cells.{cid}: expected {{metric, ids, references, "
                                "seeds: {seed: list as long as ids}}")
    return doc["cells"]


def entry_seed_data(entry: dict) -> dict:
    """Stored cell -> {seed: (ids, predictions, references)} (ids the seed lacks dropped)."""
    ids = np.asarray(entry["ids"], dtype=np.int64)
    refs = np.asarray([np.nan if v is None else v for v in entry["references"]], dtype=float)
    out = {}
    for seed, row in entry["seeds"].items():
        p = np.asarray([np.nan if v is None else v for v in row], dtype=float)
        keep = ~np.isnan(p) & ~np.isnan(refs)
        out[int(seed)] = (ids[keep], p[keep], refs[keep])
    return out


# ------------------------------------------------------------------------------ pairing

def align(base: dict, cand: dict) -> tuple[np.ndarray, dict, dict, str] | str:
    """Restrict every seed of both sides to the example ids they all have.

    Returns (references, {seed: base predictions}, {seed: cand predictions}, note) with a note when
    ids were dropped, or a string when pairing is impossible (too few common ids, or the references
    disagree on common ids: then the ids do not name the same examples)."""
    sets = [d[0] for d in list(base.values()) + list(cand.values())]
    common = sets[0]
    for s in sets[1:]:
        common = np.intersect1d(common, s)
    if len(common) < MIN_COMMON:
        per_seed = len({tuple(x.tolist()) for x in sets}) > 1 and len({len(x) for x in sets}) == 1
        why = ("each seed was scored on its own dev subsample (train.max_eval_samples draws it per seed); "
               "the full dev split pairs" if per_seed else "another split or subsample?")
        return f"only {len(common)} example id(s) common to all seeds of baseline and candidate ({why})"

    def pick(data):
        ids, p, r = data
        order = np.argsort(ids)
        idx = order[np.searchsorted(ids, common, sorter=order)]
        return p[idx], r[idx]

    refs = None
    out_b, out_c = {}, {}
    for side, src, dst in (("baseline", base, out_b), ("candidate", cand, out_c)):
        for seed, data in src.items():
            p, r = pick(data)
            if refs is None:
                refs = r
            elif np.any(r != refs):
                return (f"references of {side} seed {seed} differ on {int(np.sum(r != refs))} of {len(common)} "
                        "common ids: not the same examples")
            dst[seed] = p
    sizes_b = {len(d[0]) for d in base.values()}
    sizes_c = {len(d[0]) for d in cand.values()}
    note = ""
    if sizes_b | sizes_c != {len(common)}:
        note = (f"paired on the {len(common)} example ids common to all seeds (baseline had "
                f"{'/'.join(map(str, sorted(sizes_b)))}, candidate {'/'.join(map(str, sorted(sizes_c)))})")
    return refs, out_b, out_c, note


def run_paired(baseline: dict, stored: dict | None, cand_cells: dict, st) -> tuple[dict, dict]:
    """Paired tests of every baseline cell that has stored predictions and candidate predictions.

    Returns ({cid: PairedResult (p_adj set by Holm over the tested cells)}, {cid: [notes]}) - a note
    says why a cell has no paired test or what was adjusted (ids intersected)."""
    from .cells import cell_id, glob_match

    results, notes = {}, {}
    if not stored:
        return results, notes
    for base in baseline["cells"]:
        cid = cell_id(base["model"], base["method_label"], base["task"])
        cand = cand_cells.get(cid)
        if any(glob_match(p, cid) for p in st.exclude) or not cand or not cand.get("n_ok"):
            continue
        say = notes.setdefault(cid, [])
        entry = stored.get(cid)
        if entry is None:
            say.append("paired test skipped: the baseline stores no predictions for this cell")
            continue
        cdata, cmetric, _, problems = record_seed_data(cand.get("_records", []), base["headline_metric"])
        say += [f"paired test: {p}" for p in problems]
        if not cdata:
            say.append("paired test skipped: no candidate predictions")
            continue
        if cmetric != entry["metric"]:
            say.append(f"paired test skipped: baseline stores {entry['metric']}, candidate reports {cmetric}")
            continue
        aligned = align(entry_seed_data(entry), cdata)
        if isinstance(aligned, str):
            say.append(f"paired test skipped: {aligned}")
            continue
        refs, b, c, note = aligned
        if note:
            say.append(note)
        res = paired_test(entry["metric"], refs, b, c, st.direction, st.design, st.n_boot, stable_seed(cid))
        if isinstance(res, str):
            say.append(f"paired test skipped: {res}")
        else:
            results[cid] = res
    for cid, p in holm({cid: r.p for cid, r in results.items()}).items():
        results[cid].p_adj = p
    return results, notes


def describe(res: PairedResult) -> str:
    """One line: the numbers behind a paired verdict."""
    return (f"paired {res.metric}: delta {res.delta:+.4f} on {res.n_examples} examples, {res.pairing} seeds "
            f"{','.join(map(str, res.seeds_cand))} vs {','.join(map(str, res.seeds_base))}; se {res.se:.4f} "
            f"(seeds {res.se_seeds:.4f}, examples {res.se_examples:.4f}), p {res.p:.2g}, Holm {res.p_adj:.2g}")


__all__ = ["PairedResult", "align", "cell_entry", "describe", "entry_seed_data", "load_side_file",
           "record_seed_data", "run_paired", "split_metric", "validate_ref", "write_side_file"]
