"""The device's clock and precision: one home for GPU synchronisation and autocast.

Why one home: a timing taken without synchronising the GPU measures the kernel launch, not the work;
every timer (training steps, evaluation, inference latency, the matmul peak) calls `sync` from here,
so none can forget it, and every forward pass picks its autocast from `autocast_for`."""
from __future__ import annotations

from contextlib import nullcontext

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()
