"""A method config checked against its class before anything is built: keys against the constructor's
signature (the nearest valid one named), the learning rate present and positive.

Why with the methods: the accepted keys are the class's own (its constructor, or for a generic peft
tuner the peft config class's fields), so the rule lives beside the registry that resolves the class;
the model builder (bench/models/build.py) and the whole-config check (bench/recipe/validate.py) call it."""
from __future__ import annotations

from bench.config.rules import LR
from bench.config.schema import METHOD_COMMON, nearest
from bench.errors import ConfigError


def check_method(method: dict, train_lr=None, where: str = "the method config"):
    """The method node: `_target_`/`name` resolve to a registered class (bench.methods.build_method's
    identity rule), every other key is a parameter of that class's constructor (nearest one named),
    and the learning rate, from `train.lr` or else `method.lr`, is a number > 0. Returns the built
    method, whose constructor checks its own values."""
    from bench.methods import build_method, resolve_class  # the package imports this module's users

    target = method.get("_target_") or method.get("name")
    if not target:
        raise ConfigError(f"method: {where} has neither _target_ nor name")
    cls = resolve_class(str(target))
    if hasattr(cls, "accepted_settings"):  # the generic peft tuner: its tuner's config fields
        from bench.methods.peft_tuner import tuner_type, unknown_field_message

        accepted = cls.accepted_settings(method)
        for key in method:
            if key not in METHOD_COMMON and key not in accepted:
                if hasattr(cls, "unknown_setting_message"):  # a shipped peft method (LoRA, IA3): its peft config
                    raise ConfigError(cls.unknown_setting_message(key))
                name = str(method.get("name", cls.name))
                raise ConfigError(unknown_field_message(name, str(tuner_type(method)), key))
    accepted = [k for k in cls.setting_names() if k != "lr"] if not hasattr(cls, "accepted_settings") else accepted
    for key in method:
        if key not in METHOD_COMMON and key not in accepted:
            raise ConfigError(f"method.{key}: not a setting of method {cls.name} ({cls.__module__}.{cls.__qualname__})"
                              f"{nearest(key, accepted)} "
                              f"(accepted: {', '.join('method.' + k for k in accepted) or 'none'})")
    lr = train_lr if train_lr is not None else method.get("lr")
    if lr is None:
        raise ConfigError(f"method {cls.name}: no learning rate: give method.lr (`lr:` in its config, "
                          f"method/{cls.name}.yaml) or train.lr; there is no built-in default")
    if not LR(lr):
        raise ConfigError(f"{'train.lr' if train_lr is not None else 'method.lr'}={lr!r}: the learning rate must be "
                          "a number > 0")
    return build_method(dict(method, lr=float(lr)), where=where)
