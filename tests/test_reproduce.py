"""bench.reproduce runs cells one way: both entry points that run cells (the paper presets and the
scaled run) launch the normal sweep command through bench.reproduce.runner, and that command writes
a normal sweep's records and ledger (resumable)."""
from __future__ import annotations

import json
import sys
from typing import ClassVar

import pytest

from bench.reproduce import presets, runner, scaled


class _FakeProc:
    calls: ClassVar[list[tuple[list[str], dict]]] = []

    def __init__(self, cmd, env=None):
        _FakeProc.calls.append((list(cmd), dict(env or {})))

    def wait(self, timeout=None):
        return 0


@pytest.fixture
def launched(monkeypatch):
    """Every command the runner starts, none run; running a cell in this process fails the test."""
    import bench.sweep.execute

    def in_process(*args, **kwargs):
        raise AssertionError("bench.reproduce ran a cell in-process instead of through bench.reproduce.runner")

    _FakeProc.calls = []
    monkeypatch.setattr(runner.subprocess, "Popen", _FakeProc)
    monkeypatch.setattr(bench.sweep.execute, "execute", in_process)
    return _FakeProc.calls


@pytest.fixture
def runnable(monkeypatch):
    """Pretend the presets' weights and every train split are here (so planning does not depend on
    this machine's cache and data)."""
    import bench.data.loading

    monkeypatch.setattr(presets, "weights_available", lambda model_cfg: (True, "pretend the weights are here"))
    monkeypatch.setattr(bench.data.loading, "has_split", lambda spec, split: True)


def test_presets_and_scaled_launch_the_one_sweep_command(launched, runnable, tmp_path):
    results, out = tmp_path / "res", tmp_path / "out"
    rc = presets.cmd_presets("lora_paper/roberta_base_lora", ["lora_paper/roberta_base_lora"], results, out,
                             False, ["mnli", "rte", "cola"], 2, ["train.threads=1"])
    assert rc == 0
    rc = scaled.cmd_scaled(results, out, True, "0", ["train.threads=1"])
    assert rc == 0
    (paper, _), (scaled_cmd, _) = launched
    head = [sys.executable, "-m", "bench", "-m"]
    # CoLA's hyperparameters are unknown: left out; RTE starts from MNLI, which runs first (task-major).
    assert paper == head + ["experiment=lora_paper/roberta_base_lora", "task=mnli,rte", "train.seed=0,1",
                            f"results_dir={results}", "train.threads=1"]
    assert scaled_cmd == head + ["experiment=scaled_repro", "train.seed=0", f"results_dir={results}",
                                 "train.threads=1"]
    invocations = [env[runner.INVOCATION_ENV] for _, env in launched]
    assert len(set(invocations)) == 2 and all(invocations)  # one ledger per sweep run
    assert (out / "lora_paper__roberta_base_lora" / "reproduce.md").is_file()
    assert (out / "scaled" / "reproduce.md").is_file()


def test_dry_run_and_no_run_launch_nothing(launched, runnable, tmp_path):
    presets.cmd_presets("lora_paper/roberta_base_lora", ["lora_paper/roberta_base_lora"], tmp_path, tmp_path,
                        True, ["mnli"], 1)
    scaled.cmd_scaled(tmp_path, tmp_path, False, None)
    assert launched == []


def test_task_whose_checkpoint_source_has_no_data_is_not_run(runnable, tmp_path, monkeypatch):
    """RTE starts from MNLI's checkpoint (train.init_from): without MNLI's train split neither runs."""
    import bench.data.loading

    monkeypatch.setattr(bench.data.loading, "has_split", lambda spec, split: spec.name != "mnli")
    plan = presets.plan_preset("lora_paper/roberta_base_lora", tmp_path, ["mnli", "rte", "qnli"], 1)
    assert plan["skip"]["mnli"].startswith("not run: no local train split")
    assert "train.init_from=mnli: that cell cannot run" in plan["skip"]["rte"]
    assert plan["multirun"] == ["experiment=lora_paper/roberta_base_lora", "task=qnli", "train.seed=0"]


def test_results_folder_with_a_comma_stays_one_value():
    from bench.params import compose_config

    odd = "/tmp/re sults,x'y"
    assert compose_config([f"results_dir={runner.override_value(odd)}"]).results_dir == odd
    assert runner.override_value("/tmp/plain-dir_1.x") == "/tmp/plain-dir_1.x"


@pytest.mark.slow
def test_runner_writes_a_normal_sweeps_records_and_ledger_and_resumes(tmp_path, glue_dir, monkeypatch):
    """Through the real `python -m bench -m`: the record is where and what a hand-typed cell writes
    (run id from bench.sweep.execute.identity), the invocation's ledger lists it, a rerun skips it."""
    from bench.params import compose_config
    from bench.records.results import sweep_dir
    from bench.sweep.execute import identity

    for var in ("BENCH_INVOCATION", "BENCH_RESULTS_DIR", "BENCH_PARALLEL_CELLS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BENCH_GLUE_DIR", str(glue_dir))
    cell = ["model=tiny_bert", "train=quick", "task=sst2", "method=bitfit", "sweep_name=via_runner"]
    extra = ["train.threads=1", "inference.enabled=false", f"hydra.sweep.dir={tmp_path}/_hydra"]
    results = tmp_path / "res"

    first = runner.run_sweep(cell, results, extra)
    assert first.returncode == 0
    lines = [json.loads(x) for x in runner.ledger_path(results, "via_runner", first).read_text().splitlines()]
    assert [x["status"] for x in lines] == ["ok"]
    stem = identity(compose_config(cell + [f"results_dir={results}"]), cell)["run_id"]
    expected = sweep_dir(results, "via_runner") / f"{stem}.json"
    assert lines[0]["path"] == str(expected)
    assert json.loads(expected.read_text())["status"] == "ok"

    again = runner.run_sweep(cell, results, extra)
    assert again.returncode == 0 and again.invocation != first.invocation
    lines = [json.loads(x) for x in runner.ledger_path(results, "via_runner", again).read_text().splitlines()]
    assert [(x["status"], x["path"]) for x in lines] == [("skipped", str(expected))]
