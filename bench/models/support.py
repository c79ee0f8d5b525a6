"""A model config's backbone architecture read before anything is built, so a method that declares it
cannot run there (bench/methods/support.py) is refused before any work.

Why in the models layer: the config is read the way bench/models/backbones.py builds it (shipped
configs, local folders, hub ids when online)."""
from __future__ import annotations

from bench.methods.support import refuse_unsupported


def backbone_config(model_cfg):
    """The transformers config bench.models.backbones.build_model will build from (its own
    `load_config`), or None when it cannot be read without weights or network (the cell's build then
    says why)."""
    from bench.errors import ConfigError
    from bench.models.backbones import load_config, resolve_source

    try:
        return load_config(model_cfg, resolve_source(str(model_cfg.source)), say_fallback=False)[1]
    except (ConfigError, OSError, ValueError):
        return None


def check_supported(method, model_cfg) -> None:
    """`refuse_unsupported` for a model config (bench.recipe.validate.check): before anything is built."""
    if model_cfg.get("detect"):  # model=auto: its config must be readable and of a supported architecture
        from bench.models.backbones import detect_architecture, load_config, resolve_source

        config = load_config(model_cfg, resolve_source(str(model_cfg.source)), say_fallback=False)[1]
        detect_architecture(config, model_cfg.source)
    else:
        config = backbone_config(model_cfg)
    if config is not None:
        refuse_unsupported(method, config)
