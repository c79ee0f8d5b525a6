"""The end-of-sweep summary: what ran in *this* invocation, read back from its records.

Cells may run in other processes (joblib, submitit), so outcomes travel through a per-invocation
ledger file next to the records rather than through memory.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.analysis.chance import collapse_warnings
from bench.records import schema as R
from bench.records.results import fmt_count, text_table
from bench.sweep.execute import LEDGER_DIR


def read_ledger(sweep_dir: Path, invocation: str) -> list[dict]:
    path = sweep_dir / LEDGER_DIR / f"{invocation}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def summary_table(entries: list[dict]) -> tuple[str, dict]:
    """Plain-text table (one row per cell) and counts per status."""
    counts = {"ok": 0, "failed": 0, "skipped": 0, "interrupted": 0}
    rows = []
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
        try:
            rec = R.read_record(e["path"])
        except ValueError:
            rec = None
        if e.get("why") == "running elsewhere":  # another launch holds the cell's claim (bench/sweep/claims.py)
            counts["running elsewhere"] = counts.get("running elsewhere", 0) + 1
            rows.append((e["cell"], "skipped (running elsewhere)", "-", "-", "-", "-", "-"))
            continue
        if e["status"] == "refused":  # the method cannot run on this architecture (bench/methods/support.py)
            why = str(e.get("why", "")).partition(" cannot run on ")[2] or str(e.get("why", ""))
            rows.append((e["cell"], "refused", why[:90], "-", "-", "-", "-"))
            continue
        if rec is None:
            rows.append((e["cell"], e["status"], "-", "-", "-", "-", "-"))
            continue
        if rec["status"] == "ok":
            h = rec["headline_metric"]
            sps = rec["throughput"].get("train_samples_per_s")
            cuda = rec["memory"].get("cuda_peak_allocated_bytes")
            collapsed = " collapsed" if collapse_warnings(rec) else ""  # bench.analysis.chance
            rows.append((
                f"{rec['model']} {rec['task']:>5} {rec['method_label']}", e["status"],
                f"{h}={rec['metrics'][h]:.3f}{collapsed}" if h in rec["metrics"] else "selection split only",
                fmt_count(rec["params"]["trainable"], "-"),
                f"{cuda / 2**20:.0f}MiB CUDA" if cuda else f"{rec['memory']['peak_rss_bytes'] / 2**20:.0f}MiB",
                # None when every step was a warm-up step (too few steps to time)
                f"{sps:.1f}/s" if sps is not None else "n/a", f"{rec['time']['total_s']:.0f}s",
            ))
        else:
            err = rec.get("error") or {}
            rows.append((f"{rec['model']} {rec['task']:>5} {rec['method_label']}", rec["status"],
                         f"{err.get('type')}: {str(err.get('message'))[:60]}", "-", "-", "-", "-"))
    header = ("cell", "status", "headline", "trainable", "peak memory", "train", "time")
    return text_table(header, rows), counts
