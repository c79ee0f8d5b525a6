"""Parameter counts, and how the head is counted in them.

Why its own module: "trainable parameters" means different numbers in different papers (with or
without the task head, shared tensors once or twice), so the one counter every record, `bench.params`
and the tests use states its counting rule next to the number (HEAD_COUNTING)."""
from __future__ import annotations

from torch import nn

HEAD_COUNTING = (
    "trainable includes the task head (dropout + linear, H*C + C); trainable_excl_head is the method "
    "alone, as the LoRA/adapter papers count it; total = backbone (+ method additions) + head; "
    "the unused BERT pooler is not built unless model.pooling=pooler"
)


def count_params(model: nn.Module) -> dict:
    """Unique parameters (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)  # 4-bit: two values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    head = sum(p.numel() for p in model.head.parameters())
    return {
        "trainable": trainable,
        "total": total,
        "head": head,
        "trainable_excl_head": trainable - head,
        "trainable_pct": 100.0 * trainable / total if total else 0.0,
        "counting": HEAD_COUNTING,
    }
