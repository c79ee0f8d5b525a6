#!/usr/bin/env python3
"""Benchmark: does torch.compile pay on the harness's CPU cells? Compile time against per-step gain.

For each method, the harness's own model and loop (bench.models.build.build_cell + bench.training.loop.train_model) on
the same SST-2 rows and length-grouped batches, once eager and once with the backbone wrapped in
`torch.compile(dynamic=True)` (length grouping makes almost every batch a new sequence length, so a
static compile would recompile constantly). Per-step wall times come from the loop's progress hook.
Printed: the first steps' time (compilation happens there), the median step after `--settle` steps,
the speed-up after compiling, and the break-even step count (compile overhead / per-step saving),
next to the default sweep's ~189 steps per cell.

Usage: python -m benchmarks.bench_compile [--methods lora,full] [--steps 60] [--settle 20] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bench.training.loop import train_model
from benchmarks.bench_overhead import Setup


class StepClock:
    def __init__(self):
        self.times: list[float] = []

    def start(self, total_steps, epochs):
        self.t = time.perf_counter()

    def step(self, samples, loss, epoch, lr=None):
        now = time.perf_counter()
        self.times.append(now - self.t)
        self.t = now

    def close(self):
        pass


def run(setup: Setup, compiled: bool) -> list[float]:
    built, method = setup.harness_model()
    if compiled:
        built.model.backbone = torch.compile(built.model.backbone, dynamic=True)
    clock = StepClock()
    torch.manual_seed(0)
    train_model(built.model, method, setup.data, setup.cfg.train, torch.device("cpu"), setup.pad_id, progress=clock)
    return clock.times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--settle", type=int, default=20, help="steps after which a step counts as settled")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"== bench_compile: torch {torch.__version__}, {args.threads} threads, SST-2, batch 32, {args.steps} steps")
    for method in args.methods.split(","):
        setup = Setup(method, args.steps * 32, 32, 5, [])
        eager = run(setup, False)
        comp = run(setup, True)
        e, c = statistics.median(eager[args.settle:]), statistics.median(comp[args.settle:])
        overhead = sum(comp[:args.settle]) - sum(eager[:args.settle])
        gain = e - c
        even = overhead / gain if gain > 0 else float("inf")
        print(f"  {method:6s} eager {e * 1e3:7.1f} ms/step; compiled {c * 1e3:7.1f} ms/step after step {args.settle} "
              f"(x{e / c:.2f}); first {args.settle} steps {sum(comp[:args.settle]):.1f} s compiled vs "
              f"{sum(eager[:args.settle]):.1f} s eager (compile overhead {overhead:.1f} s); break-even after "
              f"{even:.0f} steps (a default-sweep cell trains ~189)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
