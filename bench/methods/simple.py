"""Methods that only choose which existing parameters train: full, head_only, bitfit."""
from __future__ import annotations

from torch import nn

from bench.methods.base import Method, freeze


class Full(Method):
    """Every parameter trains; the delta is the whole model."""

    name = "full"
    trains_base_weights = True
    delta_holds = "whole model (safetensors)"

    def apply(self, model: nn.Module) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model


class HeadOnly(Method):
    """Frozen backbone, trained linear head on pooled features (a linear probe).

    The backbone runs in eval mode (no dropout) so its features are a fixed function of the input;
    that makes `cache_features` exact: features are computed once and the head trains on them.
    """

    name = "head_only"
    frozen_backbone = True
    changes_backbone = False

    def __init__(self, lr: float | None = None, cache_features: bool = True, **settings):
        self.cache_features = bool(cache_features)
        super().__init__(lr=lr, **settings)

    @property
    def trains_on_cached_features(self) -> bool:
        return self.cache_features

    def apply(self, model: nn.Module) -> nn.Module:
        freeze(model.backbone)
        return model


class BitFit(Method):
    """Only the bias terms of the backbone train (Ben Zaken et al. 2022), plus the head."""

    name = "bitfit"
    trains_base_weights = True

    def unsupported_reason(self, backbone_config) -> str | None:
        """Llama-style decoders (Llama, SmolLM2, Mistral) have no bias terms at all: BitFit would train
        the head alone, a head-only run under another name."""
        from bench.methods.support import bias_count

        if bias_count(backbone_config) == 0:
            return ("the backbone has no bias parameters (counted on a build from its config: 0; Llama-style decoders "
                    "have none), so BitFit would train the head alone: use method=head_only for that")
        return None

    def apply(self, model: nn.Module) -> nn.Module:
        for n, p in model.backbone.named_parameters():
            p.requires_grad_(n.endswith(".bias"))
        return model
