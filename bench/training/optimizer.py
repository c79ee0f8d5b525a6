"""The optimizer and learning-rate schedule of the training loop (bench/training/loop.py): AdamW with no weight
decay on biases and LayerNorm, in the implementation `train.optimizer_impl` names, unless the method builds its
own (`Method.build_optimizer`); linear warm-up then linear decay.
"""
from __future__ import annotations

import torch


def optional_setting(tcfg, key: str, default=None):
    """An optional train setting: a DictConfig/dict (.get) or an attribute object (scripts' SimpleNamespace)."""
    return tcfg.get(key, default) if hasattr(tcfg, "get") else getattr(tcfg, key, default)


# torch.optim.AdamW's implementations (train.optimizer_impl). torch picks the per-tensor loop on CPU
# (foreach only for CUDA/XPU tensors); the foreach one updates every parameter with one multi-tensor
# kernel per operation and gives bit-identical weights (docs/performance.md: same sha256 after training
# MiniLM), so it is the default here; fused is faster still but rounds differently, so it is opt-in.
OPTIMIZER_IMPLS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def make_optimizer(named, tcfg, lr: float) -> tuple[torch.optim.Optimizer, str]:
    """AdamW over `param_groups`, in `train.optimizer_impl` (absent: foreach, which keeps older configs'
    hashes: the weights it produces are the loop's, bit for bit)."""
    impl = str(optional_setting(tcfg, "optimizer_impl", None) or "foreach")
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"train.optimizer_impl: expected one of {', '.join(OPTIMIZER_IMPLS)}, got {impl!r}")
    return torch.optim.AdamW(param_groups(named, float(tcfg.weight_decay)), lr=lr, **OPTIMIZER_IMPLS[impl]), impl


def method_optimizer(model, method, named, tcfg) -> tuple[torch.optim.Optimizer, str]:
    """The method's own optimizer where it declares one (`Method.build_optimizer`), else AdamW."""
    own = method.build_optimizer(model, named, tcfg)
    if own is not None:
        return own
    opt, impl = make_optimizer(named, tcfg, method.lr)
    return opt, f"AdamW ({impl})"


def param_groups(named, weight_decay: float):
    decay, no_decay = [], []
    for n, p in named:
        (no_decay if n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n or p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def linear_schedule(opt, warmup: int, total: int):
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, schedule)
