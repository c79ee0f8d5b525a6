#!/usr/bin/env python3
"""Does the cost pass measure what a serial run measures? Cells of one sweep run twice: folder A run in
parallel and then re-timed by `python -m bench.sweep.cost_pass A`, folder B run serially with nothing beside
each cell (`make sweep`). Per cell: training samples/s and tokens/s of A's cost pass over B's whole
run, and both MFUs; the summary gives the median and range of the ratios. A cost pass that times
unrepresentative steps shows here as samples/s ratios far from 1 while tokens/s stay close.

    python -m benchmarks.cost_pass_check results/default_sweep_parallel results/default_sweep [--csv out.csv]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from bench.records.schema import load_records


def cells(folder: Path) -> dict:
    recs, _ = load_records(folder)
    return {(r["task"], r["method"], r["seed"]): r for r in recs if r.get("status") == "ok"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("passed", type=Path, help="results re-timed by the cost pass")
    ap.add_argument("serial", type=Path, help="the same cells run serially")
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv)
    a, b = cells(args.passed), cells(args.serial)
    rows = []
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        if not ra.get("cost_pass"):
            continue
        ta, tb = ra["throughput"], rb["throughput"]
        rows.append({"task": key[0], "method": key[1], "seed": key[2],
                     "pass_samples_s": ta["train_samples_per_s"], "serial_samples_s": tb["train_samples_per_s"],
                     "samples_ratio": ta["train_samples_per_s"] / tb["train_samples_per_s"],
                     "tokens_ratio": ta["train_tokens_per_s"] / tb["train_tokens_per_s"],
                     "pass_mfu": (ra.get("flops") or {}).get("mfu"), "serial_mfu": (rb.get("flops") or {}).get("mfu"),
                     "timed_steps": ta.get("timed_steps"), "pass_threads": ra["cost_pass"]["threads"],
                     "serial_threads": rb["env"].get("torch_threads")})
    if not rows:
        print(f"no cell of {args.passed} with a cost pass has a serial twin in {args.serial}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(df.round(3).to_string(index=False))
    for col in ("samples_ratio", "tokens_ratio"):
        print(f"{col}: median {df[col].median():.3f}, range {df[col].min():.3f} - {df[col].max():.3f}")
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
