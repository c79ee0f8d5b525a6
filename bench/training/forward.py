"""Forward passes over encoded data, shared by training, evaluation, inference cost and bench.predict.

Why apart from the loop: the same batched, length-sorted forward pass serves four callers; those that
only predict (the inference measurement, a saved delta's reload) need not depend on the training loop."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.data.batching import Encoded, collate
from bench.device import autocast_for


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: dict, use_tt: bool) -> dict:
    keys = ("input_ids", "attention_mask", "token_type_ids") if use_tt else ("input_ids", "attention_mask")
    return {k: batch[k] for k in keys if k in batch}


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """The task loss every method trains on: cross-entropy, or mean squared error for regression."""
    if regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


class TrainingBatches:
    """The training rows as model-input batches, re-iterable and sized (peft's EVA cycles over its
    loader until its SVDs converge); iterating leaves labels out. `labelled()` gives them with
    their labels and `loss` the task loss, for an initialisation that estimates a gradient
    (LoRA-GA): still the training rows only."""

    def __init__(self, data: Encoded, batch_size: int, pad_id: int, pad_multiple: int, device, use_tt: bool):
        self.data, self.batch_size, self.pad_id, self.pad_multiple = data, batch_size, pad_id, pad_multiple
        self.device, self.use_tt = device, use_tt

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def _batches(self):
        for start in range(0, len(self.data), self.batch_size):
            ids = list(range(start, min(start + self.batch_size, len(self.data))))
            yield to_device(collate(self.data, ids, self.pad_id, self.pad_multiple), self.device)

    def __iter__(self):
        for batch in self._batches():
            yield model_inputs(batch, self.use_tt)

    def single_rows(self):
        """Each row alone, unpadded (peft's CorDA hook reads one sequence per call: padding would enter
        its covariance)."""
        for i in range(len(self.data)):
            yield model_inputs(to_device(collate(self.data, [i], self.pad_id, 1), self.device), self.use_tt)

    def labelled(self):
        """(model inputs, labels) per batch, in file order."""
        for batch in self._batches():
            yield model_inputs(batch, self.use_tt), batch["labels"]

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss_fn(logits, labels, self.data.is_regression)


@torch.no_grad()
def predict(model, data: Encoded, batch_size: int, pad_id: int, device, precision: str, use_tt: bool,
            multiple: int = 1):
    """Predictions in the original order; batches sorted by length for speed."""
    model.eval()
    lengths = data.lengths  # a property that builds a list: compute once, not per sort key
    order = sorted(range(len(data)), key=lengths.__getitem__)
    out = [None] * len(data)
    for i in range(0, len(order), batch_size):
        ids = order[i:i + batch_size]
        batch = to_device(collate(data, ids, pad_id, multiple), device)
        with autocast_for(device, precision):
            logits = model(**model_inputs(batch, use_tt)).float()
        preds = logits.squeeze(-1) if data.is_regression else logits.argmax(-1)
        for j, v in zip(ids, preds.cpu().tolist()):
            out[j] = v
    return out


@torch.no_grad()
def pooled_features(model, data: Encoded, batch_size: int, pad_id: int, device, precision, use_tt,
                    multiple: int = 1) -> torch.Tensor:
    """Frozen-backbone features, computed once (`method.trains_on_cached_features`). Rows go through
    the backbone sorted by length (far less padding than file order) and land back in file order."""
    model.eval()
    lengths = data.lengths
    order = sorted(range(len(data)), key=lengths.__getitem__)
    feats = None
    for i in range(0, len(order), batch_size):
        ids = order[i:i + batch_size]
        batch = to_device(collate(data, ids, pad_id, multiple), device)
        with autocast_for(device, precision):
            f = model.features(**model_inputs(batch, use_tt)).float()
        if feats is None:
            feats = torch.empty(len(data), f.shape[-1], device=device)
        feats[torch.tensor(ids, device=device)] = f
    return feats
