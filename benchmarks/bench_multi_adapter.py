"""Serving many tasks (issue #14): one backbone with N task adapters switched per batch, versus N
merged models. Memory and latency for N = 1, 2, 4, 8.

Three ways to serve N tasks, timed interleaved batch by batch (task k = batch index mod N, so every
batch switches task when N > 1):
- `lora_switch`: one backbone wrapped by peft with N LoRA adapters (`add_adapter` / `set_adapter`),
  plus N heads; switching = `set_adapter(name)` + picking the head;
- `adapter_switch`: the hand-written bottleneck adapters (bench/methods/adapter.py) with N adapter
  sets kept in banks; switching = pointing each block's `adapter` at the task's module;
- `merged_models`: N copies of the backbone with their task's LoRA merged in (`merge_and_unload`);
  switching = picking the model;
- `reference`: one untouched backbone + head (the cost floor; ratios are against it).

Adapter weights are random (non-zero), not trained: latency and memory do not depend on the values.
Memory: exact bytes of the unique parameter tensors each setup holds, and the process's resident-set
growth while building it (allocator-dependent, indicative). Inputs: synthetic ids of exact length.

    .venv/bin/python -m benchmarks.bench_multi_adapter            # MiniLM, N = 1 2 4 8, batch 1 and 8
    .venv/bin/python -m benchmarks.bench_multi_adapter --model tiny_bert --ns 1 2 --repeats 10  # seconds
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

from bench.inference.cost import time_interleaved
from bench.inference.variants import synthetic_inputs
from bench.measure.memory import current_rss


def load_model_cfg(name: str):
    from omegaconf import OmegaConf

    path = REPO / "conf" / "model" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"--model {name}: no {path}")
    return OmegaConf.load(path)


def fresh(model_cfg, num_labels: int = 2):
    from bench.models.backbones import build_model

    return build_model(model_cfg, num_labels, seed=0).model.eval()


def param_bytes(*modules: nn.Module) -> int:
    seen, total = set(), 0
    for m in modules:
        for p in m.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel() * p.element_size()
    return total


def _randomize(module: nn.Module, names: tuple[str, ...], std: float = 0.02) -> None:
    g = torch.Generator().manual_seed(zlib.crc32("|".join(names).encode()))  # hash() is salted per process
    with torch.no_grad():
        for n, p in module.named_parameters():
            if any(k in n for k in names):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def lora_config(r: int):
    from peft import LoraConfig, TaskType

    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["query", "value"],
                      task_type=TaskType.FEATURE_EXTRACTION)


def build_lora_switch(model_cfg, n: int, r: int):
    from peft import get_peft_model

    model = fresh(model_cfg)
    model.backbone = get_peft_model(model.backbone, lora_config(r), adapter_name="t0")
    for k in range(1, n):
        model.backbone.add_adapter(f"t{k}", lora_config(r))
    _randomize(model, ("lora_B",))
    heads = nn.ModuleList(copy.deepcopy(model.head) for _ in range(n))

    def select(k: int):
        model.backbone.set_adapter(f"t{k}")
        model.head = heads[k]
        return model

    return select, (model, heads)


def build_adapter_switch(model_cfg, n: int, size: int):
    from bench.methods.adapter import Adapter, Bottleneck

    model = fresh(model_cfg)
    Adapter(size=size).apply(model)
    blocks = [m for m in model.backbone.modules() if hasattr(m, "adapter") and isinstance(m.adapter, Bottleneck)]
    hidden = model.head.out.in_features
    banks = []
    for b in blocks:
        bank = nn.ModuleList([b.adapter] + [Bottleneck(hidden, size, "relu") for _ in range(n - 1)])
        _randomize(bank, ("up.",))
        banks.append(bank)
    heads = nn.ModuleList(copy.deepcopy(model.head) for _ in range(n))
    holder = nn.ModuleList(banks)

    def select(k: int):
        for b, bank in zip(blocks, banks):
            b.adapter = bank[k]  # the forward hook reads block.adapter at call time
        model.head = heads[k]
        return model

    return select, (model, heads, holder)


def build_merged(model_cfg, n: int, r: int):
    from peft import get_peft_model

    models = []
    for k in range(n):
        m = fresh(model_cfg)
        m.backbone = get_peft_model(m.backbone, lora_config(r))
        _randomize(m, ("lora_B",))
        m.backbone = m.backbone.merge_and_unload()
        models.append(m.eval())
    return (lambda k: models[k]), tuple(models)


def build_reference(model_cfg, n: int, _):
    model = fresh(model_cfg)
    return (lambda k: model), (model,)


SETUPS = {"reference": build_reference, "lora_switch": build_lora_switch,
          "adapter_switch": build_adapter_switch, "merged_models": build_merged}


def round_robin(select, n: int, x: dict):
    """A call that serves the next task (k = call index mod n): every call switches when n > 1."""
    calls = [0]

    def run():
        k = calls[0] % n
        calls[0] += 1
        with torch.inference_mode():
            return select(k)(**x)

    return run


def measure_n(model_cfg, n: int, args) -> dict:
    built, memory = {}, {}
    for name, fn in SETUPS.items():
        gc.collect()
        rss0 = current_rss()
        select, holders = fn(model_cfg, n, args.r if name != "adapter_switch" else args.adapter_size)
        gc.collect()
        memory[name] = {"param_bytes": param_bytes(*holders), "rss_growth_bytes": current_rss() - rss0}
        built[name] = (select, holders)
    vocab = int(built["reference"][1][0].backbone.config.vocab_size)
    out = {"n": n, "memory": memory, "latency": {}}
    for batch in args.batches:
        x = synthetic_inputs(batch, args.length, vocab, torch.device("cpu"))
        fns = {name: round_robin(built[name][0], n, x) for name in SETUPS}
        times = time_interleaved(fns, args.repeats, max(args.warmup, n), torch.device("cpu"))
        ref = np.median(times["reference"])
        out["latency"][str(batch)] = {
            name: {"median_ms": 1e3 * float(np.median(t)), "p95_ms": 1e3 * float(np.percentile(t, 95)),
                   "iqr_ms": [1e3 * float(q) for q in np.percentile(t, [25, 75])],
                   "ratio_vs_reference": float(np.median(t) / ref)}
            for name, t in times.items()}
    del built
    gc.collect()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm", help="a conf/model/<name>.yaml (default minilm)")
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds per (N, batch)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds (at least N, so every task ran once)")
    ap.add_argument("--r", type=int, default=8, help="LoRA rank")
    ap.add_argument("--adapter-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=None, help="JSON output (default results/multi_adapter/<model>.json)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()  # one load report per model built would bury the table
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    model_cfg = load_model_cfg(args.model)
    t0 = time.perf_counter()
    results = [measure_n(model_cfg, n, args) for n in args.ns]
    doc = {"model": args.model, "length": args.length, "threads": args.threads, "repeats": args.repeats,
           "lora_r": args.r, "adapter_size": args.adapter_size, "inputs": "synthetic ids of exact length",
           "torch": torch.__version__, "seconds": time.perf_counter() - t0, "results": results}
    out = Path(args.out or REPO / "results" / "multi_adapter" / f"{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    mib = 2**20
    print(f"{args.model}, {args.length} tokens, {args.threads} threads, {args.repeats} interleaved rounds "
          f"({doc['seconds']:.0f} s); latency = median ms (x reference); memory = parameter MiB (RSS growth MiB)")
    for r in results:
        for name in SETUPS:
            lat = "  ".join(f"b{b}: {r['latency'][b][name]['median_ms']:7.2f} ms ({r['latency'][b][name]['ratio_vs_reference']:.2f}x)"
                            for b in r["latency"])
            mem = r["memory"][name]
            print(f"N={r['n']}  {name:15s} {lat}   mem {mem['param_bytes'] / mib:7.1f} ({mem['rss_growth_bytes'] / mib:7.1f})")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
