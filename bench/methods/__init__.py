"""Method registry: name -> class, as peft maps PeftType -> config/model.

Built-in methods are selected by `method=<name>` (conf/method/<name>.yaml, whose `_target_` names the
class and whose `name` must equal the class's `name`); external methods by a config whose `_target_`
is any importable `Method` subclass. Classes register themselves (bench/methods/base.py explains the
identity rule); importing the built-in modules below fills REGISTRY with the built-ins.
"""
from __future__ import annotations

import importlib

from bench.config.schema import METHOD_DECLARATIONS
from bench.errors import ConfigError
from bench.methods.adapter import Adapter, PfeifferAdapter
from bench.methods.attempt import Attempt
from bench.methods.base import REGISTRY, Method
from bench.methods.fusion import AdapterFusion
from bench.methods.lora_moe import LoraMoE
from bench.methods.peft_methods import IA3, LoRA, PrefixTuning, PromptTuning
from bench.methods.peft_tuner import PeftTuner
from bench.methods.simple import BitFit, Full, HeadOnly

BUILT_IN = (Full, HeadOnly, Adapter, PfeifferAdapter, LoRA, PromptTuning, BitFit, IA3, PrefixTuning)
#: learned combinations of frozen source modules (bench/methods/composed.py)
COMPOSED = (AdapterFusion, Attempt, LoraMoE)

RESERVED_KEYS = ("_target_", "name", *METHOD_DECLARATIONS)


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


def build_method(method_cfg, where: str = "the method config") -> Method:
    """Instantiate a method from its config mapping (`_target_`, `name`, settings).

    The class is the one source of the method's identity: it must have registered itself under its
    own `name`, and a config `name` must equal it. `where` names the config in the error (the YAML
    file or command line it came from)."""
    cfg = dict(method_cfg)
    target = cfg.get("_target_") or cfg.get("name")
    if not target:
        raise ConfigError(f"method: {where} has neither _target_ nor name")
    cls = resolve_class(str(target))
    if getattr(cls, "named_by_config", False):  # the generic peft tuner: one class, named by each config
        from bench.methods.peft_tuner import tuner_class

        name = cfg.get("name")
        from_file = cfg.get("config_file") is not None or cfg.get("adapter_config") is not None
        if not name or (name == PeftTuner.name and not from_file):
            raise ConfigError(f"method: {where} builds a generic peft tuner ({target!r}) but has no `name:` of its "
                              "own; name it as peft names the tuner, in lower case (e.g. name: vera)")
        settings = {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}
        return tuner_class(str(name))(**settings)
    if REGISTRY.get(cls.name) is not cls:
        raise ConfigError(f"method._target_={target!r}: {cls.__module__}.{cls.__qualname__} does not set its own "
                          f"`name` (it inherits {cls.name!r}); give the class a name of its own")
    name = cfg.get("name")
    if name is not None and str(name) != cls.name:
        raise ConfigError(
            f"method.name={name!r} in {where}: its _target_ {target!r} is the method named {cls.name!r}; a method "
            f"has one name, its class's: set `name: {cls.name}` (to name a variant, use label=...)")
    settings = {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}
    return cls(**settings)


__all__ = ["BUILT_IN", "REGISTRY", "Method", "PeftTuner", "build_method", "resolve_class"]
