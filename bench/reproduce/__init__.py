"""Reproduction: published numbers next to what the harness measures, in one package with one
entry (`python -m bench.reproduce TARGET...`, see __main__) and one way to run cells (runner).

Modules, each named for what it holds:

* published   the published numbers (published.csv): reading, validating, parsing printed counts
* presets     the paper presets (conf/experiment/<paper>/): what runs as published, published vs measured
* paramcheck  every published trainable-parameter count vs the harness's count (no training)
* scaled      the scaled-down LoRA Table 2 on MiniLM (scaled_repro.yaml: what it is compared with, claims)
* head_study  native vs uniform head, paired by seed, from a sweep's records
* runner      how cells run: `python -m bench -m ...`, so records, resume, failure isolation and the
              ledger are a normal sweep's
* report      the Markdown / CSV / HTML files of a reproduction report

Why one package: the published data and the commands that use it change together, and every
cell runs one way (`python -m bench -m`, runner).

The names below are re-exported, on first use, so `bench.reproduce.NAME` finds them in their modules.
"""
from __future__ import annotations

import importlib

_FORMER = {  # name -> module that now holds it
    "weights_available": "presets", "plan_preset": "presets", "compare_rows": "presets", "expand": "presets",
    "measured_for": "presets", "latest_per_seed": "presets", "unknown_settings": "presets",
    "cmd_presets": "presets", "PAPERS": "presets", "TRAIN_KEYS": "presets",
    "cmd_params": "paramcheck", "cmd_scaled": "scaled", "main": "__main__",
}


def __getattr__(name: str):
    if name in _FORMER:
        return getattr(importlib.import_module(f"{__name__}.{_FORMER[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PAPERS", "TRAIN_KEYS", "cmd_params", "cmd_presets", "cmd_scaled", "compare_rows", "expand",
           "latest_per_seed", "main", "measured_for", "plan_preset", "unknown_settings", "weights_available"]
