#!/usr/bin/env python3
"""Device check for issue #27 on a CUDA machine: the memory levers and data parallel where they are
meant to run. Not a test (CI has no GPU); written and made runnable on a CPU machine, not run there.

1. environment: torch, CUDA device(s), whether bitsandbytes imports (train.weights_dtype=nf4 needs it;
   `pip install 'peft-bench[qlora]'`).
2. real cells through the CLI on tiny_bert (train=quick, inference off): LoRA at fp32 weights, bf16
   weights, bf16 + checkpointing and the 4-bit base (nf4; skipped with the reason when bitsandbytes is
   missing): status, CUDA peak allocated, train samples/s from each record.
3. cost at scale on the GPU (benchmarks/bench_scale.py --device cuda, random weights, batch 4 x 64 tokens):
   LoRA and full at bf16 (and LoRA at nf4 when bitsandbytes is there) on the Qwen2.5-0.5B and -1.5B
   shapes, with and without checkpointing; `--big` adds the 7B shape (LoRA bf16 / nf4 only: the
   question is the largest model whose LoRA fits 24 GiB).
4. with 2+ GPUs: the same LoRA cell with train.nproc=2 (nccl) beside train.nproc=1; final losses.

Usage (repo root, on the GPU machine):  python -m benchmarks.gpu_scale_check --out DIR [--big]
Writes DIR/summary.json and DIR/scale/scale.jsonl; prints one line per check.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CELL = ["model=tiny_bert", "train=quick", "task=sst2", "method=lora", "inference.enabled=false", "progress.mode=off"]
VARIANTS = {"fp32": [], "bf16": ["train.weights_dtype=bf16"],
            "bf16_ckpt": ["train.weights_dtype=bf16", "train.gradient_checkpointing=true"],
            "nf4": ["train.weights_dtype=nf4"], "nf4_ckpt": ["train.weights_dtype=nf4", "train.gradient_checkpointing=true"]}


def bench(args: list[str], results: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [sys.executable, "-m", "bench", *args, f"results_dir={results}", f"hydra.run.dir={results}/_hydra"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def newest_record(folder: Path) -> dict | None:
    files = sorted((folder / "adhoc").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text()) if files else None


def cells(out: Path, has_bnb: bool) -> dict:
    found = {}
    for name, extra in VARIANTS.items():
        if name.startswith("nf4") and not has_bnb:
            found[name] = {"skipped": "bitsandbytes not importable"}
            print(f"cell {name}: skipped (bitsandbytes not importable)", flush=True)
            continue
        folder = out / "cells" / name
        proc = bench([*CELL, *extra], folder)
        rec = newest_record(folder)
        row = {"exit": proc.returncode, "status": rec and rec["status"],
               "error": (rec or {}).get("error") or (proc.stderr[-600:] if proc.returncode else None)}
        if rec and rec["status"] == "ok":
            row.update(cuda_peak_allocated=rec["memory"]["cuda_peak_allocated_bytes"],
                       samples_per_s=rec["throughput"]["train_samples_per_s"], final_loss=rec["train"]["final_loss"],
                       levers=rec["train"].get("memory_levers"), precision=rec["train"]["precision"])
        found[name] = row
        print(f"cell {name}: exit {proc.returncode} status {row['status']} peak {row.get('cuda_peak_allocated')} "
              f"samples/s {row.get('samples_per_s')}", flush=True)
    return found


def scale(out: Path, has_bnb: bool, big: bool) -> int:
    weights = "bf16,nf4" if has_bnb else "bf16"
    runs = [["--sizes", "qwen2_5_0_5b,qwen2_5_1_5b", "--methods", "lora", "--weights", weights],
            ["--sizes", "qwen2_5_0_5b,qwen2_5_1_5b", "--methods", "full", "--weights", "bf16"]]
    if big:
        runs.append(["--sizes", "qwen2_5_7b", "--methods", "lora", "--weights", weights])
    code = 0
    for extra in runs:
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_scale.py"), "--device", "cuda",
                               "--steps", "3", "--out", str(out / "scale"), *extra], cwd=REPO, text=True, check=False)
        code = code or proc.returncode
    return code


def data_parallel(out: Path) -> dict:
    import torch

    if torch.cuda.device_count() < 2:
        print("data parallel: skipped (one GPU)", flush=True)
        return {"skipped": f"{torch.cuda.device_count()} GPU"}
    folder = out / "ddp"
    proc = bench(["-m", *CELL, "train.nproc=1,2"], folder)
    recs = [json.loads(p.read_text()) for p in sorted((folder / "adhoc").glob("*.json"))]
    losses = {int(r["config"]["train"]["nproc"]): r["train"]["final_loss"] for r in recs if r["status"] == "ok"}
    print(f"data parallel: exit {proc.returncode} final losses by nproc {losses}", flush=True)
    return {"exit": proc.returncode, "final_loss_by_nproc": losses}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--big", action="store_true", help="also the Qwen2.5-7B shape (LoRA)")
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_scale_check: no CUDA device here; this check is for a GPU machine")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    summary = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
               "bitsandbytes": has_bnb}
    print(f"environment: {summary}", flush=True)
    summary["cells"] = cells(out, has_bnb)
    summary["data_parallel"] = data_parallel(out)
    summary["scale_exit"] = scale(out, has_bnb, args.big)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    bad = [k for k, v in summary["cells"].items() if "skipped" not in v and v.get("status") != "ok"]
    print(f"cells not ok: {bad or 'none'}; summary: {out / 'summary.json'}", flush=True)
    sys.exit(1 if bad or summary["scale_exit"] else 0)


if __name__ == "__main__":
    main()
