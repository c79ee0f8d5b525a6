"""Method labels come from resolved values, so one configuration has one label however it was typed.

The sweep form is produced by Hydra's own BasicSweeper (what `python -m bench -m` runs), not
written out by hand, so a change in how Hydra re-spells a value is caught here.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.config.method_labels import label_value, method_label
from bench.params import compose_config

METHODS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "method").glob("*.yaml"))


def swept(overrides: list[str]) -> list[str]:
    """The overrides one job of `python -m bench -m <overrides>` receives."""
    (batches,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)
    (job,) = batches
    return job


def label(overrides: list[str]) -> str:
    return method_label(compose_config(overrides), overrides)


@pytest.mark.parametrize("lr", ["1e-4", "0.0001", "1.0e-4", "1E-4", "0.00010"])
def test_typed_and_swept_learning_rate_give_one_label(lr):
    typed = ["method=full", f"train.lr={lr}"]
    if lr != "0.0001":
        assert swept(typed) == ["method=full", "train.lr=0.0001"]  # the two forms differ as text
    assert label(typed) == label(swept(typed)) == "full[lr=0.0001]"


def test_method_settings_are_shown_resolved():
    typed = ["method=lora", "method.r=16", "method.lora_dropout=.05", "method.target_modules=[query, value]"]
    assert label(typed) == label(swept(typed)) == "lora[lora_dropout=0.05,r=16,target_modules=[query,value]]"
    assert label(["method=lora", "method.r=16.0"]) == "lora[r=16]"
    assert label(["method=lora", "~method.lora_dropout"]) == "lora[~lora_dropout]"


@pytest.mark.parametrize("method", METHODS)
def test_default_cell_is_the_bare_method_name(method):
    """Existing records, the committed baseline and reports name default cells by method alone."""
    cfg = compose_config([f"method={method}"])
    assert method_label(cfg, [f"method={method}"]) == str(cfg.method.name)
    assert label(swept([f"method={method}", "task=rte", "train.seed=3", "train.epochs=2"])) == str(cfg.method.name)


def test_explicit_label_wins():
    assert label(["method=lora", "method.r=4", "label=small"]) == "small"


@pytest.mark.parametrize(("value", "text"), [
    (1e-4, "0.0001"), (3e-05, "3e-05"), (2.0, "2"), (0.1 + 0.2, "0.30000000000000004"), (16, "16"),
    (True, "true"), (None, "null"), ("query", "query"), ([1.0, "a"], "[1,a]"), ({"k": 0.5}, "{k:0.5}"),
])
def test_label_value_spelling(value, text):
    assert label_value(value) == text
