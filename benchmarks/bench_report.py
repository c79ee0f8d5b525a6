#!/usr/bin/env python3
"""Benchmark: how long does `bench.report` take on a large results folder? Goal: < 10 s.

Writes N synthetic schema-1 records (default 10,000: 5 models x 25 methods x 8 GLUE tasks x 10
seeds, ~2 % failed) into a temporary folder, then times generate_report on it and prints the
seconds per phase and in total. The records have the full field set of docs/records.md (same
JSON as bench.records.schema.write_record, written without fsync so that setup stays quick); setup is
not timed. Usage: python -m benchmarks.bench_report [--records N] [--keep DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.records.schema import record_stem
from bench.report import generate_report

TASKS = {"cola": "matthews_correlation", "sst2": "accuracy", "mrpc": "f1", "stsb": "pearson",
         "qqp": "f1", "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy"}
METHODS = (["full", "bitfit", "prompt_tuning", "ia3"] + [f"lora[r={r}]" for r in (1, 2, 4, 8, 16, 32, 64)]
           + [f"adalora[r={r}]" for r in (4, 8, 16)] + [f"prefix[n={n}]" for n in (10, 20, 50)]
           + [f"lora[r=8,alpha={a}]" for a in (4, 8, 16, 32, 64, 128)] + ["loha", "lokr"])


def synth_record(rng: random.Random, model: str, label: str, task: str, seed: int) -> dict:
    method = label.split("[")[0]
    trainable = 110_000_000 if method == "full" else rng.randint(10_000, 5_000_000)
    total = 110_000_000 + (0 if method == "full" else trainable)
    chash = hashlib.sha256(f"{model}|{label}|{task}".encode()).hexdigest()  # stable across processes
    status = "failed" if rng.random() < 0.02 else "ok"
    rec = {"schema_version": 1, "status": status, "error": None,
           "run_id": record_stem(model, task, label, seed, chash), "sweep": "bench",
           "created_at": "2025-01-01T00:00:00Z", "finished_at": f"2025-01-01T00:{seed:02d}:00Z",
           "model": model, "task": task, "method": method, "method_label": label, "seed": seed,
           "config": {"model": model, "task": task, "method": label, "seed": seed}, "config_hash": chash,
           "headline_metric": TASKS[task], "metrics": {}, "metrics_per_epoch": [], "selection": "last",
           "env": {"python": "3.11.7", "torch": "2.13.0", "device": "cuda", "cuda_device_name": "H100",
                   "git_commit": "0" * 40, "git_dirty": False}}
    if status == "failed":
        rec["error"] = {"type": "torch.OutOfMemoryError", "message": "CUDA out of memory", "phase": "train",
                        "where": "train.py:1 in step", "log": rec["run_id"] + ".log"}
        return rec
    v = rng.uniform(0.5, 0.95)
    rec["metrics"] = {TASKS[task]: v, "accuracy": v - 0.02} if TASKS[task] != "accuracy" else {"accuracy": v}
    rec["params"] = {"trainable": trainable, "total": total, "head": 1538, "trainable_excl_head": trainable - 1538,
                     "trainable_pct": 100 * trainable / total, "counting": "incl. head"}
    rec["memory"] = {"peak_rss_bytes": rng.randint(2, 4) * 2**30, "baseline_rss_bytes": 2**30,
                     "rss_method": "psutil", "cuda_peak_allocated_bytes": rng.randint(1, 20) * 2**30,
                     "cuda_peak_reserved_bytes": 21 * 2**30}
    rec["throughput"] = {"train_samples_per_s": rng.uniform(50, 500), "train_tokens_per_s": rng.uniform(1e4, 1e5),
                         "train_padded_tokens_per_s": 2e5, "eval_samples_per_s": 900.0,
                         "warmup_steps_excluded": 5, "timed_steps": 100}
    rec["time"] = {"train_s": rng.uniform(60, 3600), "eval_s": 12.0, "total_s": 4000.0}
    rec["storage"] = {"bytes": trainable * 4, "what": "safetensors"}
    rec["train"] = {"epochs": 3, "steps": 900, "batch_size": 32, "lr": 3e-4, "warmup_steps": 50,
                    "final_loss": rng.uniform(0.1, 0.7), "deterministic": True}
    return rec


def write_synthetic(root: Path, n: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    models = [f"model-{i}" for i in range(5)]
    per_seed = len(models) * len(METHODS) * len(TASKS)
    written = 0
    for s in range(1, -(-n // per_seed) + 1):
        for model in models:
            for label in METHODS:
                for task in TASKS:
                    if written == n:
                        return written
                    rec = synth_record(rng, model, label, task, s)
                    path = root / "bench" / model / f"{rec['run_id']}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(rec, indent=2))
                    written += 1
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--keep", type=Path, help="write records and report here instead of a temp dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-")) if args.keep is None else args.keep
    try:
        t0 = time.perf_counter()
        n = write_synthetic(tmp / "results", args.records)
        print(f"wrote {n} synthetic records in {time.perf_counter() - t0:.1f} s (not timed)")
        timings: dict[str, float] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        generate_report(tmp / "results", tmp / "report", "bench", timings=timings)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        print("phases (wall): " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        # CPU time is the steadier number on a shared machine; the goal is on wall time.
        print(f"report generation: {total:.2f} s wall, {cpu:.2f} s CPU for {n} records (goal < 10 s)")
        return 0 if total < 10 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
