"""What the backbone can still do: one forward pass over the fixed sample gives the zero-shot
similarity skill (encoders), the language-model loss (decoders) and the pooled features whose
linear CKA against the base's is the representation drift.

- Skill (encoders): Spearman correlation between the gold scores and the cosine similarity of the two
  sentences' mean-pooled last hidden states, each sentence encoded alone (how all-MiniLM-L6-v2 is
  used as a sentence encoder). Forgetting = skill before - skill after.
- Skill (decoders): mean next-token cross-entropy over the sample's sentences, with the input
  embedding as the output layer (GPT-2 and the other tied models; untied models have no output layer
  loaded here and record no skill). Forgetting = loss after - loss before, as peft's forgetting figure.
- Drift: linear CKA (Kornblith et al. 2019) between the base's and the finetuned model's pooled
  features (the pooling the cell's head reads) on every sentence of the sample: 1 = unchanged up to
  rotation and scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bench.device import autocast_for
from bench.models.backbones import pool


def encode_sentences(tokenizer, sentences: list[str], max_len: int) -> list[list[int]]:
    return list(tokenizer(sentences, truncation=True, max_length=max_len, padding=False)["input_ids"])


def _batch(ids: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids.to(device), mask.to(device)


def _lm_loss_sum(
    backbone, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
) -> tuple[float, int]:
    """(summed next-token cross-entropy, predicted tokens) with the input embedding as output layer."""
    emb = backbone.get_input_embeddings().weight
    logits = hidden[:, :-1].float() @ emb.float().T
    target = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return float(loss), int((target != -100).sum())


@torch.no_grad()
def forward_sample(
    model, ids: list[list[int]], pad_id: int, device, precision: str, batch_size: int, lm: bool
) -> dict:
    """Mean-pooled and head-pooled features of every sentence (file order) and, with `lm`, the mean
    language-model loss. Sentences go through sorted by length (less padding)."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    mean_f, head_f = [None] * len(ids), [None] * len(ids)
    loss_sum, tokens = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, mask = _batch([ids[i] for i in rows], pad_id, device)
        with autocast_for(device, precision):
            out = model.backbone(input_ids=input_ids, attention_mask=mask)
        hidden = out.last_hidden_state.float()
        m = pool(hidden, mask, "mean").cpu()
        h = pool(hidden, mask, model.pooling, getattr(out, "pooler_output", None)).float().cpu()
        for j, i in enumerate(rows):
            mean_f[i], head_f[i] = m[j], h[j]
        if lm:
            extra = hidden.shape[1] - mask.shape[1]  # prompt tuning's virtual tokens come first
            s, n = _lm_loss_sum(model.backbone, hidden[:, extra:], input_ids, mask)
            loss_sum, tokens = loss_sum + s, tokens + n
    return {
        "mean": torch.stack(mean_f).numpy(),
        "pooled": torch.stack(head_f).numpy(),
        "lm_loss": loss_sum / tokens if lm and tokens else None,
    }


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), float)
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):  # average ranks of ties (the gold scores of MRPC are 0/1)
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a, b) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def similarity_skill(mean_features: np.ndarray, gold: list[float]) -> float:
    """Spearman of the pairs' cosine similarities with the gold scores (rows: all first sentences, then
    all second ones, as bench.retention.data.Sample.sentences)."""
    n = len(gold)
    a, b = mean_features[:n].astype(np.float64), mean_features[n : 2 * n].astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return spearman(cos, gold)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two feature matrices over the same rows (columns may differ in number)."""
    x = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    y = y.astype(np.float64) - y.mean(0, dtype=np.float64)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else float("nan")
