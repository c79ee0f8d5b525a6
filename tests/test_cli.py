"""The Hydra app end to end: one cell, a multirun, resume, the record's contents."""
from __future__ import annotations

import os

import pytest
from clitools import TINY, records_in, run_bench

from bench.cores import usable_cores

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds


@pytest.fixture(scope="module")
def two_cell_sweep(tmp_path_factory, glue_dir):
    out = tmp_path_factory.mktemp("sweep")
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,bitfit", "sweep_name=two"], glue_dir, out)
    return out, proc


def test_two_cell_multirun_writes_two_ok_records(two_cell_sweep):
    out, proc = two_cell_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records_in(out / "two")
    assert sorted(r["method"] for r in recs) == ["bitfit", "lora"]
    assert all(r["status"] == "ok" for r in recs)
    # the end-of-sweep summary names both cells and the counts
    assert "2 ok, 0 failed, 0 skipped" in proc.stdout


REQUIRED = {
    "schema_version", "status", "model", "task", "method", "method_label", "seed", "config", "config_hash",
    "metrics", "params", "memory", "throughput", "time", "storage", "env",
}


def test_record_has_every_measurement(two_cell_sweep):
    out, _ = two_cell_sweep
    rec = next(r for r in records_in(out / "two") if r["method"] == "lora")
    assert REQUIRED <= set(rec)
    assert 0.0 <= rec["metrics"]["accuracy"] <= 1.0
    p = rec["params"]
    assert p["trainable"] == p["trainable_excl_head"] + p["head"] and 0 < p["trainable_pct"] < 100
    assert rec["memory"]["peak_rss_bytes"] >= rec["memory"]["baseline_rss_bytes"] > 0
    assert rec["throughput"]["train_samples_per_s"] > 0 and rec["throughput"]["timed_steps"] >= 1
    assert rec["time"]["train_s"] > 0 and rec["time"]["eval_s"] > 0
    assert rec["storage"]["bytes"] > 4 * p["trainable"]  # fp32 tensors + safetensors/peft headers
    for key in ("python", "torch", "transformers", "peft", "device", "torch_threads", "cpu_model", "git_commit"):
        assert key in rec["env"]
    assert rec["config"]["method"]["r"] == 8 and rec["config"]["task"]["name"] == "sst2"
    # run control stays out of the config the user composed; how many cells ran at once is recorded
    assert not any(k.startswith("_") for k in rec["config"]) and rec["env"]["parallel_cells"] == 1


@pytest.mark.slow
def test_resume_skips_done_cells_and_reruns_changed_ones(two_cell_sweep, glue_dir):
    out, _ = two_cell_sweep
    before = {r["_path"]: r["finished_at"] for r in records_in(out / "two")}
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,bitfit", "sweep_name=two"], glue_dir, out)
    assert proc.returncode == 0
    assert "0 ok, 0 failed, 2 skipped" in proc.stdout
    assert {r["_path"]: r["finished_at"] for r in records_in(out / "two")} == before
    # a changed setting is a different cell: it runs, the old record stays
    proc = run_bench([*TINY, "task=sst2", "method=lora", "method.r=4", "sweep_name=two"], glue_dir, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = sorted(r["method_label"] for r in records_in(out / "two"))
    assert labels == ["bitfit", "lora", "lora[r=4]"]


def test_typed_and_swept_override_are_one_cell(tmp_path, glue_dir):
    """`train.lr=1e-4` typed, then in a sweep (where Hydra passes it on as 0.0001): one label, so the
    sweep finds the typed run's record and skips it."""
    args = [*TINY, "task=sst2", "method=bitfit", "train.lr=1e-4", "train.threads=1", "sweep_name=lab"]
    first = run_bench(args, glue_dir, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_bench(["-m", *args], glue_dir, tmp_path)
    assert again.returncode == 0 and "0 ok, 0 failed, 1 skipped" in again.stdout, again.stdout[-2000:]
    (rec,) = records_in(tmp_path / "lab")
    assert rec["method_label"] == "bitfit[lr=0.0001]"


def test_custom_csv_task_runs_without_code_change(tmp_path, glue_dir):
    proc = run_bench([*TINY, "task=example_csv", "method=head_only"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = records_in(tmp_path)
    assert rec["task"] == "example_csv" and rec["status"] == "ok"
    # 28 train rows: 10 % (3) held out as the selection split, the other 25 trained on
    assert rec["data"]["selection"]["examples"] == 3 and rec["data"]["train_examples"] == 25


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_cells(tmp_path, glue_dir):
    """The cluster path (submitit), run locally: each cell in its own process, both records land."""
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,bitfit", "hydra/launcher=local_jobs",
                      "sweep_name=sub"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records_in(tmp_path / "sub")
    assert sorted(r["method"] for r in recs) == ["bitfit", "lora"]
    assert all(r["status"] == "ok" and r["env"]["torch_threads"] == 1 for r in recs)
    assert "2 ok, 0 failed" in proc.stdout


def test_parallel_launcher_setting_splits_the_process_cores():
    """What the joblib launcher's cells are told (the launcher itself: the slow test below): n_jobs cells
    share the cores of this process's affinity mask, and a narrower mask means fewer threads."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from bench.cli import _parallel_cells
    from bench.config.confdir import conf_dir
    from bench.recipe.runtime import resolve_threads

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"])
    GlobalHydra.instance().clear()
    hc = OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": cfg.hydra.launcher})
    assert _parallel_cells(hc) == 2 and resolve_threads("auto", 2) == max(1, usable_cores() // 2)
    assert _parallel_cells(OmegaConf.create({"mode": "RunMode.RUN", "launcher": cfg.hydra.launcher})) == 1
    assert resolve_threads(3, 2) == 3  # an integer is taken as given
    cores = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cores)})  # as under `taskset -c 0` or a one-core cpuset
        assert usable_cores() == 1 and resolve_threads("auto", 1) == 1
    finally:
        os.sched_setaffinity(0, cores)
    assert usable_cores() == len(cores)


@pytest.mark.slow  # joblib's loky starts fresh interpreters (~25 s); the setting's effect is the test above
def test_parallel_launcher_splits_threads(tmp_path, glue_dir):
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,bitfit", "hydra/launcher=parallel",
                      "hydra.launcher.n_jobs=2", "sweep_name=par"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records_in(tmp_path / "par")
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    assert all(r["env"]["torch_threads"] == max(1, usable_cores() // 2) for r in recs)  # this process's cores
    assert all(r["env"]["parallel_cells"] == 2 and "_parallel_cells" not in r["config"] for r in recs)
