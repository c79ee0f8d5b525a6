"""LayerNorm tuning: train only the LayerNorm gains and biases of the backbone (plus the task head).

An external peft-bench method: it lives outside the `bench` package, subclasses the public
`bench.methods.Method` protocol and is selected by `_target_: bench_plugins.layernorm_tuning.LNTuning`
(examples/plugins/conf/method/layernorm_tuning.yaml). Nothing in bench/ knows about it.

The method: Qi et al. 2022, "Parameter-efficient tuning on layer normalization for pre-trained
language models" (LN-tuning), and Zhao et al. 2023, "Tuning LayerNorm in attention". Every
LayerNorm has a gain and a bias of width H; a BERT-style encoder has two per layer (after attention
and after the feed-forward block) and one after the embeddings, so LN-tuning trains
`(2 L + 1) * 2 H` backbone parameters (`2 L * 2 H` with `include_embeddings: false`): 8,448 of
22.7M on MiniLM-L6-H384 (0.04%), fewer than LoRA r=8 on query/value (73,728).
"""
from __future__ import annotations

from torch import nn

from bench.errors import ConfigError
from bench.methods import Method
from bench.methods.base import freeze


class LNTuning(Method):
    """Freeze the backbone, then unfreeze every `nn.LayerNorm` in it (optionally not the embeddings')."""

    name = "layernorm_tuning"  # registers the class under this name; its YAML's `name:` must say the same

    def __init__(self, lr: float | None = None, include_embeddings: bool = True, **settings):
        # Settings first, then super().__init__, which rejects unknown keys (typos in method.*).
        self.include_embeddings = include_embeddings
        super().__init__(lr=lr, **settings)

    def validate(self, backbone_config, max_seq_len: int) -> None:
        super().validate(backbone_config, max_seq_len)  # checks lr > 0
        if not isinstance(self.include_embeddings, bool):
            raise ConfigError(f"method.include_embeddings={self.include_embeddings!r}: expected true or false")

    def layer_norms(self, model: nn.Module) -> list[tuple[str, nn.LayerNorm]]:
        return [(n, m) for n, m in model.backbone.named_modules()
                if isinstance(m, nn.LayerNorm) and (self.include_embeddings or "embeddings" not in n)]

    def apply(self, model: nn.Module) -> nn.Module:
        freeze(model.backbone)
        norms = self.layer_norms(model)
        if not norms:
            raise ConfigError(f"method={self.name}: the backbone ({type(model.backbone).__name__}) has no nn.LayerNorm")
        for _, norm in norms:
            for p in norm.parameters():
                p.requires_grad_(True)
        return model  # the head stays trainable: Method.finalize (called by the runner) makes sure of it
