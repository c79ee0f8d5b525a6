"""A model config's backbone architecture read before anything is built, so a method that declares it
cannot run there (bench/methods/support.py) is refused before any work.

Why in the models layer: the config is read the way bench/models/backbones.py builds it (shipped
configs, local folders, hub ids when online)."""
from __future__ import annotations

from bench.methods.support import refuse_unsupported


def backbone_config(model_cfg):
    """The transformers config bench.models.backbones.build_model will build from, or None when it cannot be
    read without weights or network (the cell's build then says why)."""
    from transformers import AutoConfig

    from bench.errors import ConfigError
    from bench.models.backbones import CONFIG_DIR, resolve_source

    overrides = dict(model_cfg.get("config_overrides") or {})
    try:
        source = resolve_source(str(model_cfg.source))
    except ConfigError:
        return None
    shipped = CONFIG_DIR / str(model_cfg.get("name", ""))
    for where in (source, str(shipped) if not model_cfg.get("pretrained", True) else None):
        if where is None or (where == str(shipped) and not (shipped / "config.json").exists()):
            continue
        try:
            return AutoConfig.from_pretrained(where, **overrides)
        except (OSError, ValueError):
            continue
    return None


def check_supported(method, model_cfg) -> None:
    """`refuse_unsupported` for a model config (bench.recipe.validate.check): before anything is built."""
    config = backbone_config(model_cfg)
    if config is not None:
        refuse_unsupported(method, config)
