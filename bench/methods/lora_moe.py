"""A mixture of frozen LoRA experts with a learned per-input router.

Why hand-written and not peft's routing: in peft 0.21.2, X-LoRA (`XLoraModel`) is built for causal
LMs (its tests and docs are CAUSAL_LM; it needs `use_cache=False` and a second "scaling pass" forward
of the whole model with hidden states before every real forward, twice the inference cost), and
Arrow (`create_arrow_model`) routes by the adapters' principal directions with nothing trained, so it
is not a learned gate; Poly and multitask prompt tuning need `task_ids`. So the experts are the
sources' peft LoRA deltas as peft saved them (`adapter_model.safetensors`: A_i, B_i and the
scaling alpha/r of each adapted linear layer), applied by a forward hook on each adapted layer:

    y = W x + sum_i g_i(x) * s_i * B_i A_i x,    g(x) = softmax((W_g mean(x) + b_g) / T)

one router per adapted layer (query and value of every layer by default), fed the mean over the
input's real tokens (the attention mask, caught by a pre-hook on the backbone) of that layer's
input, so each input gets one weighting per layer, not per token. W_g, b_g start at zero: the
router starts uniform, which is exactly the linear merge of the updates (weights 1/n; the
`gate=uniform` arm), and `force_source=i` is exactly source i's LoRA model. Trainable: n (H + 1)
per adapted layer, plus the head.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from bench.methods.composed import ComposedMethod, SourceModule, load_tensors

PEFT_PREFIX = "base_model.model."


class LoraExperts(nn.Module):
    """The frozen experts of one adapted linear layer and its router."""

    def __init__(self, hidden_in: int, a: list[torch.Tensor], b: list[torch.Tensor], scales: list[float],
                 method: LoraMoE, mask_box: dict):
        super().__init__()
        self.register_buffer("A", torch.stack(a))            # (n, r, in)
        self.register_buffer("B", torch.stack(b))            # (n, out, r)
        self.register_buffer("s", torch.tensor(scales))      # (n,)
        self.router = nn.Linear(hidden_in, len(a))
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)
        self._method, self._mask = [method], mask_box
        self.learned = method.gate == "learned" and method.force_source is None
        self.router.requires_grad_(self.learned)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n) weights of one input batch."""
        if not self.learned:
            return self._method[0].mixing(x.new_zeros(x.shape[0], self.A.shape[0]))
        mask = self._mask.get("mask")
        if mask is not None and mask.shape[:2] == x.shape[:2]:
            m = mask.to(x.dtype).unsqueeze(-1)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        else:
            pooled = x.mean(1)
        return self._method[0].mixing(self.router(pooled))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights(x) * self.s                                     # (batch, n)
        z = torch.einsum("btd,nrd->btnr", x, self.A.to(x.dtype))
        return torch.einsum("btnr,bn,nor->bto", z, w.to(x.dtype), self.B.to(x.dtype))


def _hook(experts: LoraExperts):
    def hook(_module, inputs, output):
        return output + experts.delta(inputs[0])

    return hook


def _expert_tensors(src: SourceModule) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module path (inside the backbone) -> (A, B) of one source LoRA delta."""
    state = load_tensors(src, "adapter_model.safetensors")
    out: dict[str, list] = {}
    for key, v in state.items():
        for part, slot in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
            if key.endswith(part):
                path = key[: -len(part)]
                path = path.removeprefix(PEFT_PREFIX)
                out.setdefault(path, [None, None])[slot] = v
    if not out or any(a is None or b is None for a, b in out.values()):
        raise ConfigError(f"method.sources: {src.path}: its delta {src.delta} holds no complete LoRA A/B pairs")
    return {k: (a, b) for k, (a, b) in out.items()}


class LoraMoE(ComposedMethod):
    """Per-input softmax router over frozen LoRA experts, one router per adapted layer."""

    name = "lora_moe"
    source_methods = ("lora",)
    kind = "lora_moe"

    def validate(self, backbone_config, max_seq_len: int) -> None:
        super().validate(backbone_config, max_seq_len)
        s = self.loaded_sources()[0].settings
        if s.get("use_dora") or s.get("bias", "none") != "none":
            raise ConfigError("method.sources: LoRA experts with use_dora or bias != none are not supported "
                              "(a DoRA magnitude or a trained bias is not a low-rank update)")

    def attach(self, model, sources: list[SourceModule]) -> None:
        tensors = [_expert_tensors(s) for s in sources]
        paths = sorted(tensors[0])
        if any(sorted(t) != paths for t in tensors[1:]):
            raise ConfigError("method.sources: the LoRA experts adapt different layers (target_modules differ)")
        scales = []
        for s in sources:
            r, alpha = float(s.settings["r"]), float(s.settings.get("lora_alpha", s.settings.get("alpha")))
            scales.append(alpha / r ** 0.5 if s.settings.get("use_rslora") else alpha / r)
        box: dict = {}
        model.backbone.register_forward_pre_hook(lambda _m, _a, kw: box.update(mask=kw.get("attention_mask")),
                                                 with_kwargs=True)
        model.backbone.lora_experts = nn.ModuleDict()
        for path in paths:
            try:
                layer = model.backbone.get_submodule(path)
            except AttributeError:
                raise ConfigError(f"method.sources: {sources[0].path}: LoRA layer {path} is not in this "
                                  "backbone") from None
            experts = LoraExperts(layer.in_features, [t[path][0] for t in tensors], [t[path][1] for t in tensors],
                                  scales, self, box)
            model.backbone.lora_experts[path.replace(".", "__")] = experts
            layer.register_forward_hook(_hook(experts))
