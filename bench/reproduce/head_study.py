"""`python -m bench.reproduce head_study` (records of <results>/head_study): native head minus uniform
head, paired by seed.

Reads the ok records of a sweep run with `model.head=uniform,native` (docs/reproduce.md: head study),
pairs the two heads' records of each (model, task, method, seed) and prints, per (task, method), the
mean of the per-seed differences native - uniform of the headline metric (points, 0-100 scale) with
its 95% t-interval: mean ± t(0.975, n-1) * sd / sqrt(n) over the n seeds present for both heads.
Pairing by seed removes what the seed changes for both heads (data order, subsample, dropout masks).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from bench.config.schema import model_setting


def load(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if rec.get("status") == "ok" and rec.get("metrics"):
            out.append(rec)
    return out


def head_of(rec: dict) -> str:
    model_cfg = (rec.get("config") or {}).get("model") or {}
    return (rec.get("params") or {}).get("head_kind") or model_setting(model_cfg, "head")


def paired(records: list[dict]) -> list[dict]:
    from scipy import stats

    by: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in records:
        key = (r["model"], r["task"], r["method"])
        value = 100.0 * float(r["metrics"][r["headline_metric"]])
        by.setdefault(key, {}).setdefault(head_of(r), {})[int(r["seed"])] = value
    rows = []
    for (model, task, method), heads in sorted(by.items()):
        u, n = heads.get("uniform", {}), heads.get("native", {})
        seeds = sorted(set(u) & set(n))
        diffs = [n[s] - u[s] for s in seeds]
        row = {"model": model, "task": task, "method": method, "seeds": seeds,
               "uniform": statistics.fmean(u[s] for s in seeds) if seeds else None,
               "native": statistics.fmean(n[s] for s in seeds) if seeds else None,
               "diff": statistics.fmean(diffs) if diffs else None, "low": None, "high": None, "diffs": diffs}
        if len(diffs) >= 2:
            half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
            row["low"], row["high"] = row["diff"] - half, row["diff"] + half
        rows.append(row)
    return rows


def fmt(rows: list[dict], metric_of: dict[str, str]) -> str:
    lines = [("| task (metric) | method | seeds | uniform (mean) | native (mean) | native - uniform "
              "| 95% t-interval | per-seed differences |"),
             "|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        if r["diff"] is None:
            lines.append(f"| {r['task']} ({metric_of.get(r['task'], '')}) | {r['method']} | none paired yet "
                         "| | | | | |")
            continue
        ci = f"[{r['low']:+.2f}, {r['high']:+.2f}]" if r["low"] is not None else "n/a (one seed)"
        lines.append(f"| {r['task']} ({metric_of.get(r['task'], '')}) | {r['method']} | "
                     f"{','.join(map(str, r['seeds']))} | "
                     f"{r['uniform']:.2f} | {r['native']:.2f} | {r['diff']:+.2f} | {ci} | "
                     + ", ".join(f"{d:+.2f}" for d in r["diffs"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table for one sweep folder (`bench.reproduce head_study` passes <results>/head_study)."""
    ap = argparse.ArgumentParser(prog="bench.reproduce.head_study", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", nargs="?", default="results/head_study", type=Path)
    args = ap.parse_args(argv)
    records = load(args.sweep)
    metric_of = {r["task"]: r["headline_metric"] for r in records}
    print(f"{len(records)} ok records in {args.sweep}")
    print(fmt(paired(records), metric_of))
    return 0
