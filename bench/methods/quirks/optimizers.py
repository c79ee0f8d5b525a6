"""peft's optimizer factories for LoRA, chosen by `method.optimizer` instead of the loop's plain AdamW; each
covers the whole model (the head trains at the base rate)."""
from __future__ import annotations

import torch

from bench.config.schema import Rule, check_value, number
from bench.errors import ConfigError
from bench.methods.quirks.registry import Quirk, register_quirk


class LoraOptimizer(Quirk):
    """An optimizer factory peft provides for LoRA adapters only."""

    def check(self) -> None:
        if self.tuner.peft_type != "lora":
            name = self.handles.optimizer
            raise ConfigError(f"method.optimizer={name}: peft's {name} optimizer is for LoRA "
                              f"(method.peft_type=lora), not {self.tuner.peft_type}")


@register_quirk(optimizer="loraplus")
class LoraPlus(LoraOptimizer):
    """LoRA+ (Hayou et al. 2024): B's learning rate at `loraplus_lr_ratio` x A's."""

    def check(self) -> None:
        super().check()
        ratio = self.tuner.loraplus_lr_ratio
        check_value("method.loraplus_lr_ratio", ratio, Rule("a number >= 1 (the ratio of B's learning rate to A's)",
                                                            number(1)))

    def build_optimizer(self, model, named, tcfg):
        from peft.optimizers import create_loraplus_optimizer

        ratio = self.tuner.loraplus_lr_ratio
        opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=self.tuner.lr, loraplus_lr_ratio=ratio,
                                        loraplus_weight_decay=float(tcfg.weight_decay))
        return opt, f"LoRA+ AdamW (B at {ratio:g}x the rate)"


@register_quirk(optimizer="lorafa")
class LoraFA(LoraOptimizer):
    """LoRA-FA (Zhang et al. 2023): A frozen at its random init, B's gradient projected."""

    def after_apply(self, model) -> None:
        """A stays at its random init (peft's factory freezes it too): frozen here, so it is not counted."""
        for n, p in model.backbone.named_parameters():
            if "lora_A" in n:
                p.requires_grad_(False)

    def build_optimizer(self, model, named, tcfg):
        from peft.optimizers import create_lorafa_optimizer

        wd, lr, fields = float(tcfg.weight_decay), self.tuner.lr, self.tuner.fields
        # peft's factory reads the PeftModel's adapters, so it gets the backbone; the head joins as a plain group
        opt = create_lorafa_optimizer(model.backbone, r=int(fields.get("r", 8)),
                                      lora_alpha=int(fields.get("lora_alpha", 8)), lr=lr, weight_decay=wd)
        head = [(f"head.{n}", p) for n, p in model.head.named_parameters() if p.requires_grad]
        opt.add_param_group({"params": [p for _, p in head], "names": [n for n, _ in head], "lr": lr,
                             "scaling_factors": [None] * len(head), "betas": (0.9, 0.999), "weight_decay": wd})
        return opt, "LoRA-FA (A frozen, B's gradient projected)"
