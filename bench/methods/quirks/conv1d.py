"""Tuners peft implements for nn.Linear (some also Conv2d/Embedding) but not for transformers' Conv1D, the
layer of GPT-2's projections: get_peft_model raises on GPT-2 (measured on tiny_gpt2 with peft 0.21.2 and
0.22.0; tests/test_decoders.py checks each entry still fails there, so an entry a peft release fixes shows
up). OSF skips a layer it does not implement without a word, so on GPT-2 nothing of the backbone would train.
A tuner refused here is refused by name before any work (`PeftTuner.unsupported_reason`)."""
from __future__ import annotations

from bench.methods.quirks.registry import Quirk, register_quirk

CONV1D_UNSUPPORTED = ("adamss", "boft", "c3a", "delora", "glora", "hra", "lily", "loha", "lokr", "miss", "oft",
                      "osf", "peanut", "psoft", "road", "shira", "supertuning")


@register_quirk(peft_type=CONV1D_UNSUPPORTED)
class LinearLayersOnly(Quirk):
    """No hook: the declaration that these tuners cannot wrap Conv1D layers."""

    conv1d = False
