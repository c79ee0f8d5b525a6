"""Memory levers (issue #27, bench/models/levers.py) on the real training loop and a real tiny model:
activation checkpointing recomputes exactly what it dropped (same loss, same weights), bf16 weights
keep the trainable parameters (and so AdamW's states) fp32, and the 4-bit base is refused with a
message where it cannot run (this machine: no CUDA), before any work."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.methods import build_method
from bench.models.build import build_cell
from bench.models.levers import check_4bit, check_levers, enable_checkpointing
from bench.training.loop import train_model
from tests.clitools import TINY, run_bench
from tests.test_grad_accum import MODEL, data


def _train(method: str, checkpointing: bool = False, weights: str = "fp32", precision: str = "fp32"):
    built = build_cell(OmegaConf.create(MODEL), build_method({"name": method, "lr": 1e-3}), 2, seed=0,
                       max_seq_len=128, weights_dtype=weights)
    if checkpointing:
        enable_checkpointing(built.model, built.method)
    tcfg = OmegaConf.create({"batch_size": 8, "epochs": 1, "weight_decay": 0.01, "warmup_ratio": 0.0,
                             "max_grad_norm": 1.0, "seed": 3, "group_by_length": True, "warmup_steps_excluded": 0,
                             "eval_batch_size": 64})
    res, _ = train_model(built.model, built.method, data(24), tcfg, torch.device("cpu"), pad_id=0,
                         precision=precision)
    return built, res


@pytest.mark.parametrize("method", ["full", "lora"])
def test_checkpointing_recomputes_the_same_training(method):
    plain, res_plain = _train(method)
    ckpt, res_ckpt = _train(method, checkpointing=True)
    base = ckpt.model.backbone.get_base_model() if hasattr(ckpt.model.backbone, "get_base_model") else ckpt.model.backbone
    assert base.is_activation_checkpointing  # transformers' flag: the layers are checkpointed
    assert res_ckpt.final_loss == pytest.approx(res_plain.final_loss, rel=1e-6)
    a, b = dict(plain.model.named_parameters()), dict(ckpt.model.named_parameters())
    assert max((a[n] - b[n]).abs().max().item() for n in a) < 1e-6


def test_bf16_weights_store_frozen_weights_in_bf16_and_train_fp32():
    built, res = _train("lora", weights="bf16", precision="bf16")
    dtypes = {(p.requires_grad, p.dtype) for p in built.model.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    assert built.weights["dtype"] == "bf16" and built.weights["trainable_dtype"] == "fp32"
    fp32, _ = _train("lora")
    frozen_fp32 = sum(p.numel() * p.element_size() for p in fp32.model.parameters() if not p.requires_grad)
    assert built.weights["frozen_bytes"] * 2 == frozen_fp32  # half the bytes for what does not train
    assert res.final_loss == res.final_loss and res.steps == 3  # finite, all steps ran


def test_levers_refuse_what_cannot_run():
    lora = build_method({"_target_": "lora", "name": "lora", "lr": 1e-3})
    full = build_method({"_target_": "full", "name": "full", "lr": 1e-3})
    assert full.trains_base_weights and not lora.trains_base_weights  # the declaration the check reads
    cfg = OmegaConf.create({"train": {"weights_dtype": "bf16", "precision": "fp32", "device": "auto"}})
    with pytest.raises(ConfigError, match=r"train.weights_dtype=bf16 computes in bf16.*train.precision=fp32"):
        check_levers(cfg, lora)
    with pytest.raises(ConfigError, match="method=full: this method trains the base weights"):
        check_4bit(full, "auto")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="runs on CUDA only"):
            check_4bit(lora, "auto")
    elif importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match=r"pip install 'peft-bench\[qlora\]'"):
            check_4bit(lora, "auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine nf4 may run")
def test_cli_refuses_a_4bit_base_without_cuda_before_any_work(glue_dir, tmp_path):
    proc = run_bench([*TINY, "task=rte", "method=lora", "train.weights_dtype=nf4"], glue_dir, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "train.weights_dtype=nf4 (a 4-bit base through bitsandbytes) runs on CUDA only" in proc.stderr + proc.stdout
    assert not (tmp_path / "adhoc").exists()  # no record, no folder


def test_levers_at_their_defaults_leave_the_config_hash_as_before():
    from bench.records.schema import config_hash

    before = {"train": {"epochs": 3, "batch_size": 32}, "model": {"name": "tiny-bert"}}
    at_defaults = {"train": dict(before["train"], gradient_checkpointing=False, weights_dtype="fp32", nproc=1),
                   "model": before["model"]}
    assert config_hash(at_defaults) == config_hash(before)  # records written before #27 are still found
    for key, value in (("gradient_checkpointing", True), ("weights_dtype", "bf16"), ("nproc", 2)):
        changed = {"train": dict(at_defaults["train"], **{key: value}), "model": before["model"]}
        assert config_hash(changed) != config_hash(before), key
