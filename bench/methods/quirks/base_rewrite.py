"""Initialisations that rewrite the base weights: the adapter starts from a decomposition of each weight and
the base keeps the residual (W - BA), so a delta is meaningful only on the base it was trained on.

What a user must publish is a delta on the *original* base: peft converts the trained adapter, given the
initial one, into a plain LoRA of rank 2r (`path_initial_model_for_weight_conversion`), so its size is the
honest storage; reloading merges the untrained initial adapter back into the built cell's rewritten base
(giving the original base, to float rounding) and loads the converted LoRA onto it.
"""
from __future__ import annotations

import tempfile

from bench.methods.quirks.registry import Quirk, register_quirk


class RewritesBase(Quirk):
    """Keeps the initialised adapter for peft's conversion at save time; reloads onto the original base."""

    rewrites_base = True

    def __init__(self, tuner):
        super().__init__(tuner)
        self._initial_adapter: tempfile.TemporaryDirectory | None = None

    def after_apply(self, model) -> None:
        self.keep_initial_adapter(model)

    def keep_initial_adapter(self, model) -> None:
        """The initialised adapter, for peft's conversion to plain LoRA on the original base at save time."""
        self._initial_adapter = tempfile.TemporaryDirectory(prefix="bench-init-adapter-")
        model.backbone.save_pretrained(self._initial_adapter.name)

    def save_options(self) -> dict:
        return {"path_initial_model_for_weight_conversion": self._initial_adapter.name}

    def load_backbone(self, model, folder) -> bool:
        from peft import PeftModel

        base = model.backbone.merge_and_unload()
        model.backbone = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
        return True


@register_quirk(peft_type="lora", init="pissa", init_prefix=True)
class PiSSA(RewritesBase):
    """PiSSA (Meng et al. 2024): the adapter from the weight's principal singular vectors (`pissa`, or
    `pissa_niter_K` for K subspace iterations, as peft reads it)."""


@register_quirk(peft_type="lora", init="olora")
class OLoRA(RewritesBase):
    """OLoRA (Buyukakyuz 2024): the adapter from a QR decomposition of the weight. Its initialisation handles
    Conv1D's transposed weight from peft 0.22.0 on (measured on tiny_gpt2; tests/test_decoders.py checks both
    sides of the version line it can see)."""

    conv1d = "0.22.0"
