"""The AdamW implementation (train.optimizer_impl): the default `foreach` must train bit for bit like
torch's per-tensor loop (so making it the default changed no result and no config hash), `fused`
may round differently but must train the same function closely, and a bad name is a clear error."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from test_grad_accum import MODEL, data

from bench.methods import build_method
from bench.models.build import build_cell
from bench.training.loop import train_model
from bench.training.optimizer import make_optimizer


def train(impl: str | None, method: str = "full"):
    built = build_cell(OmegaConf.create(MODEL), build_method({"name": method, "lr": 1e-3}), 2, seed=0, max_seq_len=128)
    t = {"batch_size": 8, "epochs": 1, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_grad_norm": 0.05, "seed": 3,
         "group_by_length": True, "warmup_steps_excluded": 0, "eval_batch_size": 64}
    if impl is not None:
        t["optimizer_impl"] = impl
    res, _ = train_model(built.model, built.method, data(), OmegaConf.create(t), torch.device("cpu"), pad_id=0)
    return {n: p.detach().clone() for n, p in built.model.named_parameters()}, res


@pytest.mark.parametrize("method", ["full", "lora"])
def test_foreach_default_is_bit_identical_to_the_loop(method):
    default, res = train(None, method)
    loop, res_loop = train("loop", method)
    assert res.optimizer == "AdamW (foreach)" and res_loop.optimizer == "AdamW (loop)"
    assert all(torch.equal(default[n], loop[n]) for n in loop)
    assert res.final_loss == res_loop.final_loss
    start = {n: p for n, p in build_cell(OmegaConf.create(MODEL), build_method({"name": method, "lr": 1e-3}), 2,
                                         seed=0, max_seq_len=128).model.named_parameters()}
    assert max((loop[n] - start[n]).abs().max().item() for n in loop) > 1e-4  # it did train


def test_fused_trains_the_same_function_closely():
    fused, res = train("fused")
    loop, _ = train("loop")
    assert res.optimizer == "AdamW (fused)"
    assert max((fused[n] - loop[n]).abs().max().item() for n in loop) < 1e-4


def test_unknown_implementation_is_named():
    with pytest.raises(ValueError, match="train.optimizer_impl: expected one of loop, foreach, fused"):
        make_optimizer([("w", torch.nn.Parameter(torch.ones(2, 2)))], OmegaConf.create({"weight_decay": 0.0,
                                                                                       "optimizer_impl": "sgd"}), 1e-3)
