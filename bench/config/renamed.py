"""Method settings renamed to peft's spelling: per method class (`_target_`), old name -> peft's name.

A config may still use an old name: `rename_settings` moves it to peft's name in the composed config, with a
deprecation message, before anything reads the config (bench.recipe.validate.check, bench.params); labels
show peft's name (bench.config.method_labels); the config hash spells these settings the old way
(bench.records.schema.config_hash), so a config written either way is one cell and earlier records keep
their run ids.
"""
from __future__ import annotations

import sys

RENAMED: dict[str, dict[str, str]] = {"bench.methods.LoRA": {"alpha": "lora_alpha", "dropout": "lora_dropout"}}


def renamed_for(method) -> dict[str, str]:
    """Old name -> peft's name for a method node (any mapping with `_target_`)."""
    target = method.get("_target_") if hasattr(method, "get") else None
    return RENAMED.get(str(target), {})


def rename_settings(cfg) -> None:
    """Moves every old setting name in `cfg.method` to peft's name (the value given under the old name
    wins over the YAML's value under the new one), saying so on stderr; a config without one is left as is."""
    method = cfg.get("method") if hasattr(cfg, "get") else None
    if method is None:
        return
    for old, new in renamed_for(method).items():
        if old in method:
            value = method[old]
            print(f"method.{old} is deprecated for method {method.get('name', '?')}: use peft's name "
                  f"method.{new} (taken as method.{new}={value})", file=sys.stderr)
            _set(method, new, value)
            del method[old]


def _set(node, key, value) -> None:
    from omegaconf import OmegaConf, open_dict

    if OmegaConf.is_config(node):
        with open_dict(node):
            node[key] = value
    else:
        node[key] = value
