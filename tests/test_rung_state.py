"""A pruned study's promoted trial continues from its first rung (bench/training/rung_state.py): stopping after
epoch k, saving, and continuing in a fresh process-like setting (new model, new optimizer) must end
bit for bit where the uninterrupted run ends: weights, loss, steps, per-epoch scores, best epoch.
Dropout is on, so the torch RNG stream must be restored too; the real loop on a real tiny model."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_grad_accum import MODEL, data

from bench.methods import build_method
from bench.methods.validate import check_method
from bench.models.build import build_cell
from bench.training.loop import train_model

METHOD_DIR = Path(__file__).resolve().parents[1] / "conf" / "method"
DROPOUT_MODEL = dict(MODEL, head_dropout=0.1, config_overrides={"hidden_dropout_prob": 0.1,
                                                                 "attention_probs_dropout_prob": 0.1})


def _method(name: str):
    """A built-in method by name, or a catalogue YAML (the data-pass initialisations: EVA, CorDA, LoRA-GA)."""
    yaml = METHOD_DIR / f"{name}.yaml"
    if name in ("full", "lora") or not yaml.is_file():
        return build_method({"name": name, "lr": 3e-3})
    return check_method({**OmegaConf.to_container(OmegaConf.load(yaml)), "lr": 3e-3}, where=f"method/{name}.yaml")


def run(method: str, stop: int | None = None, state_in=None, state_out=None):
    built = build_cell(OmegaConf.create(DROPOUT_MODEL), _method(method), 2, seed=0, max_seq_len=128)
    t = {"batch_size": 8, "epochs": 3, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_grad_norm": 1.0, "seed": 3,
         "group_by_length": True, "warmup_steps_excluded": 0, "eval_batch_size": 64, "stop_after_epochs": stop}
    head = built.model.head.out.weight

    def evaluate(epoch):  # deterministic, draws no random numbers; best epoch = largest head norm
        score = float(head.detach().norm())
        return {"norm": score}, score

    torch.manual_seed(11)
    res, _ = train_model(built.model, built.method, data(), OmegaConf.create(t), torch.device("cpu"), pad_id=0,
                         evaluate_epoch=evaluate, state_in=state_in, state_out=state_out)
    return {n: p.detach().clone() for n, p in built.model.named_parameters()}, res


@pytest.mark.parametrize("method", ["full", "lora", pytest.param("eva", marks=pytest.mark.slow), "corda", "lora_ga"])
def test_continued_run_ends_bit_for_bit_where_the_uninterrupted_one_ends(tmp_path, method):
    whole, res_whole = run(method)
    state = tmp_path / "rung.pt"
    rung, res_rung = run(method, stop=1, state_out=state)
    assert state.is_file() and res_rung.steps == res_whole.steps // 3
    # a data-pass initialisation runs again before the state is restored: it must give the same ranks and, where
    # it rewrites the base (CorDA, LoRA-GA), the same residual, or the restored adapter would sit on another base
    cont, res_cont = run(method, state_in=state)
    assert res_cont.continued_from_epoch == 1
    assert all(torch.equal(cont[n], whole[n]) for n in whole)
    assert any(not torch.equal(rung[n], whole[n]) for n in whole)  # the rung really stopped early
    assert res_cont.final_loss == res_whole.final_loss and res_cont.steps == res_whole.steps
    assert res_cont.metrics_per_epoch == res_whole.metrics_per_epoch and res_cont.best_epoch == res_whole.best_epoch
    assert all(torch.equal(res_cont.best_state[n], res_whole.best_state[n]) for n in res_whole.best_state)


def test_a_state_of_another_schedule_is_refused(tmp_path):
    state = tmp_path / "rung.pt"
    run("lora", stop=1, state_out=state)
    built = build_cell(OmegaConf.create(DROPOUT_MODEL), build_method({"name": "lora", "lr": 3e-3}), 2, seed=0,
                       max_seq_len=128)
    t = OmegaConf.create({"batch_size": 4, "epochs": 3, "weight_decay": 0.01, "warmup_ratio": 0.1, "max_grad_norm": 1.0,
                          "seed": 3, "group_by_length": True, "warmup_steps_excluded": 0, "eval_batch_size": 64})
    with pytest.raises(ValueError, match=r"rung.pt: saved for a \d+-step schedule, this run has \d+"):
        train_model(built.model, built.method, data(), t, torch.device("cpu"), pad_id=0, state_in=state)
