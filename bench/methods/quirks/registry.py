"""The registry of tuner quirks: what a generic peft tuner needs beyond peft's `get_peft_model`.

A *quirk* is a small class that handles one peft type, one initialisation of LoRA (`init_lora_weights`)
or one optimizer factory (`method.optimizer`), and overrides the hooks below that it needs. It declares
what it handles where it is defined, with `@register_quirk(...)`, as peft's tuners declare themselves with
`register_peft_method`; every module of this package is imported the first time the registry is read,
so a new quirk is a new module here and nothing else. `bench.methods.peft_tuner.PeftTuner` builds one
instance of every quirk that matches its settings and calls their hooks; it never tests a peft type.

What a quirk declares (class attributes) and may override (methods, defaults: nothing):

- `rewrites_base`: its initialisation rewrites the base weights (the tuner's `rewrites_base`);
- `conv1d`: whether peft applies it to transformers' Conv1D layers (GPT-2's projections): True,
  False, or the first peft release that does (e.g. "0.22.0");
- `nested_configs`: config fields whose YAML mapping becomes a peft config object (`eva_config`);
- `check()`: settings errors before any work (ConfigError);
- `config_fields()`: fields the harness sets on peft's config (AdaLoRA's total_step);
- `wrap_config(cfg)`, `after_apply(model)`: around `get_peft_model`;
- the training loop's hooks, named and called as `bench.methods.base.Method`'s: `initialize_from_data`,
  `build_optimizer`, `before_training`, `after_optimizer_step`, `regularization`, `loop_state`,
  `load_loop_state`;
- `replaced_by_harness()`: values of a user's peft file the harness replaced, now known (method=peft);
- `save_options()`: keyword arguments of peft's `save_pretrained`;
- `before_load(model, folder)`, `load_backbone(model, folder)`: reloading a saved delta (the latter
  returns True when it loaded the adapter itself).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import ClassVar

from bench.errors import ConfigError


@dataclass(frozen=True)
class Handles:
    """What a quirk handles: peft types (any initialisation), an initialisation of those types, or an
    optimizer (any type; the quirk's `check` says which it supports)."""

    peft_types: tuple[str, ...] = ()
    init: str | None = None
    #: the initialisation matches as a prefix too, as peft reads it ("pissa_niter_16" is PiSSA)
    init_prefix: bool = False
    optimizer: str | None = None

    def matches(self, peft_type: str, init: str, optimizer: str) -> bool:
        if self.optimizer is not None:
            return optimizer == self.optimizer
        if peft_type not in self.peft_types:
            return False
        if self.init is None:
            return True
        return init == self.init or (self.init_prefix and init.startswith(self.init))


class Quirk:
    """Base of every quirk (see the module docstring); one instance per tuner, holding that tuner's state."""

    handles: ClassVar[Handles] = Handles()
    rewrites_base: ClassVar[bool] = False
    conv1d: ClassVar[bool | str] = True
    nested_configs: ClassVar[dict[str, str]] = {}

    def __init__(self, tuner):
        self.tuner = tuner

    def describe(self) -> str:
        """The quirk in a user's words, for messages."""
        if self.handles.optimizer is not None:
            return f"method.optimizer={self.handles.optimizer}"
        if self.handles.init is not None:
            return f"init_lora_weights={self.tuner.init}"
        return f"peft's {self.tuner.peft_type}"

    def runs_on_conv1d(self, peft_version: str | None = None) -> bool:
        """Whether the installed peft (or `peft_version`) applies this quirk's tuner to Conv1D layers."""
        if isinstance(self.conv1d, bool):
            return self.conv1d
        return not _older(self.conv1d, peft_version)

    # -- settings and wrapping ----------------------------------------------------------------------
    def check(self) -> None:
        return None

    def config_fields(self) -> dict:
        return {}

    def wrap_config(self, cfg):
        return cfg

    def after_apply(self, model) -> None:
        return None

    # -- the training loop's hooks ------------------------------------------------------------------
    def initialize_from_data(self, model, batches) -> None:
        return None

    def build_optimizer(self, model, named, tcfg):
        return None

    def before_training(self, model, total_steps: int) -> None:
        return None

    def after_optimizer_step(self, model, step: int) -> None:
        return None

    def regularization(self, model):
        return None

    def loop_state(self, model) -> dict | None:
        return None

    def load_loop_state(self, model, state: dict) -> None:
        return None

    def replaced_by_harness(self) -> dict:
        return {}

    # -- saving and loading -------------------------------------------------------------------------
    def save_options(self) -> dict:
        return {}

    def before_load(self, model, folder) -> None:
        return None

    def load_backbone(self, model, folder) -> bool:
        return False

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this quirk implements `hook` (a tuner uses a loop hook when one of its quirks does)."""
        return getattr(cls, hook) is not getattr(Quirk, hook)


#: what a quirk handles -> the quirk, filled by `register_quirk`
QUIRKS: dict[Handles, type[Quirk]] = {}


def register_quirk(*, peft_type: str | tuple[str, ...] = (), init: str | None = None, init_prefix: bool = False,
                   optimizer: str | None = None):
    """Class decorator: the quirk handles `peft_type` (one or several), an `init` of it, or an `optimizer`."""
    types = (peft_type,) if isinstance(peft_type, str) else tuple(peft_type)
    handles = Handles(peft_types=types, init=init, init_prefix=init_prefix, optimizer=optimizer)
    if (optimizer is None) == (not types):
        raise TypeError(f"register_quirk{handles}: a quirk handles peft types (and an init of them) or an optimizer")

    def register(cls: type[Quirk]) -> type[Quirk]:
        other = QUIRKS.get(handles)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ConfigError(f"quirk {handles}: claimed by both {other.__qualname__} and {cls.__qualname__}")
        cls.handles = handles
        QUIRKS[handles] = cls
        return cls

    return register


_loaded = False


def registered() -> list[type[Quirk]]:
    """Every registered quirk, the package's modules imported first (once)."""
    global _loaded
    if not _loaded:
        package = __name__.rpartition(".")[0]
        for info in sorted(pkgutil.iter_modules(importlib.import_module(package).__path__), key=lambda i: i.name):
            importlib.import_module(f"{package}.{info.name}")
        _loaded = True
    return list(QUIRKS.values())


def quirks_for(tuner) -> list[Quirk]:
    """Instances of the quirks that match the tuner's peft type, initialisation and optimizer: those of its
    type first, then of its initialisation, then of its optimizer."""
    found = [cls for cls in registered() if cls.handles.matches(tuner.peft_type, tuner.init, tuner.optimizer)]
    found.sort(key=lambda cls: (cls.handles.optimizer is not None, cls.handles.init is not None))
    return [cls(tuner) for cls in found]


def optimizer_names() -> tuple[str, ...]:
    """AdamW (the loop's own) and the optimizers a quirk provides, in registration order."""
    return ("adamw", *[cls.handles.optimizer for cls in registered() if cls.handles.optimizer is not None])


def nested_config_classes() -> dict[str, str]:
    """Config field -> dotted path of the peft class its mapping becomes, over every registered quirk."""
    out: dict[str, str] = {}
    for cls in registered():
        out.update(cls.nested_configs)
    return out


def conv1d_unsupported_types() -> tuple[str, ...]:
    """The peft types declared unable to handle Conv1D layers (whatever the initialisation)."""
    return tuple(t for cls in registered() if cls.handles.init is None and cls.conv1d is False
                 for t in cls.handles.peft_types)


def conv1d_inits_supported_from() -> dict[str, str]:
    """init_lora_weights value -> the first peft release that applies it to Conv1D layers."""
    return {cls.handles.init: cls.conv1d for cls in registered()
            if cls.handles.init is not None and isinstance(cls.conv1d, str)}


def conv1d_unsupported_inits(peft_version: str | None = None) -> tuple[str, ...]:
    """The init_lora_weights values the installed peft (or `peft_version`) cannot apply to Conv1D layers."""
    return tuple(init for init, since in conv1d_inits_supported_from().items() if _older(since, peft_version))


def _older(since: str, peft_version: str | None) -> bool:
    from importlib.metadata import version

    from packaging.version import Version

    return Version(peft_version or version("peft")) < Version(since)
