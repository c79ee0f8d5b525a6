"""AdaLoRA (Zhang et al. 2023): SVD-form LoRA whose ranks a budget reallocates by importance during training.

peft's AdaLoRA needs from the training loop what its own Trainer integration gives it: `total_step` (the
cell's real optimizer-step count, known once the loop has sized the cell), `update_and_allocate` after every
optimizer step, and its orthogonal regulariser in the loss (peft adds it only to a model output that carries
a loss, which the harness's backbone-only wrapper never has). Its allocator's running scores are loop state
(a cell's checkpoint), and a saved delta has the ranks the budget left, so reloading resizes first.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.errors import ConfigError
from bench.methods.quirks.registry import Quirk, register_quirk

#: the rank allocator's running importance scores (a checkpoint's loop state, beside the rank pattern)
ALLOCATOR_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")
#: total_step until the loop knows the cell's step count (peft requires a positive value at construction)
UNSIZED_TOTAL_STEP = 10**9


@register_quirk(peft_type="adalora")
class AdaLoraBudget(Quirk):
    """The rank budget's schedule, allocation, regulariser, loop state and reload."""

    def __init__(self, tuner):
        super().__init__(tuner)
        self.total_step: int | None = None

    def config_fields(self) -> dict:
        return {"total_step": self.total_step or UNSIZED_TOTAL_STEP}

    def replaced_by_harness(self) -> dict:
        return {"total_step": self.total_step} if self.total_step is not None else {}

    def before_training(self, model, total_steps: int) -> None:
        self.total_step = int(total_steps)
        cfg = model.backbone.peft_config["default"]
        cfg.total_step = int(total_steps)
        if cfg.tinit >= cfg.total_step - cfg.tfinal:
            raise ConfigError(f"method.tinit={cfg.tinit} + method.tfinal={cfg.tfinal} leave no budgeting phase in "
                              f"this cell's {total_steps} steps; expected tinit + tfinal < {total_steps}")

    def after_optimizer_step(self, model, step: int) -> None:
        model.backbone.base_model.update_and_allocate(step)

    def regularization(self, model):
        weight = float(model.backbone.peft_config["default"].orth_reg_weight)
        terms = []
        for n, p in model.backbone.named_parameters():
            if ("lora_A" in n or "lora_B" in n) and p.requires_grad:
                cov = p @ p.T if "lora_A" in n else p.T @ p
                terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
        return weight * torch.stack(terms).mean() if terms else None

    def loop_state(self, model) -> dict:
        """The allocator's running importance scores and the rank pattern chosen so far (the budget's masks
        on lora_E are in the weights)."""
        alloc = model.backbone.base_model.rankallocator
        state = {k: {n: v.detach().cpu().clone() for n, v in getattr(alloc, k).items()} for k in ALLOCATOR_STATE}
        pattern = model.backbone.peft_config["default"].rank_pattern
        state["rank_pattern"] = {n: [bool(b) for b in v] for n, v in pattern.items()} if pattern else None
        return state

    def load_loop_state(self, model, state: dict) -> None:
        alloc = model.backbone.base_model.rankallocator
        device = next(model.parameters()).device
        for k in ALLOCATOR_STATE:
            setattr(alloc, k, {n: v.to(device) for n, v in state[k].items()})
        model.backbone.peft_config["default"].rank_pattern = state["rank_pattern"]

    def before_load(self, model, folder) -> None:
        """The ranks the budget left: the saved tensors have those shapes."""
        saved = json.loads((Path(folder) / "adapter_config.json").read_text())
        if saved.get("rank_pattern"):
            model.backbone.base_model.resize_modules_by_rank_pattern(saved["rank_pattern"], "default")
