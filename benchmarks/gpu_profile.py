#!/usr/bin/env python3
"""Why is the harness's full finetune slower than a minimal loop on a GPU? (gpu_check.py found
full 3.3x, LoRA 1.03x on an H200). Runs on a CUDA machine: counts which AdamW implementation each
side used, times the harness with deterministic algorithms on and off, and prints the top ops of
a torch.profiler trace for each side. A diagnosis script, kept because the next GPU session may
need it again.

Usage: python -m benchmarks.gpu_profile [--n 1600]
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch
import torch.optim.adam as adam_mod

CALLS = collections.Counter()
for _name in ("_single_tensor_adam", "_multi_tensor_adam", "_fused_adam"):
    _orig = getattr(adam_mod, _name, None)
    if _orig is None:
        continue

    def _wrap(*a, _o=_orig, _n=_name, **k):
        CALLS[_n] += 1
        return _o(*a, **k)

    setattr(adam_mod, _name, _wrap)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1600)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: gpu_profile profiles CUDA runs, nothing to do here", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    from bench.measure.memory import PeakMemory
    from bench.training.loop import train_model
    from benchmarks.bench_overhead import Setup
    from benchmarks.gpu_check import minimal_loop

    dev = torch.device("cuda")
    print(torch.__version__, torch.cuda.get_device_name(dev), "threads", torch.get_num_threads(), flush=True)
    for meth in ("full", "lora"):
        setup = Setup(meth, args.n, 32, 5, ["train.precision=bf16"])
        for det in (False, True):
            torch.use_deterministic_algorithms(det, warn_only=True)
            built, method = setup.harness_model()
            model = built.model.to(dev)
            CALLS.clear()
            t = time.perf_counter()
            with PeakMemory(dev) as pm:
                _, timer = train_model(model, method, setup.data, setup.cfg.train, dev, setup.pad_id, precision="bf16")
            print(f"{meth} harness deterministic={det}: {timer.seconds / timer.timed_steps * 1e3:.2f} ms/step, "
                  f"peak {pm.cuda_allocated / 2**20:.1f} MiB, wall {time.perf_counter() - t:.1f} s, adam {dict(CALLS)}",
                  flush=True)
            del model, built  # left alive, its weights would count in the next peak
            torch.cuda.empty_cache()
        torch.use_deterministic_algorithms(False)
        built, method = setup.harness_model()
        mm = setup.minimal_model({k: v.clone() for k, v in built.model.state_dict().items()}, method)
        del built
        mm = mm.to(dev)
        CALLS.clear()
        t = setup.cfg.train
        r = minimal_loop(mm, setup.batches, setup.data, setup.pad_id, method.lr, float(t.weight_decay),
                         float(t.warmup_ratio), float(t.max_grad_norm), dev, 5)
        print(f"{meth} minimal: {r['step_s'] * 1e3:.2f} ms/step, peak {r['peak_alloc'] / 2**20:.1f} MiB, adam {dict(CALLS)}",
              flush=True)
        if meth != "full":
            continue
        # profiles over the first 15 steps of each side
        short = setup.batches[:15]
        built, method = setup.harness_model()
        model = built.model.to(dev)
        from bench.data.batching import Encoded

        ids = sorted({i for b in short for i in b})
        sub = Encoded([setup.data.input_ids[i] for i in ids],
                      [setup.data.token_type_ids[i] for i in ids] if setup.data.token_type_ids else None,
                      [setup.data.labels[i] for i in ids], setup.data.is_regression)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            train_model(model, method, sub, setup.cfg.train, dev, setup.pad_id, precision="bf16")
        print("== harness full: top by self CUDA time")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60))
        print("== harness full: top by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            minimal_loop(mm, short, setup.data, setup.pad_id, method.lr, 0.01, 0.06, 1.0, dev, 5)
        print("== minimal full: top by self CUDA time")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
