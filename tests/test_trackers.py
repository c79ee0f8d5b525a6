"""Experiment trackers (issue #28, bench/recipe/trackers.py), against the real packages: a tiny cell logs to
MLflow (SQLite store, read back through MlflowClient), TensorBoard (event files read back with
tensorboard's EventAccumulator) and CSV; a failing tracker never fails the cell; a tracker whose
package is missing is a configuration error naming the extra."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from clitools import TINY, records_in, run_bench

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

CELL = [*TINY, "task=sst2", "method=bitfit", "train.epochs=2", "train.eval_every_epoch=true",
        "inference.enabled=false", "sweep_name=t"]


def _one_record(folder):
    (rec,) = records_in(folder)  # the trackers' copies under tracking/ are not records
    assert rec["status"] == "ok"
    return rec


@pytest.mark.slow  # 13 s (mlflow's import and store); the tracker path is the tensorboard + csv test's in make test
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed: pip install '.[mlflow]'")
def test_mlflow_run_read_back_through_its_client(tmp_path, glue_dir):
    from mlflow.tracking import MlflowClient

    proc = run_bench([*CELL, "logger=mlflow"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = _one_record(tmp_path / "t")
    db = tmp_path / "tracking" / "mlflow.db"
    assert rec["trackers"]["mlflow"]["status"] == "ok" and rec["trackers"]["mlflow"]["tracking_uri"] == f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == rec["run_id"]
    tags = run.data.tags
    for key in ("sweep", "task", "method", "model", "config_hash"):
        assert tags[key] == str(rec[key])
    assert tags["seed"] == str(rec["seed"]) and tags["status"] == "ok"
    params = run.data.params
    assert float(params["train.max_train_samples"]) == rec["config"]["train"]["max_train_samples"]
    assert params["method.name"] == "bitfit" and params["task.name"] == "sst2"
    steps = rec["train"]["steps"]
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    lr = client.get_metric_history(run.info.run_id, "train/lr")
    assert [m.step for m in loss] == list(range(1, steps + 1)) and len(lr) == steps
    assert loss[-1].value == pytest.approx(rec["train"]["final_loss"], rel=1e-6)
    assert max(m.value for m in lr) <= rec["train"]["lr"] + 1e-12 and lr[-1].value < lr[0].value  # decays
    sel = client.get_metric_history(run.info.run_id, "selection_epoch/accuracy")
    assert [m.value for m in sel] == pytest.approx([e["metrics"]["accuracy"] for e in rec["metrics_per_epoch"]])
    final = run.data.metrics
    assert final["eval/accuracy"] == pytest.approx(rec["metrics"]["accuracy"])
    assert final["selection/accuracy"] == pytest.approx(rec["selection_metrics"]["accuracy"])
    assert final["cost/params.trainable"] == rec["params"]["trainable"]
    assert final["cost/throughput.train_samples_per_s"] == pytest.approx(rec["throughput"]["train_samples_per_s"])
    assert final["cost/memory.peak_rss_bytes"] == rec["memory"]["peak_rss_bytes"]
    from bench.records.schema import load_records

    assert load_records(tmp_path) == ([rec], [])  # the artifact's copy under tracking/ is not a second record
    (art,) = client.list_artifacts(run.info.run_id, "record")
    local = client.download_artifacts(run.info.run_id, art.path, str(tmp_path / "dl"))
    copy = json.loads(Path(local).read_text())
    assert copy["run_id"] == rec["run_id"] and copy["metrics"] == rec["metrics"]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("mlflow") is None,
                    reason="tensorboard or mlflow not installed: pip install '.[tensorboard,mlflow]'")
def test_tensorboard_and_csv_at_once_and_a_failing_tracker_never_fails_the_cell(tmp_path, glue_dir):
    """Three trackers at once; MLflow's store cannot be created (a file where its folder should be):
    a warning, the record says so, the cell is ok and the other two log everything."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the store's folder should be")
    proc = run_bench([*CELL, "logger=[tensorboard,csv,mlflow]", f"logger.mlflow.tracking_uri=sqlite:///{blocked}/m.db"],
                     glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tracker mlflow failed, switched off for this cell (the record is unaffected)" in proc.stdout + proc.stderr
    rec = _one_record(tmp_path / "t")
    assert {k: v["status"] for k, v in rec["trackers"].items()} == {"tensorboard": "ok", "csv": "ok", "mlflow": "failed"}
    assert rec["trackers"]["mlflow"]["error"]
    events = EventAccumulator(str(tmp_path / "tracking" / "tensorboard" / "t" / rec["run_id"]))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "selection_epoch/accuracy", "eval/accuracy", "cost/params.trainable"} <= set(scalars)
    loss = events.Scalars("train/loss")
    assert len(loss) == rec["train"]["steps"] and loss[-1].value == pytest.approx(rec["train"]["final_loss"], rel=1e-5)
    assert events.Scalars("eval/accuracy")[0].value == pytest.approx(rec["metrics"]["accuracy"], rel=1e-6)
    assert "record/text_summary" in events.Tags()["tensors"]  # the record, as text
    folder = tmp_path / "tracking" / "csv" / "t" / rec["run_id"]
    rows = list(csv.DictReader((folder / "metrics.csv").read_text().splitlines()))
    assert sum(r["name"] == "train/loss" for r in rows) == rec["train"]["steps"]
    assert float(next(r["value"] for r in rows if r["name"] == "eval/accuracy")) == pytest.approx(rec["metrics"]["accuracy"])
    assert json.loads((folder / "tags.json").read_text())["config_hash"] == rec["config_hash"]
    assert json.loads((folder / f"{rec['run_id']}.json").read_text())["metrics"] == rec["metrics"]


def test_missing_tracker_package_names_the_extra(tmp_path, glue_dir):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here: nothing missing to report")
    proc = run_bench([*CELL, "logger=wandb"], glue_dir, tmp_path)
    assert proc.returncode == 2
    assert "logger=wandb: the wandb package is not installed; install peft-bench's extra: " \
           "pip install 'peft-bench[wandb]'" in proc.stdout + proc.stderr
    assert not (tmp_path / "t").exists()  # checked before any work


def test_per_step_tracker_work_is_outside_the_timed_steps(monkeypatch):
    """The trackers' per-step hook runs only between timed regions, never inside one, and after the
    step it reports has been timed: so throughput figures are the same with or without a tracker.
    The real StepTimer is kept; a subclass only notes when a timed region is open."""
    from contextlib import contextmanager

    import torch
    from omegaconf import OmegaConf
    from test_methods import TRAIN, _toy_data, build

    import bench.training.loop
    from bench.measure.timing import StepTimer
    from bench.recipe.trackers import ProgressTee
    from bench.training.progress import CellProgress

    timers = []

    class Watched(StepTimer):
        inside = False

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            timers.append(self)

        @contextmanager
        def step(self, *a, **k):
            with super().step(*a, **k):
                self.inside = True
                yield
                self.inside = False

    seen = []

    class Tracker:
        def step(self, loss, lr):
            seen.append((timers[0].inside, timers[0].steps, loss, lr))

    monkeypatch.setattr(bench.training.loop, "StepTimer", Watched)
    built, method = build("tiny-bert", {"_target_": "bitfit", "name": "bitfit", "lr": 1e-2})
    tcfg = OmegaConf.merge(TRAIN, {"epochs": 3, "warmup_ratio": 0.2})
    res, timer = bench.training.loop.train_model(built.model, method, _toy_data(), tcfg, torch.device("cpu"), pad_id=0,
                                         progress=ProgressTee(CellProgress("t", mode="off"), Tracker()))
    assert timer is timers[0] and len(seen) == res.steps == 9
    assert [inside for inside, *_ in seen] == [False] * 9  # never inside a timed region
    assert [n for _, n, *_ in seen] == list(range(1, 10))  # the k-th call after the k-th step closed
    assert seen[-1][2] == res.final_loss
    lrs = [lr for *_, lr in seen]  # the rate each step used: warm-up (2 steps) then linear decay
    assert lrs[:3] == pytest.approx([5e-3, 1e-2, 1e-2 * 7 / 7]) and lrs[-1] == pytest.approx(1e-2 / 7)
