"""ATTEMPT (Asai et al. 2022): a new target prompt plus per-input attention over frozen source prompts,
on the sources' peft prompt-tuning deltas.

Per input x (Asai et al. Sec. 3): the input's token embeddings E(x) are max-pooled over its real
tokens, projected by a small trained network G (down to `proj_size`, SiLU, up, LayerNorm), and
scored against each prompt's max-pooled tokens P^_j; the prompts attended over are the n frozen
source prompts and the target prompt P_t itself:

    a = softmax([P^_1 .. P^_n, P^_t] . G(maxpool E(x)) / (T * H)),   P(x) = P_t + sum_j a_j P_j

P(x) is prepended to the input embeddings exactly as peft's prompt tuning does for an encoder
(PeftModelForFeatureExtraction: virtual tokens first, attended, token_type_ids dropped, positions
0..n+L-1), so `force_source=i` (P(x) = P_i, no target prompt) is exactly source i's prompt-tuning
model, and `gate=uniform` (P(x) = mean of the source prompts, nothing trained but the head) is the
linear merge of the prompts. The scale T * H follows the paper's temperature (they use T = H e; here
H times `temperature`, default e). P_t starts at zero, so training starts from the attention mixture
of the sources. Trainable: n_tokens H (P_t) + 2 H proj_size + proj_size + 3 H (G), plus the head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.errors import ConfigError
from bench.methods.composed import ComposedMethod, SourceModule, load_tensors


class PromptMixture(nn.Module):
    """The transformers model behind a per-input prompt: what `model.backbone` becomes."""

    def __init__(self, base: nn.Module, prompts: torch.Tensor, method: Attempt, proj_size: int):
        super().__init__()
        self.base = base
        self.config = base.config
        hidden = prompts.shape[-1]
        self.register_buffer("prompts", prompts)                   # (n, tokens, H), frozen
        self.target = nn.Parameter(torch.zeros(prompts.shape[1:]))  # (tokens, H)
        self.down, self.up = nn.Linear(hidden, proj_size), nn.Linear(proj_size, hidden)
        self.norm = nn.LayerNorm(hidden)
        self._method = [method]
        self.learned = method.gate == "learned" and method.force_source is None
        for p in (self.target, *self.down.parameters(), *self.up.parameters(), *self.norm.parameters()):
            p.requires_grad_(self.learned)

    def get_base_model(self) -> nn.Module:
        """The transformers model (bench.inference.variants.inner_transformer reads it, as it reads peft's)."""
        return self.base

    def instance_prompt(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, method = emb.shape[0], self._method[0]
        if not self.learned:
            w = method.mixing(emb.new_zeros(b, self.prompts.shape[0]))
            return torch.einsum("bn,nth->bth", w, self.prompts.to(emb.dtype))
        neg = torch.finfo(emb.dtype).min
        pooled = emb.masked_fill(~mask.bool().unsqueeze(-1), neg).amax(1)        # (b, H)
        query = self.norm(self.up(nn.functional.silu(self.down(pooled))))       # (b, H)
        keys = torch.cat([self.prompts, self.target.unsqueeze(0)]).amax(1)       # (n+1, H)
        scale = method.temperature * emb.shape[-1]
        a = torch.softmax(query @ keys.T / scale, dim=-1)                        # (b, n+1)
        allp = torch.cat([self.prompts, self.target.unsqueeze(0)]).to(emb.dtype)
        return self.target.unsqueeze(0) + torch.einsum("bn,nth->bth", a, allp)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        emb = self.base.get_input_embeddings()(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(emb.shape[:2], dtype=torch.long, device=emb.device)
        prompt = self.instance_prompt(emb, attention_mask)
        ones = attention_mask.new_ones(attention_mask.shape[0], prompt.shape[1])
        return self.base(inputs_embeds=torch.cat([prompt, emb], dim=1),
                         attention_mask=torch.cat([ones, attention_mask], dim=1), **kwargs)


class Attempt(ComposedMethod):
    """Target prompt + per-input attention over frozen source prompts (prompt_tuning deltas)."""

    name = "attempt"
    source_methods = ("prompt_tuning",)
    kind = "attempt"
    uses_token_type_ids = False  # peft prompt tuning drops them; the sources were trained without

    def __init__(self, lr=None, sources=(), gate: str = "learned", temperature: float = math.e,
                 force_source: int | None = None, proj_size: int = 64, **settings):
        self.proj_size = int(proj_size)
        super().__init__(lr=lr, sources=sources, gate=gate, temperature=temperature, force_source=force_source,
                         **settings)

    def validate(self, backbone_config, max_seq_len: int) -> None:
        super().validate(backbone_config, max_seq_len)
        n = int(self.loaded_sources()[0].settings.get("num_virtual_tokens", 20))
        limit = int(getattr(backbone_config, "max_position_embeddings", 512))
        if n + max_seq_len > limit:
            raise ConfigError(f"method.sources: {n} virtual tokens + train.max_seq_len={max_seq_len} exceed the "
                              f"model's {limit} positions")

    def attach(self, model, sources: list[SourceModule]) -> None:
        prompts = []
        for s in sources:
            state = load_tensors(s, "adapter_model.safetensors")
            emb = state.get("prompt_embeddings")
            if emb is None:
                raise ConfigError(f"method.sources: {s.path}: its delta holds no prompt_embeddings "
                                  "(peft prompt tuning)")
            prompts.append(emb.float())
        shapes = {tuple(p.shape) for p in prompts}
        hidden = model.head.out.in_features
        if len(shapes) > 1 or next(iter(shapes))[1] != hidden:
            raise ConfigError(f"method.sources: prompt shapes {sorted(shapes)} do not fit one backbone of "
                              f"width {hidden}")
        model.backbone = PromptMixture(model.backbone, torch.stack(prompts), self, self.proj_size)
