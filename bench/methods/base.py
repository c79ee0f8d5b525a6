"""The method protocol: everything the runner needs from a finetuning method.

A method is a small class. The runner never special-cases a method: it calls `validate`, `apply`,
then trains the parameters that require grad, and calls `save_delta` to measure storage. External
methods (issue: plugins) subclass `Method` and are selected by `_target_` in a Hydra config.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

from bench.errors import ConfigError


class Method:
    """Base class and protocol.

    Subclasses set `name` and `default_lr`, take their settings as keyword arguments, and override
    `apply` (freeze what stays frozen, add what is new). The task head (`model.head`) trains in every
    method: `apply` must leave it trainable; `finalize` enforces that.
    """

    name: str = "method"
    default_lr: float = 1e-3
    #: True when the backbone is frozen and unchanged, so pooled features can be computed once.
    frozen_backbone: bool = False
    #: False for methods whose wrapper cannot take token_type_ids (peft prompt learning drops them).
    uses_token_type_ids: bool = True

    def __init__(self, lr: float | None = None, **settings):
        self.lr = float(lr) if lr is not None else self.default_lr
        if settings:
            raise ConfigError(
                f"method {self.name}: unknown setting(s) {', '.join('method.' + k for k in settings)}; "
                f"accepted: {', '.join('method.' + k for k in self.setting_names())}"
            )

    # -- settings -------------------------------------------------------------------------------
    @classmethod
    def setting_names(cls) -> list[str]:
        names: list[str] = []
        for klass in cls.__mro__:
            if klass is object:
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                    names.append(p.name)
        return names

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in self.setting_names() if hasattr(self, k)}

    # -- protocol -------------------------------------------------------------------------------
    def validate(self, backbone_config, max_seq_len: int) -> None:
        """Raise ConfigError for impossible settings before any training starts."""
        if not self.lr > 0:
            raise ConfigError(f"method.lr / train.lr = {self.lr}: the learning rate must be > 0")

    def apply(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def finalize(self, model: nn.Module) -> nn.Module:
        for p in model.head.parameters():
            p.requires_grad_(True)
        return model

    def trainable_named_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def delta_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What must be stored, besides the public pretrained backbone, to rebuild the finetuned model."""
        return {n: p.detach().cpu().contiguous() for n, p in self.trainable_named_parameters(model)}

    def save_delta(self, model: nn.Module, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.delta_state_dict(model), str(folder / "delta.safetensors"))
        (folder / "method.json").write_text(json.dumps({"method": self.name, **self.settings()}, default=str))
        return folder

    def load_delta(self, model: nn.Module, folder: str | Path) -> nn.Module:
        from safetensors.torch import load_file

        state = load_file(str(Path(folder) / "delta.safetensors"))
        missing = set(state) - set(dict(model.named_parameters()))
        if missing:
            raise ValueError(f"{folder}: delta has tensors the model lacks: {sorted(missing)[:5]}")
        model.load_state_dict(state, strict=False)
        return model

    def describe(self) -> str:
        return self.name


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def check_positive_int(option: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{option}={value!r}: expected an integer >= {minimum}")
    return value


def check_unit_interval(option: str, value) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{option}={value!r}: expected a number in [0, 1)")
    return float(value)
