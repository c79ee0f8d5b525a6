"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021), written here because peft has
none and the `adapters` library pins an old transformers.

Placement follows Houlsby: an adapter after the attention output projection and after the
feed-forward output projection, applied to the sublayer output *before* the residual add and
LayerNorm (in transformers' BERT/RoBERTa: after `*SelfOutput.dense` and `*Output.dense`, which feed
`dropout` then `LayerNorm(x + input)`). Pfeiffer keeps only the feed-forward one.

Each adapter is `x + up(act(down(x)))` with `up` initialised to zero, so the model starts exactly at
the pretrained function. Parameters per adapter: `2*H*m + H + m` (two weight matrices and biases).
Houlsby et al. also train LayerNorm; that is `train_layernorm` (off by default so the count is the
adapters alone; the record and `bench.params` show both).

Decoders (GPT-2, GPT-NeoX, Llama, Qwen2): the same two places in each decoder layer, the outputs
of the attention output projection (`attn.c_proj`, `attention.dense`, `self_attn.o_proj`) and of the
feed-forward output projection (`mlp.c_proj`, `mlp.dense_4h_to_h`, `mlp.down_proj`), before the
residual add; these layers are pre-norm, so there is no LayerNorm after the add to place it before.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.config.schema import check_value, choice, integer
from bench.errors import ConfigError
from bench.methods.architectures import is_decoder, layout, sublayer_outputs
from bench.methods.base import Method, freeze

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    def __init__(self, hidden: int, size: int, activation: str, init_std: float = 1e-2):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def _sublayer_outputs(backbone: nn.Module):
    """Yield (kind, module) for every `*SelfOutput` (attention) and `*Output` (feed-forward) block
    that has a `dense` projection followed by a residual LayerNorm (BERT, RoBERTa and relatives)."""
    for name, mod in backbone.named_modules():
        cls = type(mod).__name__
        if not (hasattr(mod, "dense") and hasattr(mod, "LayerNorm")):
            continue
        if cls.endswith("SelfOutput"):
            yield "attention", name, mod
        elif cls.endswith("Output"):
            yield "ffn", name, mod


class Adapter(Method):
    """Houlsby placement: attention and feed-forward adapters in every layer."""

    name = "adapter"
    placements = ("attention", "ffn")

    def __init__(self, lr: float | None = None, size: int = 64, activation: str = "relu",
                 train_layernorm: bool = False, **settings):
        self.size = size
        self.activation = activation
        self.train_layernorm = bool(train_layernorm)
        super().__init__(lr=lr, **settings)

    def validate(self, backbone_config, max_seq_len: int) -> None:
        super().validate(backbone_config, max_seq_len)
        check_value("method.size", self.size, integer(1))
        check_value("method.activation", self.activation, choice(*ACTIVATIONS))

    def apply(self, model: nn.Module) -> nn.Module:
        freeze(model.backbone)
        hidden = model.head.out.in_features
        if is_decoder(model.backbone.config):
            return self._apply_to_decoder(model, hidden)
        placed = 0
        for kind, _, mod in _sublayer_outputs(model.backbone):
            if kind not in self.placements:
                continue
            adapter = Bottleneck(hidden, self.size, self.activation)
            mod.adapter = adapter  # registered as a submodule so it saves/loads with the model
            mod.dense.register_forward_hook(_apply_adapter(mod))
            placed += 1
            if self.train_layernorm:
                for p in mod.LayerNorm.parameters():
                    p.requires_grad_(True)
        if placed == 0:
            raise ConfigError(
                f"method={self.name}: the backbone ({type(model.backbone).__name__}) has no BERT-style "
                "*SelfOutput/*Output blocks (dense + LayerNorm) to place adapters after"
            )
        return model

    def _apply_to_decoder(self, model: nn.Module, hidden: int) -> nn.Module:
        """The same placement in a (pre-norm) decoder layer: on the attention output projection's and the
        feed-forward output projection's outputs, before the residual add (bench/methods/architectures.py names them
        per architecture); `train_layernorm` trains the norm in front of each adapted sublayer."""
        config = model.backbone.config
        norms = dict(zip(("attention", "ffn"), layout(config).norms, strict=True))
        for kind, layer, proj in sublayer_outputs(model.backbone, config):
            if kind not in self.placements:
                continue
            proj.adapter = Bottleneck(hidden, self.size, self.activation)
            proj.register_forward_hook(_apply_adapter(proj))
            if self.train_layernorm:
                for p in layer.get_submodule(norms[kind]).parameters():
                    p.requires_grad_(True)
        return model


def _apply_adapter(block: nn.Module):
    def hook(_module, _inputs, output):
        return block.adapter(output)

    return hook


class PfeifferAdapter(Adapter):
    """Pfeiffer placement: one adapter per layer, after the feed-forward output only."""

    name = "adapter_pfeiffer"
    placements = ("ffn",)
