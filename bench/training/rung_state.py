"""A training run's state at an epoch boundary, so a pruned study's promoted trial continues from its
first rung instead of training those epochs again (bench/sweep/study.py).

What is kept is everything the next epoch depends on: the trainable weights, AdamW's moments, the
schedule's step, the torch RNG streams (dropout) and what the run has learnt about its epochs so far
(per-epoch selection scores, the best epoch and its weights). The batch order is a pure function of
(seed, epoch) and evaluation draws no random numbers, so a continued run ends bit for bit where the
uninterrupted run ends (tests/test_rung_state.py checks it); that is what lets a promoted trial share
the exhaustive trial's config hash.
"""
from __future__ import annotations

from pathlib import Path

import torch

from bench.records.schema import atomic_write

FORMAT = "peft-bench-rung-state"


def save_state(path, *, epoch: int, total_steps: int, named, opt, sched, res, device: torch.device) -> Path:
    path = Path(path)
    state = {
        "format": FORMAT, "version": 1, "epoch": int(epoch), "total_steps": int(total_steps),
        "params": {n: p.detach().cpu().clone() for n, p in named},
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "result": {"steps": res.steps, "final_loss": res.final_loss, "metrics_per_epoch": res.metrics_per_epoch,
                   "best_epoch": res.best_epoch, "best_metrics": res.best_metrics,
                   "best_state": {n: v.cpu() for n, v in (res.best_state or {}).items()} or None},
    }
    return atomic_write(path, "wb", lambda fh: torch.save(state, fh))


def load_state(path, *, total_steps: int, named, opt, sched, res, device: torch.device) -> int:
    """Restore a saved state into a freshly built run; returns the epochs already trained. Raises
    ValueError naming the file when it is not a state of a run with this schedule and these weights."""
    path = Path(path)
    # weights_only: tensors and plain containers only; a results folder may be shared, so its files are data
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError ... for a bad file
        raise ValueError(f"{path}: not a loadable {FORMAT} file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    if state["total_steps"] != int(total_steps):
        raise ValueError(f"{path}: saved for a {state['total_steps']}-step schedule, this run has {total_steps}")
    names = [n for n, _ in named]
    if sorted(names) != sorted(state["params"]):
        raise ValueError(f"{path}: its trainable parameters are not this run's")
    with torch.no_grad():
        for n, p in named:
            p.copy_(state["params"][n].to(p.device))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    r = state["result"]
    res.steps, res.final_loss, res.metrics_per_epoch = r["steps"], r["final_loss"], list(r["metrics_per_epoch"])
    res.best_epoch, res.best_metrics = r["best_epoch"], r["best_metrics"]
    res.best_state = {n: v.to(device) for n, v in r["best_state"].items()} if r["best_state"] else None
    res.continued_from_epoch = int(state["epoch"])
    return int(state["epoch"])
