"""`python -m bench.plan model=M method=X [train.batch_size=B train.max_seq_len=L train.weights_dtype=...
train.precision=... train.gradient_checkpointing=...] [--devices 24GiB,40GiB,80GiB]`: a training step's peak
memory, predicted without the weights.

How: the cell is built by the run's own builder on the meta device (`bench.models.build.build_cell`, as
`bench.params`: the method applied, frozen weights cast as `train.weights_dtype` says), its parameters and
buffers are then made *fake* (torch's FakeTensorMode: shapes and dtypes, no storage), and two training steps
run on a fake batch of `train.batch_size` x `train.max_seq_len` tokens exactly as the loop runs them (autocast
at the cell's precision, the task's loss, backward, gradient clipping, the loop's AdamW or the method's own
optimizer, `zero_grad(set_to_none=True)`; checkpointing through the harness's own lever) under
`torch.distributed._tools.mem_tracker.MemTracker`, a dispatch-level tracker that counts every live storage and
files it under parameters, buffers, gradients, activations, temporaries or optimizer states. The peak is the
largest total it saw (the second step, when AdamW's moments exist); the split is the one at that moment.

What it does not see: the allocator's rounding and caching (CUDA's caching allocator, glibc's arenas on CPU),
the CUDA context and library workspaces, the process's own baseline (Python, torch, the tokenizer). On CPU
(docs/scale.md) the measured peak above the process's baseline is compared with the predicted peak less what
is resident before training (weights and buffers). The delta's storage is the trainable tensors at their
dtype (what `save_delta` writes, less file headers and peft's adapter_config).

By default the step runs at 2 and 4 layers and every figure is carried along the line through them to the
model's depth (`plan_by_depth`; `--full-depth` runs every layer: the same figures for a stack of identical
layers, docs/scale.md compares them, in minutes instead of seconds for a 30-layer model on a loaded CPU).

`--devices` lists device sizes; for each it says whether the step fits and the largest batch that fits,
from the peak at two batch sizes (a straight line in the batch, which is how activations grow; labelled
as such). `train.precision=auto` is read as on a CUDA device (bf16 autocast where supported) unless
`--target cpu`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

GIB = 1024 ** 3
UNITS = {"kib": 1024, "mib": 1024 ** 2, "gib": GIB, "tib": 1024 ** 4, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
         "tb": 1000 ** 4, "b": 1}
#: MemTracker's categories -> the planner's parts
PARTS = {"Parameter": "weights", "Buffer": "weights", "Other": "weights", "Gradient": "gradients",
         "Optstate": "optimizer_states", "Activation": "activations", "Temp": "activations"}


def parse_size(text: str) -> int:
    """`24GiB`, `40 GB`, `80gib` -> bytes (GiB = 2**30, GB = 10**9)."""
    from bench.errors import ConfigError

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = (m.group(2) or "GiB").lower() if m else None
    if m is None or unit not in UNITS:
        raise ConfigError(f"--devices: {text!r}: expected a size such as 24GiB, 40GB or 80GiB")
    return int(float(m.group(1)) * UNITS[unit])


def _to_fake(model, device) -> None:
    """Every parameter and buffer (meta, or real small buffers) replaced by an empty tensor of its shape and
    dtype, created under the active FakeTensorMode: storage-free. Shared parameters (tied embeddings) stay shared."""
    import torch
    from torch import nn

    memo: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                if id(p) not in memo:
                    memo[id(p)] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device),
                                               requires_grad=p.requires_grad)
                module._parameters[name] = memo[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None:
                if id(b) not in memo:
                    memo[id(b)] = torch.zeros(b.shape, dtype=b.dtype, device=device)
                module._buffers[name] = memo[id(b)]


def _tracker():
    """torch's MemTracker with two changes: it registers a gradient hook on every parameter of a module it
    enters, which torch refuses for one that does not require grad (every frozen base weight here), so hooks go
    only where grads flow (otherwise torch 2.13's `_track_module_params_and_buffers`); and the peak update keeps
    the device's peak and split only (torch's walks every module on every op)."""
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    class FrozenAwareMemTracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks: bool = True):
            def _grad_hook(grad):
                self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

            param_memory = buffer_memory = 0
            for param in module.parameters():
                winfos = self._update_and_maybe_create_winfos(param, _MemRefType.PARAM)
                param_memory += sum(w.mem_consumed for w in winfos)
                if param.grad is not None:
                    self._update_and_maybe_create_winfos(param.grad, _MemRefType.GRAD)
                if install_grad_hooks and param.requires_grad and self._param_to_grad_hook_handles.get(param) is None:
                    self._param_to_grad_hook_handles[param] = (
                        param.register_hook(_grad_hook),
                        param.register_post_accumulate_grad_hook(lambda p: _grad_hook(p.grad)))
            for buffer in module.buffers():
                winfos = self._update_and_maybe_create_winfos(buffer, _MemRefType.BUFFER)
                buffer_memory += sum(w.mem_consumed for w in winfos)
            return param_memory, buffer_memory

        def _update_peak_stats(self, peak_state) -> None:
            """The device peak and its split only: torch's also walks every module's own peak on every op
            (quadratic in depth; the planner reads no per-module figures)."""
            for dev, dev_snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < dev_snap["Total"]:
                    self._peak_mem[dev] = dev_snap["Total"]
                    self._peak_mem_snap[dev] = dict(dev_snap)

    return FrozenAwareMemTracker()


def _fake_step(model, method, tcfg, batch: int, length: int, regression: bool, precision: str, steps: int = 2):
    """Run `steps` training steps on fake tensors under MemTracker; returns (peak total, peak split)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.device import autocast_for
    from bench.training.forward import loss_fn
    from bench.training.optimizer import make_optimizer

    device = torch.device("cpu")
    with FakeTensorMode(allow_non_fake_inputs=True):  # small real tensors peft keeps as attributes (prompt ids)
        _to_fake(model, device)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        own = method.build_optimizer(model, named, tcfg)
        opt = own[0] if own is not None else make_optimizer(named, tcfg, float(method.lr or 1e-3))[0]
        tracker = _tracker()
        tracker.track_external(model, opt)
        with tracker:
            for _ in range(steps):
                tracker.reset_mod_stats()  # per-module stats are per iteration; the peak stays
                ids = torch.zeros(batch, length, dtype=torch.long)
                mask = torch.ones(batch, length, dtype=torch.long)
                labels = torch.zeros(batch, dtype=torch.float if regression else torch.long)
                with autocast_for(device, precision):
                    if method.trains_on_cached_features:  # the head on features computed once, without grad
                        with torch.no_grad():
                            feats = model.features(ids, mask)
                        logits = model.head(feats)
                    else:
                        logits = model(ids, mask)
                loss_fn(logits, labels, regression).backward()
                if float(tcfg.get("max_grad_norm", 1.0) or 0) > 0:
                    torch.nn.utils.clip_grad_norm_(params, float(tcfg.max_grad_norm), foreach=True)
                opt.step()
                opt.zero_grad(set_to_none=True)
                del ids, mask, labels, logits
        snap = tracker.get_tracker_snapshot("peak")
    split = {k: 0 for k in ("weights", "gradients", "optimizer_states", "activations")}
    total = 0
    for dev_snap in snap.values():
        for key, value in dev_snap.items():
            if key in PARTS:
                split[PARTS[key]] += int(value)
        total += int(dev_snap.get("Total", sum(dev_snap.values())))
    return total, split


def predict(overrides: list[str], target: str = "cuda", batch: int | None = None, full_depth: bool = False) -> dict:
    """One configuration's predicted peak (the overrides of `python -m bench`). Returns a JSON-able dict.
    By depth (`plan_by_depth`: 2 and 4 layers, carried to the model's depth) unless `full_depth`."""
    from bench.config.method_labels import method_label
    from bench.data import tasks as T
    from bench.models.build import method_from_config, method_source
    from bench.params import compose_config

    t0 = time.perf_counter()
    cfg = compose_config(list(overrides) + ["model.pretrained=false"])
    spec = T.task_spec(cfg.task)
    choice = next((o.partition("=")[2] for o in overrides if o.startswith("method=")), None)
    if full_depth:
        method = method_from_config(cfg, where=method_source(choice))
        out = plan_cell(cfg.model, method, cfg.train, spec.num_labels, spec.kind == "regression", target, batch)
    else:
        out = plan_by_depth(cfg.model, lambda: method_from_config(cfg, where=method_source(choice)), cfg.train,
                            spec.num_labels, spec.kind == "regression", target, batch)
    return {"model": str(cfg.model.name), "method": method_label(cfg, list(overrides)), "task": spec.name, **out,
            "seconds": round(time.perf_counter() - t0, 1)}


def plan_cell(model_cfg, method, tcfg, num_labels: int, regression: bool, target: str = "cuda",
              batch: int | None = None) -> dict:
    """The prediction for a model config, a built method and the train settings (batch_size, max_seq_len,
    weights_dtype, precision, gradient_checkpointing, weight_decay, max_grad_norm, seed)."""
    from bench.errors import ConfigError
    from bench.models.build import build_cell
    from bench.models.levers import enable_checkpointing, resolve_precision, weights_dtype

    dtype = weights_dtype(tcfg)
    if dtype == "nf4":
        raise ConfigError("train.weights_dtype=nf4: bitsandbytes' 4-bit layers do not run on fake tensors; "
                          "the planner covers fp32 and bf16 weights")
    setting = str(tcfg.get("precision", "auto") or "auto")
    precision = resolve_precision(dtype, ("bf16" if target == "cuda" else "fp32") if setting == "auto" else setting)
    batch = int(batch or tcfg.batch_size)
    length = int(tcfg.get("max_seq_len") or 512)
    cell = build_cell(model_cfg, method, num_labels, int(tcfg.get("seed", 0) or 0), length, meta=True,
                      weights_dtype=dtype)
    model = cell.model
    checkpointing = bool(tcfg.get("gradient_checkpointing", False))
    if checkpointing:
        enable_checkpointing(model, cell.method)
    model.train()
    if cell.method.frozen_backbone:
        model.backbone.eval()
    resident = sum(t.numel() * t.element_size() for t in
                   {id(t): t for t in [*model.parameters(), *model.buffers()]}.values())
    trainable = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    delta = sum(p.numel() * p.element_size() for p in trainable)
    total, split = _fake_step(model, cell.method, tcfg, batch, length, regression, precision)
    return {"batch_size": batch, "max_seq_len": length, "weights_dtype": dtype, "precision": precision,
            "gradient_checkpointing": checkpointing,
            "params": {k: v for k, v in cell.params.items() if k != "counting"},
            "peak_bytes": int(total), "split_at_peak": split, "resident_before_bytes": int(resident),
            "delta_bytes": int(delta)}


def plan_by_depth(model_cfg, make_method, tcfg, num_labels: int, regression: bool, target: str = "cuda",
                  batch: int | None = None, at: tuple[int, int] = (2, 4)) -> dict:
    """`plan_cell` at `at` layers and the line through the two to the model's depth: every figure (peak, its
    split, weights, counts) of a stack of identical layers is affine in the number of layers as long as the
    peak falls in the same phase of the step, so two shallow runs give the deep one in a fraction of the time
    (the fake step's cost grows with depth). docs/scale.md compares it with full-depth runs."""
    from omegaconf import OmegaConf

    from bench.models.backbones import load_config, resolve_source

    config = load_config(model_cfg, resolve_source(str(model_cfg.source)), say_fallback=False)[1]
    depth = int(getattr(config, "num_hidden_layers", 0) or 0)
    if depth <= at[1]:
        return dict(plan_cell(model_cfg, make_method(), tcfg, num_labels, regression, target, batch),
                    depth={"layers": depth, "extrapolated_from": None})
    runs = []
    for k in at:
        over = dict(model_cfg.get("config_overrides") or {}, num_hidden_layers=k)
        if getattr(config, "layer_types", None):
            over["layer_types"] = list(config.layer_types[:k])
        plain = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
        cfg_k = OmegaConf.create(dict(plain, config_overrides=over))  # a composed config is struct: a plain copy
        runs.append(plan_cell(cfg_k, make_method(), tcfg, num_labels, regression, target, batch))
    a, b = runs
    f = (depth - at[0]) / (at[1] - at[0])

    def ext(x, y):
        return round(x + (y - x) * f)

    out = dict(b, depth={"layers": depth, "extrapolated_from": list(at)})
    for key in ("peak_bytes", "resident_before_bytes", "delta_bytes"):
        out[key] = ext(a[key], b[key])
    out["split_at_peak"] = {k: ext(a["split_at_peak"][k], v) for k, v in b["split_at_peak"].items()}
    out["params"] = {k: ext(a["params"][k], v) if isinstance(v, int) and not isinstance(v, bool) else v
                     for k, v in b["params"].items()}
    out["params"]["trainable_pct"] = 100 * out["params"]["trainable"] / max(1, out["params"]["total"])
    return out


def fit_devices(overrides: list[str], base: dict, devices: list[int], target: str,
                full_depth: bool = False) -> list[dict]:
    """Per device: fits at the given batch, and the largest batch that fits (`fit_line`)."""
    second = predict(overrides, target, batch=2 * base["batch_size"], full_depth=full_depth)
    return fit_line(base, second, devices)


def fit_cell(model_cfg, make_method, tcfg, base: dict, devices: list[int], target: str = "cuda") -> list[dict]:
    """`fit_devices` for a model config and a method factory (scripts that do not compose overrides), the
    second batch size planned by depth (`plan_by_depth`) as the first was."""
    second = plan_by_depth(model_cfg, make_method, tcfg, 2, False, target, batch=2 * base["batch_size"])
    return fit_line(base, second, devices)


def fit_line(base: dict, second: dict, devices: list[int]) -> list[dict]:
    """A line through the peaks at two batch sizes (activations grow linearly in the batch; weights, gradients
    and optimizer states do not): whether each device holds the given batch, and the largest batch it holds."""
    b1, b2 = base["batch_size"], second["batch_size"]
    slope = (second["peak_bytes"] - base["peak_bytes"]) / (b2 - b1)
    fixed = base["peak_bytes"] - slope * b1
    out = []
    for size in devices:
        largest = int((size - fixed) // slope) if slope > 0 and size > fixed else 0
        out.append({"device_bytes": size, "fits": base["peak_bytes"] <= size, "largest_batch": max(0, largest),
                    "per_example_bytes": int(slope), "fixed_bytes": int(fixed)})
    return out


def _g(b: int) -> str:
    return f"{b / GIB:.2f} GiB"


def format_text(r: dict) -> str:
    s = r["split_at_peak"]
    lines = [(f"{r['model']} + {r['method']} on {r['task']}: batch {r['batch_size']} x {r['max_seq_len']} tokens, "
              f"weights {r['weights_dtype']}, precision {r['precision']}, checkpointing "
              f"{'on' if r['gradient_checkpointing'] else 'off'} (predicted on fake tensors in {r['seconds']} s)"),
             f"  predicted peak of a training step   {_g(r['peak_bytes']):>12}",
             f"    weights (params + buffers)        {_g(s['weights']):>12}",
             f"    gradients of trainable params     {_g(s['gradients']):>12}",
             f"    optimizer states                  {_g(s['optimizer_states']):>12}",
             f"    activations (+ temporaries)       {_g(s['activations']):>12}",
             f"  delta storage (trainable tensors)   {r['delta_bytes'] / 2**20:>9.2f} MiB",
             f"  trainable {r['params']['trainable']:,} of {r['params']['total']:,} parameters",
             (f"  depth: {r['depth']['layers']} layers, carried from runs at {r['depth']['extrapolated_from']} layers"
              if (r.get("depth") or {}).get("extrapolated_from") else "  depth: every layer run"),
             ("  not included: allocator rounding/caching, the CUDA context and library workspaces, "
              "the process baseline")]
    for d in r.get("devices", []):
        lines.append(f"  {_g(d['device_bytes']):>10}: {'fits' if d['fits'] else 'does NOT fit'}; largest batch that "
                     f"fits ~{d['largest_batch']} (line through two batch sizes: {d['per_example_bytes'] / 2**20:.1f} "
                     "MiB per example)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m bench")
    ap.add_argument("--devices", default=None, help="device sizes, e.g. 24GiB,40GiB,80GiB")
    ap.add_argument("--target", choices=("cuda", "cpu"), default="cuda",
                    help="how train.precision=auto resolves (cuda: bf16 autocast; cpu: fp32)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--full-depth", action="store_true", help="run every layer instead of 2 and 4 layers carried to "
                    "the model's depth (the same figures for a stack of identical layers; slower)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bench.models.backbones").setLevel(logging.ERROR)
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bench.errors import ConfigError

    try:
        devices = [parse_size(x) for x in args.devices.split(",")] if args.devices else []
        result = predict(args.overrides, args.target, full_depth=args.full_depth)
        if devices:
            result["devices"] = fit_devices(args.overrides, result, devices, args.target, args.full_depth)
    except (ConfigError, HydraException, OmegaConfBaseException, ValueError) as exc:
        print(f"bench.plan: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
