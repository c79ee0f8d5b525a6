"""Pruned tuning (study.prune, bench/sweep/study.py): successive halving with one cut on a tiny model."""
from __future__ import annotations

import json

import pytest
from clitools import TINY, records_in, run_bench

from bench.sweep.study import planned_cells, promote, survivors

PRUNED_STUDY = ["experiment=study", *TINY, "task=sst2", "method=lora", "study.trials=4", "study.seeds=1",
                "study.prune.enabled=true", "study.prune.eta=2", "study.prune.rung_epochs=1", "train.epochs=2",
                "study.prune.noise_z=0",  # the cut by rank alone (the no-cut rule: tests/test_study_search.py)
                "train.max_train_samples=256", "train.eval_every_epoch=true", "inference.enabled=false",
                "study.lr_range=[1e-4,1e-1]"]


def test_promotion_rule():
    assert survivors(4, 2) == 2 and survivors(6, 3) == 2 and survivors(2, 3) == 1
    # best first; a tie goes to the smaller rate; a failed trial is never promoted
    assert promote([0.5, 0.7, 0.6, 0.7], 2) == [1, 3]
    assert promote([0.5, 0.6, 0.6, 0.1], 2) == [1, 2]
    assert promote([None, 0.2, None, None], 2) == [1]


@pytest.mark.timeout(1800)  # two invocations of 6 cells each (the second skips them): minutes on a busy 2-core machine
@pytest.mark.slow
def test_pruned_study_stops_the_worst_trials_and_chooses_among_the_survivors(tmp_path, glue_dir):
    proc = run_bench(PRUNED_STUDY, glue_dir, tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records_in(tmp_path / "study")
    trials = [r for r in recs if r["study"]["role"] == "trial"]
    rung1 = sorted((r for r in trials if r["study"]["rung"] == 1), key=lambda r: r["study"]["trial_index"])
    full = {r["study"]["trial_index"]: r for r in trials if r["study"]["rung"] == 2}
    assert len(rung1) == 4 and len(full) == 2 and len(trials) == 6

    # the two worst first-rung selection scores (ties to the smaller rate kept) stopped after one epoch
    scores = [r["selection_metrics"]["accuracy"] for r in rung1]
    assert len(set(scores)) > 1, "the trials should differ, or the test shows nothing"
    ranked = sorted(range(4), key=lambda i: (-scores[i], i))
    assert sorted(full) == sorted(ranked[:2])
    for i, r in enumerate(rung1):
        pruned = i not in full
        assert r["study"]["pruned"] is pruned and r["study"]["promoted"] is not pruned
        assert r["study"].get("pruned_at_rung") == (1 if pruned else None)
        assert r["train"]["stop_after_epochs"] == 1 and r["train"]["steps"] == 256 // 16  # one epoch of two
        assert r["inference"] is None
    for i, r in full.items():
        assert r["study"]["pruned"] is False and r["train"]["steps"] == 2 * 256 // 16
        # the first rung is exactly the full run's first epoch (same schedule, stopped early), and the
        # promoted run continued from the state the rung saved instead of training that epoch again
        assert r["metrics_per_epoch"][0]["metrics"] == rung1[i]["selection_metrics"]
        assert r["train"]["continued_from_epoch"] == 1 and r["throughput"]["timed_steps"] <= 256 // 16
    assert not list((tmp_path / "study" / "trials" / ".rung_state").glob("*.pt"))  # spent states are removed

    # the rate is chosen among the survivors' full-length runs, on the selection split
    sel = json.loads(next((tmp_path / "study" / "selected").glob("*.json")).read_text())
    best = max(full, key=lambda i: (full[i]["selection_metrics"]["accuracy"], -i))
    assert sel["selected_lr"] == full[best]["train"]["lr"] == sel["grid"][best]
    assert sel["pruning"]["pruned"] == sorted(set(range(4)) - set(full))
    assert [s is None for s in sel["scores"]] == [i not in full for i in range(4)]
    final = [r for r in recs if r["study"]["role"] == "final"]
    assert len(final) == 1 and final[0]["train"]["lr"] == sel["selected_lr"]
    assert "sweep: 6/6 cells (6 ok" in proc.stdout + proc.stderr  # 4 first-rung + 2 full trials; seed 0 is copied

    # resume: nothing trains again and the same rate is chosen
    again = run_bench(PRUNED_STUDY, glue_dir, tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep: 6/6 cells (0 ok, 0 failed, 6 skipped)" in again.stdout + again.stderr
    assert json.loads(next((tmp_path / "study" / "selected").glob("*.json")).read_text())["selected_lr"] == \
        sel["selected_lr"]
    assert {r["_path"]: (r["study"], r["finished_at"]) for r in records_in(tmp_path / "study")} == \
        {r["_path"]: (r["study"], r["finished_at"]) for r in recs}


@pytest.mark.parametrize("prune,expected", [(None, 4 + 2), ({"enabled": True, "eta": 2, "noise_z": 0}, 4 + 2 + 2),
                                                 ({"enabled": True, "eta": 2}, 4 + 4 + 2)])
def test_planned_cells(prune, expected):
    study = {"enabled": True, "trials": 4, "seeds": 3, "trial_seed": 0, **({"prune": prune} if prune else {})}
    assert planned_cells({"study": study}) == expected
    assert planned_cells({}) == 1


def test_a_first_rung_trial_measures_neither_serving_nor_forgetting():
    """A first-rung trial is never reported nor copied as a final, so its cell skips the inference and the
    retention measurements (about 8 s a cell on minilm); neither is in the config hash, so its run id is
    the one it had with them on."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from bench.config.confdir import conf_dir
    from bench.records.schema import config_hash
    from bench.sweep.study import _cell

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=catalogue", "method=lora", "task=sst2"])
    GlobalHydra.instance().clear()
    assert cfg.retention.enabled == "auto" and cfg.inference.enabled  # minilm: both measured on a full cell
    rung = _cell(cfg, 1e-3, 0, "s/trials", {"role": "trial"}, stop_after=1)
    full = _cell(cfg, 1e-3, 0, "s/trials", {"role": "trial"})
    assert rung.retention.enabled is False and rung.inference.enabled is False
    assert full.retention.enabled == "auto" and full.inference.enabled
    plain = OmegaConf.to_container(rung, resolve=True)
    plain["retention"]["enabled"], plain["inference"]["enabled"] = "auto", True
    assert config_hash(OmegaConf.to_container(rung, resolve=True)) == config_hash(plain)
