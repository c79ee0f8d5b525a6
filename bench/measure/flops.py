"""Model FLOPs of a cell and its model FLOPs utilisation (MFU): how close to the machine's matrix
speed the training ran.

Why: samples/s says how fast a cell ran, not how fast it *could* run. LLM training reports MFU
(model FLOP/s over peak FLOP/s, Chowdhery et al. 2022); no PEFT benchmark does, although PEFT
methods differ exactly there: LoRA skips the weight gradients of the frozen matrices, prompt tuning
lengthens every sequence, head_only on cached features does one forward pass in all.

The count (analytic, from the built model's shapes and the batches actually fed):

* Only matrix products count: the four attention projections and two feed-forward matrices per
  layer, the two attention products (Q K^T and P V), the method's own products (LoRA's A and B,
  adapter bottlenecks) and the head. Embedding lookups, LayerNorm, softmax, activations, dropout,
  bias adds, pooling and the optimizer are not counted (they are a few percent and memory-bound).
* A product of (m x k) by (k x n) is 2*m*k*n FLOPs (one multiply-accumulate = 2 FLOPs).
* Per row padded to width W (+ n prompt tokens: Wq = W + n; prefix tuning adds p keys: Wk = Wq + p):
  a projection of `in x out` costs 2*Wq*in*out, each attention product 2*Wq*Wk*H (summed over
  heads: heads * head_dim = H); padding positions count, because they are computed.
* Backward, per product: one more forward-sized product for each operand whose gradient autograd
  computes: the weight's when it trains, the input's when anything trained lies below it (a
  trainable parameter earlier in the network, or prompt tokens). So a trained layer above trained
  ones costs 2x its forward, a frozen layer above a trained one 1x (input gradient only), and a
  frozen layer with nothing trained below it costs nothing (autograd never reaches it).
  Training = forward + backward.

The peak is measured, not looked up: bench/measure/matmul_peak.py times a large matrix product at the cell's
precision and thread count, once per machine, and caches it (docs/performance.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

from bench.data.batching import padded_width

log = logging.getLogger(__name__)

RULE = ("matrix products only, 2 FLOPs per multiply-accumulate, padded positions included; backward = one "
        "forward-sized product per operand whose gradient is computed (the weight if it trains, the input if "
        "anything trained lies below it); training = forward + backward (docs/performance.md)")


@dataclass
class Shapes:
    """What a set of padded batches holds: rows, the sum of their padded widths, and the sum of the
    squared widths (attention is quadratic in each row's width, so the two sums are enough)."""

    rows: int = 0
    tokens: int = 0
    squares: int = 0

    def add(self, rows: int, width: int) -> None:
        self.rows += rows
        self.tokens += rows * width
        self.squares += rows * width * width


def eval_shapes(lengths: list[int], batch_size: int, multiple: int) -> Shapes:
    """The batches of bench.training.forward.predict / pooled_features: rows sorted by length, chunked,
    each chunk padded to its longest row."""
    s, out = sorted(lengths), Shapes()
    for i in range(0, len(s), batch_size):
        chunk = s[i:i + batch_size]
        out.add(len(chunk), padded_width(chunk[-1], multiple))
    return out


@dataclass(frozen=True)
class Op:
    """One matrix product: `macs` multiply-accumulates per unit (`per`: token = one of the row's
    Wq positions, pair = one (query, key) pair, row = one sequence), and `grads` = how many of its
    operands get a gradient in backward (0, 1 or 2)."""

    name: str
    part: str  # backbone | method | head
    per: str
    macs: int
    grads: int


@dataclass
class Plan:
    """The products of one forward pass of a built model."""

    ops: list[Op] = field(default_factory=list)
    prompt_tokens: int = 0  # prepended to every row (prompt tuning)
    prefix_tokens: int = 0  # extra keys/values in every layer (prefix tuning)

    def units(self, per: str, s: Shapes) -> int:
        n, p = self.prompt_tokens, self.prefix_tokens
        if per == "row":
            return s.rows
        if per == "token":  # sum over rows of Wq = W + n
            return s.tokens + n * s.rows
        # sum over rows of Wq * Wk = (W + n)(W + n + p)
        return s.squares + (2 * n + p) * s.tokens + n * (n + p) * s.rows

    def forward(self, s: Shapes, parts=("backbone", "method", "head")) -> float:
        return float(sum(2 * op.macs * self.units(op.per, s) for op in self.ops if op.part in parts))

    def train(self, s: Shapes, parts=("backbone", "method", "head")) -> float:
        return float(sum(2 * op.macs * (1 + op.grads) * self.units(op.per, s) for op in self.ops if op.part in parts))

    def by_part(self, s: Shapes) -> dict:
        return {part: self.train(s, (part,)) for part in ("backbone", "method", "head")}


class Unsupported(ValueError):
    """The model is not a BERT/RoBERTa-style encoder this module can count."""


def _trains(module: nn.Module | None) -> bool:
    return module is not None and any(p.requires_grad for p in module.parameters())


def _encoder(backbone: nn.Module) -> nn.Module:
    """The transformers encoder inside a (possibly peft-wrapped) backbone: the module with
    `embeddings` and `encoder.layer` (BERT, RoBERTa and their relatives)."""
    for mod in backbone.modules():
        if hasattr(mod, "embeddings") and hasattr(getattr(mod, "encoder", None), "layer"):
            return mod
    raise Unsupported(f"{type(backbone).__name__}: no BERT/RoBERTa-style encoder (embeddings + encoder.layer)")


def _virtual_tokens(backbone: nn.Module) -> tuple[int, int]:
    """(prompt tokens prepended to the input, prefix key/value tokens per layer), read from the peft
    config the model was wrapped with, not from the method's name."""
    cfg = (getattr(backbone, "peft_config", None) or {}).get(getattr(backbone, "active_adapter", "default"))
    if cfg is None or not getattr(cfg, "is_prompt_learning", False):
        return 0, 0
    n = int(cfg.num_virtual_tokens)
    return (0, n) if str(getattr(cfg.peft_type, "value", cfg.peft_type)) == "PREFIX_TUNING" else (n, 0)


def _linear(ops: list, name: str, module: nn.Module, grad_in: bool, part: str = "backbone", per: str = "token") -> bool:
    """Add a linear layer's product, and the products of any trainable side branch a method put
    inside it (peft LoRA: A then B on the layer's input); returns whether its output needs a gradient."""
    base = getattr(module, "base_layer", module)
    ops.append(Op(name, part, per, base.in_features * base.out_features, int(base.weight.requires_grad) + int(grad_in)))
    branch_in = grad_in
    for sub_name, sub in module.named_modules():
        if isinstance(sub, nn.Linear) and sub is not base and sub is not module:
            ops.append(Op(f"{name}.{sub_name}", "method", per, sub.in_features * sub.out_features,
                          int(sub.weight.requires_grad) + int(branch_in)))
            branch_in = branch_in or _trains(sub)
    return grad_in or _trains(module)


def _adapter(ops: list, name: str, block: nn.Module, grad_in: bool) -> bool:
    """A bottleneck adapter placed after `block.dense` (bench/methods/adapter.py): down, then up."""
    adapter = getattr(block, "adapter", None)
    if adapter is None:
        return grad_in
    if isinstance(getattr(adapter, "adapters", None), nn.ModuleList):
        return _fused(ops, name, adapter, grad_in)
    g = _linear(ops, f"{name}.adapter.down", adapter.down, grad_in, part="method")
    g = _linear(ops, f"{name}.adapter.up", adapter.up, g, part="method")
    return g


def _fused(ops: list, name: str, fused: nn.Module, grad_in: bool) -> bool:
    """AdapterFusion (bench/methods/fusion.py): every frozen source adapter on the same input, then, when
    the attention is learned, the query on the input and the key on each source's output (the n-way
    dot products and the weighted sum are not matrix products of the model's size: not counted)."""
    n = len(fused.adapters)
    outs = False
    for j, a in enumerate(fused.adapters):
        g = _linear(ops, f"{name}.adapter{j}.down", a.down, grad_in, part="method")
        outs = _linear(ops, f"{name}.adapter{j}.up", a.up, g, part="method") or outs
    if not fused.learned:
        return outs
    gq = _linear(ops, f"{name}.fusion.query", fused.query, grad_in, part="method")
    gk = [_linear(ops, f"{name}.fusion.key{j}", fused.key, outs, part="method") for j in range(n)]  # all n added
    return outs or gq or any(gk)


def plan_for(model: nn.Module) -> Plan:
    """The products of one forward pass of a built cell model (bench.models.backbones.SequenceClassifier),
    with which operands need gradients given what trains."""
    core = _encoder(model.backbone)
    hidden = int(core.config.hidden_size)
    prompt, prefix = _virtual_tokens(model.backbone)
    plan = Plan(prompt_tokens=prompt, prefix_tokens=prefix)
    ops = plan.ops
    g = _trains(core.embeddings) or (prompt > 0 and _trains(model.backbone))  # prompt tokens train
    for i, layer in enumerate(core.encoder.layer):
        p = f"layer{i}"
        att = layer.attention
        gq = _linear(ops, f"{p}.query", att.self.query, g)
        gk = _linear(ops, f"{p}.key", att.self.key, g) or prefix > 0   # trained prefix keys and values
        gv = _linear(ops, f"{p}.value", att.self.value, g) or prefix > 0
        ops.append(Op(f"{p}.scores", "backbone", "pair", hidden, int(gq) + int(gk)))
        gp = gq or gk
        ops.append(Op(f"{p}.context", "backbone", "pair", hidden, int(gp) + int(gv)))
        ga = _linear(ops, f"{p}.attention_out", att.output.dense, gp or gv)
        ga = _adapter(ops, f"{p}.attention_out", att.output, ga) or g or _trains(att.output.LayerNorm)  # + residual
        gf = _linear(ops, f"{p}.ffn_in", layer.intermediate.dense, ga)
        go = _linear(ops, f"{p}.ffn_out", layer.output.dense, gf)
        g = _adapter(ops, f"{p}.ffn_out", layer.output, go) or ga or _trains(layer.output.LayerNorm)
    pooler = getattr(core, "pooler", None)
    if pooler is not None:  # built only for model.pooling=pooler / BERT's native head: dense on [CLS]
        g = _linear(ops, "pooler", pooler.dense, g, per="row")
    for name, sub in model.head.named_modules():
        if isinstance(sub, nn.Linear):
            g = _linear(ops, f"head.{name}", sub, g, part="head", per="row")
    return plan


def _per_s(flops: float | None, seconds: float | None) -> float | None:
    return flops / seconds if flops is not None and seconds else None


def cell_flops(model, cached: bool, timer, train_data, eval_data: dict, tcfg, train_s: float, eval_s: float,
               device, precision: str, pad_multiple: int) -> dict:
    """The record's `flops` section. Achieved train FLOP/s is over what the throughput figure is
    over: the timed steps (warm-up excluded, evaluation never inside); with cached features, the
    feature pass plus the head steps over time.train_s, as bench.training.loop.throughput does."""
    from bench.measure.matmul_peak import peak_flops

    try:
        plan = plan_for(model)
    except Unsupported as exc:
        return {"train_flops": None, "eval_flops": None, "mfu": None, "why_not": str(exc), "rule": RULE}
    every = Shapes(timer.all_samples, timer.all_padded_tokens, timer.all_padded_squares)
    timed = Shapes(timer.samples, timer.padded_tokens, timer.padded_squares)
    if cached:  # one frozen forward pass for the features, then the head alone on them
        feature = plan.forward(eval_shapes(train_data.lengths, int(tcfg.eval_batch_size), pad_multiple),
                               ("backbone", "method"))
        head = plan.train(Shapes(rows=every.rows), ("head",))
        train_flops, timed_flops, seconds = feature + head, feature + head, train_s
        parts = {"backbone": feature, "method": 0.0, "head": head}
        over = "cached features: the feature pass + every head step, over time.train_s"
    else:
        train_flops, timed_flops, seconds = plan.train(every), plan.train(timed), timer.seconds
        parts = plan.by_part(every)
        over = "the step timer's timed steps (warm-up steps excluded), as throughput.train_samples_per_s"
    eval_flops = sum(plan.forward(eval_shapes(d.lengths, int(tcfg.eval_batch_size), pad_multiple))
                     for d in eval_data.values())
    peak = peak_flops(device, precision)
    achieved, eval_rate = _per_s(timed_flops, seconds), _per_s(eval_flops, eval_s)
    top = peak.get("flops_per_s")
    above = [name for name, rate in (("train", achieved), ("eval", eval_rate)) if rate and top and rate > top]
    if above:  # a model rate above the "peak": the peak was measured low (a busy machine); say so, do not hide it
        peak = dict(peak, warning=f"{' and '.join(above)} FLOP/s above this peak: it was measured low (busy machine?); "
                                  "python -m bench.measure.matmul_peak --again on a quiet machine")
    return {
        "train_flops": train_flops, "train_flops_timed": timed_flops, "train_flops_per_s": achieved,
        "eval_flops": eval_flops, "eval_flops_per_s": eval_rate,
        "mfu": achieved / top if achieved and top else None,
        "eval_mfu": eval_rate / top if eval_rate and top else None,
        "train_flops_by_part": parts,
        "virtual_tokens": {"prompt": plan.prompt_tokens, "prefix": plan.prefix_tokens},
        "timed_over": over, "eval_over": "the reported eval splits, over time.eval_s",
        "rule": RULE, "peak": peak,
    }
