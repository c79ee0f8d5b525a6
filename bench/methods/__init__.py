"""Method registry: name -> class, as peft maps PeftType -> config/model.

Built-in methods are selected by `method=<name>` (conf/method/<name>.yaml, whose `_target_` names the
class); external methods by a config whose `_target_` is any importable `Method` subclass.
"""
from __future__ import annotations

import importlib

from bench.errors import ConfigError
from bench.methods.adapter import Adapter, PfeifferAdapter
from bench.methods.base import Method
from bench.methods.peft_methods import IA3, LoRA, PrefixTuning, PromptTuning
from bench.methods.simple import BitFit, Full, HeadOnly

REGISTRY: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (Full, HeadOnly, Adapter, PfeifferAdapter, LoRA, PromptTuning, BitFit, IA3, PrefixTuning)
}
REQUIRED = ("full", "head_only", "adapter", "lora", "prompt_tuning")

RESERVED_KEYS = ("_target_", "name")


def resolve_class(target: str) -> type[Method]:
    if target in REGISTRY:
        return REGISTRY[target]
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ConfigError(f"method._target_={target!r}: expected a registered name ({', '.join(REGISTRY)}) "
                          "or a dotted path module.Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"method._target_={target!r}: cannot import {module_name!r} ({exc}); "
                          "is its package on the Python path?") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(f"method._target_={target!r}: {attr!r} is not a bench.methods.Method subclass")
    return cls


def build_method(method_cfg) -> Method:
    """Instantiate a method from its config mapping (`_target_`, `name`, settings)."""
    cfg = dict(method_cfg)
    target = cfg.get("_target_") or cfg.get("name")
    if not target:
        raise ConfigError("method: the config has neither _target_ nor name")
    cls = resolve_class(str(target))
    settings = {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}
    method = cls(**settings)
    if cfg.get("name"):
        method.name = str(cfg["name"])
    return method


__all__ = ["REGISTRY", "REQUIRED", "Method", "build_method", "resolve_class"]
