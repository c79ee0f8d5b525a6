"""A generic peft tuner's quirks (bench/methods/quirks/): each declares what it handles where it is defined,
the tuner composes the ones that match its settings, and a quirk registered anywhere joins with no other edit."""
from __future__ import annotations

import pytest
from test_catalogue import yaml_cfg

from bench.errors import ConfigError
from bench.methods.quirks.registry import QUIRKS, Handles, Quirk, optimizer_names, register_quirk
from bench.methods.validate import check_method


@pytest.mark.parametrize(("name", "quirks"), [
    ("adalora", ["AdaLoraBudget"]), ("eva", ["EVA"]), ("corda", ["CorDA"]), ("lora_ga", ["LoraGA"]),
    ("pissa", ["PiSSA"]), ("olora", ["OLoRA"]), ("loraplus", ["LoraPlus"]), ("lorafa", ["LoraFA"]),
    ("boft", ["LinearLayersOnly"]), ("lora", []), ("dora", []), ("vera", []),
])
def test_each_tuner_composes_the_quirks_that_match_its_settings(name, quirks):
    assert [type(q).__name__ for q in getattr(check_method(yaml_cfg(name)), "quirks", [])] == quirks


def test_initialisations_match_as_peft_reads_them():
    assert [type(q).__name__ for q in check_method(yaml_cfg("pissa", init_lora_weights="pissa_niter_4")).quirks] \
        == ["PiSSA"]
    assert check_method(yaml_cfg("adalora", init_lora_weights="eva")).quirks[0].handles.peft_types == ("adalora",)


def test_an_optimizer_quirk_refuses_a_tuner_it_does_not_support():
    method = check_method(yaml_cfg("vera", optimizer="lorafa"))
    with pytest.raises(ConfigError, match=r"method.optimizer=lorafa: peft's lorafa optimizer is for LoRA.*not vera"):
        method.validate(None, 64)
    assert optimizer_names() == ("adamw", "loraplus", "lorafa")


def test_a_quirk_registered_elsewhere_joins_the_tuner_and_one_handle_has_one_quirk():
    @register_quirk(peft_type="fourierft")
    class Planted(Quirk):
        def check(self):
            raise ConfigError("planted quirk ran")

        def after_optimizer_step(self, model, step):
            return None

    try:
        method = check_method(yaml_cfg("fourierft"))
        assert method.capabilities()["loop_hooks"] == ["after_optimizer_step"]
        with pytest.raises(ConfigError, match="planted quirk ran"):
            method.validate(None, 64)
        with pytest.raises(ConfigError, match="claimed by both"):
            register_quirk(peft_type="fourierft")(type("Other", (Quirk,), {}))
    finally:
        QUIRKS.pop(Handles(peft_types=("fourierft",)))
    assert check_method(yaml_cfg("fourierft")).quirks == []
