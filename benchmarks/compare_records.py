#!/usr/bin/env python3
"""Compare two folders of run records cell by cell: did a refactor change what a run measures?

Usage: python -m benchmarks.compare_records BEFORE_DIR AFTER_DIR [--rtol 0]

Records (`*.json` with a `schema_version`, searched recursively) are paired by what a cell *is*:
(model, task, method name, variant, seed), where the variant is the method's resolved settings (the
method config without `_target_` and `name`) plus the learning rate the run used. run_id, config hash
and method_label are not used to pair: a refactor may legitimately change them.

Compared per pair: status, every metric (`metrics`, `selection_metrics`), every numeric parameter
count in `params` (trainable, total, head, trainable_excl_head, trainable_pct) and `head_kind`,
`storage.bytes` and `storage.what`, and as corroboration the training trajectory (`train.steps`,
`train.final_loss`, `train.lr`, `train.feature_cache`) and the training subsample's fingerprint.
Timing, memory and environment are not compared (they vary run to run).

Floats are compared exactly by default (`--rtol 0`: a deterministic CPU run reproduces bit for bit);
`--rtol R` accepts |a - b| <= R * max(|a|, |b|). Exit status: 0 when every pair matches and no cell is
missing on either side, 1 otherwise, 2 on a usage error (a missing folder, one without records).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

PARAM_FIELDS = ("trainable", "total", "head", "trainable_excl_head", "trainable_pct", "head_kind")
TRAIN_FIELDS = ("steps", "final_loss", "lr", "feature_cache")


def load_records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.rglob("*.json")):
        if ".ledger" in path.parts:
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "schema_version" in rec and "status" in rec:
            rec["_path"] = str(path)
            out.append(rec)
    return out


def variant(rec: dict) -> str:
    settings = {k: v for k, v in ((rec.get("config") or {}).get("method") or {}).items()
                if k not in ("_target_", "name")}
    settings["lr"] = (rec.get("train") or {}).get("lr", settings.get("lr"))
    return json.dumps(settings, sort_keys=True, default=str)


def cell_key(rec: dict) -> tuple:
    return (rec.get("model"), rec.get("task"), rec.get("method"), variant(rec), rec.get("seed"))


def fields(rec: dict) -> dict:
    """The compared values of one record, flat: name -> value."""
    out = {"status": rec.get("status")}
    for group in ("metrics", "selection_metrics"):
        for k, v in sorted((rec.get(group) or {}).items()):
            out[f"{group}.{k}"] = v
    params = rec.get("params") or {}
    for k in PARAM_FIELDS:
        out[f"params.{k}"] = params.get(k)
    storage = rec.get("storage") or {}
    out["storage.bytes"] = storage.get("bytes")
    out["storage.what"] = storage.get("what")
    train = rec.get("train") or {}
    for k in TRAIN_FIELDS:
        out[f"train.{k}"] = train.get(k)
    out["data.train_fingerprint"] = (rec.get("data") or {}).get("train_fingerprint")
    return out


def same(a, b, rtol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return False
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b if rtol == 0 else abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def short(v) -> str:
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default 0: exact)")
    args = ap.parse_args(argv)
    for folder in (args.before, args.after):
        if not folder.is_dir():
            print(f"compare_records: {folder} is not a folder", file=sys.stderr)
            return 2
    sides = {}
    for name, folder in (("before", args.before), ("after", args.after)):
        by_key: dict[tuple, dict] = {}
        for rec in load_records(folder):
            key = cell_key(rec)
            if key in by_key:
                print(f"compare_records: two records of one cell in {folder}: {by_key[key]['_path']} and {rec['_path']}",
                      file=sys.stderr)
                return 2
            by_key[key] = rec
        if not by_key:  # a wrong path must not pass as "0 cells, 0 differing"
            print(f"compare_records: no run records (*.json with a schema_version) under {folder}", file=sys.stderr)
            return 2
        sides[name] = by_key
    before, after = sides["before"], sides["after"]
    keys = sorted(set(before) | set(after), key=lambda k: tuple(str(x) for x in k))
    tol = "exact" if args.rtol == 0 else f"rtol {args.rtol:g}"
    print(f"before: {args.before} ({len(before)} records)   after: {args.after} ({len(after)} records)   floats: {tol}")
    header = f"{'model':<10} {'task':<5} {'method':<17} {'seed':>4} {'lr':>8} {'fields':>6}  {'trainable':>10} {'storage B':>10}  {'headline (before -> after)':<34} result"
    print(header)
    print("-" * len(header))
    bad, details = 0, []
    for key in keys:
        model, task, method, var, seed = key
        lr = json.loads(var).get("lr")
        b, a = before.get(key), after.get(key)
        if b is None or a is None:
            bad += 1
            print(f"{model:<10} {task:<5} {method:<17} {seed:>4} {lr!s:>8} {'-':>6}  {'-':>10} {'-':>10}  {'':<34} "
                  f"MISSING {'before' if b is None else 'after'}")
            continue
        fb, fa = fields(b), fields(a)
        diffs = [k for k in sorted(set(fb) | set(fa)) if not same(fb.get(k), fa.get(k), args.rtol)]
        head = b.get("headline_metric")
        hb, ha = (b.get("metrics") or {}).get(head), (a.get("metrics") or {}).get(head)
        headline = f"{head} {hb:.6g} -> {ha:.6g}" if isinstance(hb, float) and isinstance(ha, float) else "-"
        print(f"{model:<10} {task:<5} {method:<17} {seed:>4} {lr!s:>8} {len(fb):>6}  {fa['params.trainable']!s:>10} "
              f"{fa['storage.bytes']!s:>10}  {headline:<34} {'same' if not diffs else f'DIFFERS ({len(diffs)})'}")
        if diffs:
            bad += 1
            details += [(f"{model}/{task}/{method}/s{seed}", k, fb.get(k), fa.get(k)) for k in diffs]
    if details:
        print("\ndifferences:")
        for cell, k, vb, va in details:
            print(f"  {cell:<40} {k:<32} {short(vb):>24} -> {short(va)}")
    print(f"\n{len(keys)} cells, {len(keys) - bad} identical, {bad} differing or missing")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
