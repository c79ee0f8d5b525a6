#!/usr/bin/env python3
"""Cost at scale (issue #27): peak memory and step time of the method families against model size,
fp32 and bf16 weights, with and without activation checkpointing.

Every point is one cell's training as the harness runs it, in a fresh forked process (so its peak is
its own): the decoder built from a transformers config with the published shape and random weights
(written to a temporary folder and built by bench.models.build.build_cell, the method applied by its
bench.methods class), the levers of bench/models/levers.py, bench.training.loop.train_model on random token ids
of exactly `--length` tokens at `--batch` rows, inside bench.measure.memory.PeakMemory, timed by the
loop's own StepTimer: the numbers are the ones a record's `memory.peak_rss_bytes` and throughput
hold. Pooling is mean pooling (the decoders' last-token pooling costs the same).

Step time: seconds per optimizer step over the steps after `--warmup` untimed ones. head_only trains
on cached features: its time per step is (the one feature pass + the head steps) / steps, i.e.
train_s / steps, and checkpointing does nothing for it (run once).

On CUDA (`--device cuda`) the peak is torch's max_memory_allocated; `--weights nf4` adds the 4-bit
base (QLoRA) there. Usage (the committed table, docs/scale.md):

  nice -n 19 python -m benchmarks.bench_scale --out docs/scale --sizes tiny,smollm2_135m,qwen2_5_0_5b
  python -m benchmarks.bench_scale --device cuda --sizes qwen2_5_0_5b,qwen2_5_1_5b --methods lora \\
      --weights bf16,nf4 --out /tmp/scale_gpu                                # a GPU machine
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: published shapes (../shared/reference/literature.md "Decoder backbones"; Qwen2.5-1.5B/3B/7B from
#: their config.json on the hub): (config class, kwargs)
SHAPES = {
    "tiny": ("LlamaConfig", {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                 "intermediate_size": 256, "vocab_size": 32000, "tie_word_embeddings": True}),
    "smollm2_135m": ("LlamaConfig", {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                                         "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                                         "tie_word_embeddings": True, "max_position_embeddings": 8192, "rope_theta": 100000.0}),
    "qwen2_5_0_5b": ("Qwen2Config", {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                                         "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
                                         "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "qwen2_5_1_5b": ("Qwen2Config", {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                                         "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936,
                                         "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "qwen2_5_3b": ("Qwen2Config", {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                                       "num_key_value_heads": 2, "intermediate_size": 11008, "vocab_size": 151936,
                                       "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "qwen2_5_7b": ("Qwen2Config", {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                                       "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
                                       "tie_word_embeddings": False, "max_position_embeddings": 32768}),
}
#: the method families; the decoders' module names where the encoder defaults would not match
METHODS = {
    "full": {"name": "full", "lr": 5e-5},
    "lora": {"name": "lora", "lr": 1e-3, "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    "ia3": {"name": "ia3", "lr": 3e-3},
    "prompt_tuning": {"name": "prompt_tuning", "lr": 3e-2, "num_virtual_tokens": 20, "init": "random"},
    "head_only": {"name": "head_only", "lr": 1e-2},
}
GIB = 1024 ** 3


def config_folder(size: str, root: Path) -> str:
    import transformers

    cls_name, kwargs = SHAPES[size]
    folder = root / size
    if not (folder / "config.json").exists():
        getattr(transformers, cls_name)(**kwargs).save_pretrained(folder)
    return str(folder)


def measure(point: dict, folder: str, args) -> dict:
    """One point, in this (forked) process: build, train `steps` steps, the harness's own figures."""
    import torch
    from omegaconf import OmegaConf

    from bench.data.batching import Encoded
    from bench.measure.memory import PeakMemory
    from bench.measure.timing import ForeignCPU
    from bench.methods import build_method
    from bench.models.build import build_cell
    from bench.models.levers import enable_checkpointing, resolve_precision
    from bench.training.loop import train_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model_cfg = OmegaConf.create({"name": point["size"], "source": folder, "tokenizer": "bundled:minilm",
                                  "pretrained": False, "pooling": "mean", "head_dropout": 0.0})
    t0 = time.perf_counter()
    cell = build_cell(model_cfg, build_method(dict(METHODS[point["method"]])), 2, seed=0, max_seq_len=args.length,
                      weights_dtype=point["weights"])
    model = cell.model.to(device)
    if point["checkpointing"]:
        enable_checkpointing(model, cell.method)
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    n = args.batch * (args.steps + args.warmup)
    ids = torch.randint(1000, 30000, (n, args.length), generator=g).tolist()
    data = Encoded(ids, None, [i % 2 for i in range(n)], False)
    tcfg = OmegaConf.create({"batch_size": args.batch, "epochs": 1, "weight_decay": 0.01, "warmup_ratio": 0.0,
                             "max_grad_norm": 1.0, "seed": 0, "group_by_length": False,
                             "warmup_steps_excluded": args.warmup, "eval_batch_size": args.batch})
    precision = resolve_precision(point["weights"], "fp32")
    with ForeignCPU() as foreign, PeakMemory(device) as mem:
        res, timer = train_model(model, cell.method, data, tcfg, device, pad_id=0, precision=precision)
    m = mem.as_dict()
    cached = res.feature_s is not None
    step_s = res.train_s / res.steps if cached else timer.seconds / max(1, timer.timed_steps)
    return dict(point, params=cell.params["total"], trainable=cell.params["trainable"], steps=res.steps,
                timed_steps=timer.timed_steps, step_s=step_s, final_loss=res.final_loss, build_s=build_s,
                peak_bytes=m["cuda_peak_allocated_bytes"] if device.type == "cuda" else m["peak_rss_bytes"],
                baseline_rss_bytes=m["baseline_rss_bytes"], peak_rss_bytes=m["peak_rss_bytes"],
                memory_kind="cuda max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM), whole process",
                foreign_cpu_frac=foreign.frac, precision=precision, step_time_kind="train_s/steps (feature pass + head)" if cached else
                f"StepTimer, {timer.timed_steps} steps after {args.warmup} warm-up")


def _child(point, folder, args, queue) -> None:
    try:
        queue.put(measure(point, folder, args))
    except Exception as exc:  # noqa: BLE001 - one point's failure is a row, not the end of the grid
        queue.put(dict(point, error=f"{type(exc).__name__}: {exc}"))


def run_point(point: dict, folder: str, args) -> dict:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(point, folder, args, queue))
    t0 = time.perf_counter()
    child.start()
    child.join()
    out = queue.get() if not queue.empty() else dict(point, error=f"process died: exit code {child.exitcode}")
    out["wall_s"] = time.perf_counter() - t0
    return out


def grid(args) -> list[dict]:
    points = []
    for size in args.sizes.split(","):
        for method in args.methods.split(","):
            for weights in args.weights.split(","):
                for ckpt in (False, True) if args.checkpointing == "both" else (args.checkpointing == "on",):
                    if ckpt and method == "head_only":
                        continue  # cached features: no backward through the backbone
                    points.append({"size": size, "method": method, "weights": weights, "checkpointing": ckpt})
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny,smollm2_135m,qwen2_5_0_5b")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--weights", default="fp32,bf16")
    p.add_argument("--checkpointing", choices=("both", "on", "off"), default="both")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="docs/scale")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "scale.jsonl"
    done = {(r["size"], r["method"], r["weights"], r["checkpointing"]) for r in _read(rows_path) if "error" not in r}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for point in grid(args):
            key = (point["size"], point["method"], point["weights"], point["checkpointing"])
            if key in done:
                continue
            row = run_point(point, config_folder(point["size"], Path(tmp)), args)
            row.update(batch=args.batch, length=args.length, device=args.device, threads=args.threads)
            with open(rows_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            peak = f"{row['peak_bytes'] / GIB:.2f} GiB" if "peak_bytes" in row else row.get("error")
            step = f"{row['step_s']:.3f} s/step" if "step_s" in row else ""
            load = f"foreign CPU {row['foreign_cpu_frac']:.0%}" if row.get("foreign_cpu_frac") is not None else ""
            print(f"{point['size']:>14} {point['method']:>13} {point['weights']:>4} ckpt={int(point['checkpointing'])} "
                  f"{peak:>10} {step}  ({row['wall_s']:.0f} s; {load})", flush=True)


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


if __name__ == "__main__":
    main()
