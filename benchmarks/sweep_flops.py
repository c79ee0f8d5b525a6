#!/usr/bin/env python3
"""Model FLOPs of a sweep's training, counted before running it (bench/measure/flops.py's analytic count over
the batches the harness will form), and the time that work needs at the machine's matmul peak.

Why: it bounds a sweep's wall time from below without running it. Training time >= train FLOPs /
(peak x MFU); the peak is `python -m bench.measure.matmul_peak`'s measurement, and MFU is at most 1 (matrix products
only are counted; the rest of a step is extra). docs/performance.md uses it for the default sweep.

    python -m benchmarks.sweep_flops [--experiment default_sweep] [--peak-gflops 209.3] [--mfu 0.55]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="default_sweep")
    ap.add_argument("--peak-gflops", type=float, default=None, help="default: bench.measure.matmul_peak's cached/measured fp32 peak")
    ap.add_argument("--mfu", type=float, nargs="*", default=[1.0, 0.55])
    args = ap.parse_args(argv)
    import torch
    from hydra import compose, initialize_config_dir
    from transformers.utils import logging as hf_logging

    from bench.data import loading, sampling, tasks
    from bench.data.batching import batch_order, encode
    from bench.measure.flops import Shapes, eval_shapes, plan_for
    from bench.models.build import build_cell, method_from_config

    hf_logging.set_verbosity_error()
    logging.getLogger("bench").setLevel(logging.WARNING)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        exp = compose("config", overrides=[f"experiment={args.experiment}"], return_hydra_config=True)
        grid = exp.hydra.sweeper.params
        total, rows = 0.0, []
        for task in str(grid.task).split(","):
            for method in str(grid.method).split(","):
                cfg = compose("config", overrides=[f"experiment={args.experiment}", f"task={task}", f"method={method}"])
                t = cfg.train
                spec = tasks.task_spec(cfg.task)
                built = build_cell(cfg.model, method_from_config(cfg), spec.num_labels, int(t.seed), int(t.max_seq_len))
                ex = sampling.subsample(loading.load_split(spec, "train"), t.max_train_samples, int(t.seed))
                lengths = encode(ex, built.tokenizer, int(t.max_seq_len), spec.kind == "regression").lengths
                s = Shapes()
                for epoch in range(int(t.epochs)):
                    for b in batch_order(lengths, int(t.batch_size), int(t.seed), epoch, bool(t.group_by_length)):
                        s.add(len(b), max(lengths[i] for i in b))
                plan = plan_for(built.model)
                if built.method.trains_on_cached_features:
                    f = (plan.forward(eval_shapes(lengths, int(t.eval_batch_size), 1), ("backbone", "method"))
                         + plan.train(Shapes(rows=s.rows), ("head",)))
                else:
                    f = plan.train(s)
                rows.append((task, method, f))
                total += f
    for task, method, f in rows:
        print(f"  {task:6s} {method:14s} {f / 1e12:7.2f} TFLOP")
    if args.peak_gflops:
        peak = args.peak_gflops * 1e9
    else:
        from bench.measure.matmul_peak import peak_flops

        peak = peak_flops(torch.device("cpu"), "fp32")["flops_per_s"]
    print(f"{args.experiment}: {len(rows)} cells, training {total / 1e12:.1f} TFLOP of matrix products; at "
          f"{peak / 1e9:.1f} GFLOP/s (fp32 peak, {torch.get_num_threads()} threads): "
          + ", ".join(f"{total / (peak * m) / 60:.1f} min at MFU {m:g}" for m in args.mfu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
