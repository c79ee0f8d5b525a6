"""Gradient accumulation: k micro-batches of b must train exactly like one batch of k*b (up to
floating point), including a last step whose micro-batches are unequal (loss shares), clipping after
accumulation, and a schedule that counts optimizer steps. Dropout is off so both runs compute the
same function; everything else is the real training loop on a real (tiny, random) model."""
from __future__ import annotations

import random

import pytest
import torch
from omegaconf import OmegaConf
from tiny import model_node

from bench.data.batching import Encoded
from bench.errors import ConfigError
from bench.methods import build_method
from bench.models.backbones import build_model
from bench.models.build import build_cell
from bench.training.loop import grad_accum_steps, loss_fn, micro_batches, train_model

MODEL = model_node("tiny_bert", head_dropout=0.0,
                   config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})


def data(n: int = 40, regression: bool = False) -> Encoded:
    rng = random.Random(0)
    ids = [[101] + [rng.randint(1000, 5000) for _ in range(rng.randint(2, 30))] + [102] for _ in range(n)]
    labels = [rng.random() * 5 for _ in ids] if regression else [rng.randint(0, 1) for _ in ids]
    return Encoded(ids, None, labels, regression)


def train(batch_size: int, accum: int, regression: bool = False, method: str = "full", max_grad_norm: float = 0.05):
    built = build_cell(OmegaConf.create(MODEL), build_method({"name": method, "lr": 1e-3}), 1 if regression else 2,
                       seed=0, max_seq_len=128)
    m = built.method
    tcfg = OmegaConf.create({"batch_size": batch_size, "grad_accum_steps": accum, "epochs": 2, "weight_decay": 0.01,
                             "warmup_ratio": 0.1, "max_grad_norm": max_grad_norm, "seed": 3, "group_by_length": True,
                             "warmup_steps_excluded": 0, "eval_batch_size": 64})
    res, timer = train_model(built.model, m, data(regression=regression), tcfg, torch.device("cpu"), pad_id=0)
    return built.model, res, timer


@pytest.mark.parametrize("regression", [False, True])
def test_accumulated_micro_batches_train_like_one_large_batch(regression):
    # 40 examples, effective batch 21: steps of 21 and 19; micro-batches of 7 -> [7, 7, 7] and [7, 7, 5]
    big, res_big, t_big = train(21, 1, regression)
    acc, res_acc, t_acc = train(7, 3, regression)
    assert res_acc.steps == res_big.steps == 4  # optimizer steps: 2 per epoch, as with batch 21
    assert res_acc.warmup_steps == res_big.warmup_steps
    assert t_acc.samples == t_big.samples and t_acc.timed_steps == t_big.timed_steps
    assert res_acc.final_loss == pytest.approx(res_big.final_loss, rel=1e-5)
    a, b = dict(acc.named_parameters()), dict(big.named_parameters())
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    moved = max((b[n] - p).abs().max().item()
                for n, p in build_model(OmegaConf.create(MODEL), 1 if regression else 2, 0).model.named_parameters())
    assert moved > 1e-4          # training did change the weights ...
    assert worst < 1e-5          # ... and both ways identically up to floating point


def test_gradient_of_accumulated_shares_equals_large_batch_gradient():
    """One step's summed gradient, micro-batch losses scaled by their share, vs the full batch's."""
    built = build_model(OmegaConf.create(MODEL), 2, seed=0)
    model = built.model.train()
    d = data(13)
    from bench.data.batching import collate

    def grads(parts):
        model.zero_grad()
        n = sum(len(p) for p in parts)
        for part in parts:
            b = collate(d, part, 0)
            logits = model(b["input_ids"], b["attention_mask"])
            (loss_fn(logits, b["labels"], False) * (len(part) / n)).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    ids = list(range(13))
    whole, split = grads([ids]), grads(micro_batches(ids, 5))  # 5, 5, 3
    for k in whole:
        assert torch.allclose(whole[k], split[k], atol=1e-7, rtol=1e-5), k


def test_grad_accum_steps_setting_is_checked():
    assert grad_accum_steps(OmegaConf.create({})) == 1
    assert grad_accum_steps(OmegaConf.create({"grad_accum_steps": 4})) == 4
    for bad in (0, -1, 2.5, "two", True):
        with pytest.raises(ConfigError, match="train.grad_accum_steps"):
            grad_accum_steps(OmegaConf.create({"grad_accum_steps": bad}))
