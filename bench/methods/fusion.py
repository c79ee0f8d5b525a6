"""AdapterFusion (Pfeiffer et al. 2021) over the harness's own frozen bottleneck adapters.

At every place the source adapters sit (bench/methods/adapter.py: after each `*SelfOutput.dense`
and `*Output.dense`, before the residual LayerNorm), every source adapter runs on the sublayer
output h, and a per-token attention mixes their outputs o_i = adapter_i(h):

    score_i = (W_q h + b_q) . (W_k o_i + b_k) / sqrt(H),   w = softmax(score / T),   out = sum_i w_i o_i

This is adapter-hub's "static" fusion (query and key, no value matrix): the value is the adapter
output itself, so the mixture stays a convex combination of what the sources compute, and
`force_source=i` gives exactly source i. `W_q` and `b_q` start at zero: every score is 0, so
training starts from the uniform output average (the `gate=uniform` arm) and learns away from it.
Trainable: 2 (H^2 + H) per fused place, plus the head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.errors import ConfigError
from bench.methods.adapter import Bottleneck, _apply_adapter, _sublayer_outputs
from bench.methods.composed import ComposedMethod, SourceModule, load_tensors

PLACEMENTS = {"adapter": ("attention", "ffn"), "adapter_pfeiffer": ("ffn",)}


class FusedAdapters(nn.Module):
    """The source adapters of one place (frozen) and their fusion attention (trained)."""

    def __init__(self, hidden: int, adapters: list[Bottleneck], method: AdapterFusion):
        super().__init__()
        self.adapters = nn.ModuleList(adapters)
        for p in self.adapters.parameters():
            p.requires_grad_(False)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)
        self.scale = 1.0 / math.sqrt(hidden)
        self._method = [method]  # a list: not registered as a submodule
        self.learned = method.gate == "learned" and method.force_source is None
        if not self.learned:
            for p in (*self.query.parameters(), *self.key.parameters()):
                p.requires_grad_(False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([a(h) for a in self.adapters], dim=-2)  # (..., n, H)
        if self.learned:
            q = self.query(h).unsqueeze(-2)                          # (..., 1, H)
            scores = (q * self.key(outs)).sum(-1) * self.scale       # (..., n)
        else:
            scores = outs.new_zeros(outs.shape[:-1])
        w = self._method[0].mixing(scores)
        return (w.unsqueeze(-1) * outs).sum(-2)


def _adapters_of(src: SourceModule, state: dict, block_name: str, hidden: int) -> Bottleneck:
    """Source `src`'s adapter at one place, its weights loaded from its kept delta's tensors."""
    prefix = f"backbone.{block_name}.adapter."
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    size = int(src.settings.get("size", 64))
    adapter = Bottleneck(hidden, size, str(src.settings.get("activation", "relu")))
    try:
        adapter.load_state_dict(mine, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"method.sources: {src.path}: its adapter at {block_name} does not fit this backbone "
                          f"({str(exc)[:160]})") from None
    return adapter


class AdapterFusion(ComposedMethod):
    """Attention over frozen bottleneck adapters' outputs at every place they sit."""

    name = "adapter_fusion"
    source_methods = tuple(PLACEMENTS)
    kind = "adapter_fusion"

    def attach(self, model, sources: list[SourceModule]) -> None:
        hidden = model.head.out.in_features
        placements = PLACEMENTS[sources[0].settings["method"]]
        states = [load_tensors(s, "delta.safetensors") for s in sources]
        placed = 0
        for kind, name, mod in _sublayer_outputs(model.backbone):
            if kind not in placements:
                continue
            parts = [_adapters_of(s, st, name, hidden) for s, st in zip(sources, states)]
            mod.adapter = FusedAdapters(hidden, parts, self)
            mod.dense.register_forward_hook(_apply_adapter(mod))
            placed += 1
        if placed == 0:
            raise ConfigError(f"method={self.name}: the backbone has no BERT-style *SelfOutput/*Output blocks "
                              "to fuse at")
