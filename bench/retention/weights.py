"""The weight view of retention: intruder dimensions of each adapted weight matrix.

Definition (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence",
Algorithm 1): with W0 = U0 S0 V0^T the pretrained matrix and Wt = Ut St Vt^T the finetuned one, the
j-th of Wt's top-k left singular vectors is an intruder dimension when its largest absolute cosine
similarity with any of W0's left singular vectors is below a threshold epsilon. Singular vectors
have no sign, hence the absolute value. Defaults k=10, epsilon=0.5 (`retention.intruder_k`,
`retention.intruder_epsilon`; docs/retention.md says what was and was not checked against the paper).

Which matrices: the modules whose last name part is in `retention.intruder_modules` (default query
and value, LoRA's default targets), for every method alike, so LoRA's merged matrix and full
finetuning's whole matrix are compared on the same weights. A peft tuner layer's finetuned matrix is
its merged weight (a copy of the layer merged by peft), a plain layer's is its weight.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def target_modules(backbone: nn.Module, names) -> dict[str, nn.Module]:
    """Module name -> module, for every module whose last name part is in `names` and holds a 2-D weight
    (directly or as a peft tuner layer's `base_layer`)."""
    wanted, out = set(names), {}
    for name, module in backbone.named_modules():
        if name.rsplit(".", 1)[-1] not in wanted:
            continue
        base = getattr(module, "base_layer", module)
        weight = getattr(base, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            out[name.removeprefix("base_model.model.")] = module
    return out


def _weight(module: nn.Module) -> torch.Tensor:
    base = getattr(module, "base_layer", module)
    return base.weight.detach().float().cpu().clone()


def snapshot(backbone: nn.Module, names) -> dict[str, torch.Tensor]:
    """The matrices as they are now (before training), on the CPU."""
    return {name: _weight(m) for name, m in target_modules(backbone, names).items()}


def finetuned_weight(module: nn.Module) -> torch.Tensor | None:
    """The matrix the finetuned model computes with: a tuner layer merged on a copy (None when peft
    cannot merge it), else the layer's own weight."""
    if not hasattr(module, "base_layer"):
        return _weight(module)
    if not hasattr(module, "merge"):
        return None
    layer = copy.deepcopy(module)
    try:
        layer.merge(safe_merge=False)
    except Exception:  # noqa: BLE001 - a tuner that cannot merge has no single finetuned matrix
        return None
    return _weight(layer)


@torch.no_grad()
def intruder_count(w0: torch.Tensor, wt: torch.Tensor, k: int, epsilon: float) -> tuple[int, float]:
    """(intruders among Wt's top-k left singular vectors, the smallest best-|cosine| among them)."""
    u0 = torch.linalg.svd(w0.double(), full_matrices=False)[0]
    ut = torch.linalg.svd(wt.double(), full_matrices=False)[0][:, :k]
    best = (ut.T @ u0).abs().max(dim=1).values  # singular vectors are unit: the dot product is the cosine
    return int((best < epsilon).sum()), float(best.min())


def intruders(backbone: nn.Module, before: dict[str, torch.Tensor], names, k: int, epsilon: float) -> dict:
    """The record's `retention.intruders`: per-matrix counts over the matrices the method changed."""
    definition = (
        "left singular vectors among the finetuned matrix's top k whose largest |cosine| with any "
        "of the pretrained matrix's left singular vectors is below epsilon (Shuttleworth et al. 2024)"
    )
    per, low, unchanged, unmergeable = {}, {}, 0, []
    for name, module in target_modules(backbone, names).items():
        if name not in before:
            continue
        wt = finetuned_weight(module)
        if wt is None:
            unmergeable.append(name)
            continue
        if torch.equal(wt, before[name]):
            unchanged += 1
            continue
        per[name], low[name] = intruder_count(before[name], wt, k, epsilon)
    base = {"k": k, "epsilon": epsilon, "modules": list(names), "definition": definition}
    if not per:
        why = (
            "peft cannot merge these layers"
            if unmergeable
            else f"the method left all {unchanged} matching matrices unchanged"
            if unchanged
            else f"no module named {', '.join(names)} in this backbone"
        )
        return dict(base, status="not_applicable", why=why, matrices=0, total=None, mean_per_matrix=None)
    total = sum(per.values())
    return dict(
        base,
        status="measured",
        matrices=len(per),
        unchanged_matrices=unchanged,
        total=total,
        mean_per_matrix=total / len(per),
        matrices_with_intruders=sum(1 for v in per.values() if v),
        per_matrix=per,
        min_best_cosine={n: round(v, 4) for n, v in low.items()},
    )
