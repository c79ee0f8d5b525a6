"""Cells that survive a cluster (bench/training/checkpoint.py, training/stop.py, sweep/requeue.py):
a cell stopped by a signal saves its training state, writes an `interrupted` record and leaves no claim;
its relaunch resumes from the checkpoint and ends bit for bit where the uninterrupted cell ends (CPU);
a cell never outlives its sweep; files in a results folder get the umask's mode.

Real parts throughout: the tiny BERT, the GLUE rows, Hydra's config, real signals to real processes."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clitools import TINY, bench_env, kill_leftovers, records_in, start_bench
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from test_grad_accum import data
from test_rung_state import DROPOUT_MODEL, _method

from bench.config.confdir import conf_dir
from bench.models.build import build_cell
from bench.records import schema as R
from bench.records.schema import SCHEMA_VERSION
from bench.training.checkpoint import CellCheckpoint, parse_every
from bench.training.loop import train_model
from bench.training.stop import STOP, Stopped, install_cell_handlers

CELL = [
    "task=sst2",
    "method=lora",
    "train.epochs=2",
    "train.max_train_samples=32",
    "train.batch_size=8",
    "train.eval_every_epoch=true",
    "train.select=best_epoch",
    "inference.enabled=false",
    "progress.mode=off",
    "sweep_name=s",
]


@pytest.fixture(autouse=True)
def _handlers_back():
    """Tests that install the cell's handlers in pytest's own process put the old ones back."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    yield
    for s, h in before.items():
        signal.signal(s, h)
    STOP.reset()


@pytest.fixture(scope="module")
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield lambda overrides=(): compose(config_name="config", overrides=list(overrides))
    GlobalHydra.instance().clear()


def _cell_cfg(composed, tmp, glue_dir, extra=()):
    cfg = composed([*TINY, *CELL, f"results_dir={tmp}", "isolate=false", *extra])
    OmegaConf.update(cfg, "data.glue_dir", str(glue_dir))
    return cfg


def _outcome(folder: Path) -> tuple[dict, dict]:
    (rec,) = [r for r in records_in(folder) if r["status"] == "ok"]
    with gzip.open(Path(rec["_path"]).parent / rec["predictions"]) as fh:
        return rec, json.loads(fh.read())["splits"]


def _same_result(a: dict, b: dict, pa: dict, pb: dict) -> None:
    assert a["run_id"] == b["run_id"]
    for key in ("metrics", "selection_metrics", "metrics_per_epoch", "best_epoch"):
        assert a[key] == b[key], key
    assert a["train"]["final_loss"] == b["train"]["final_loss"] and a["train"]["steps"] == b["train"]["steps"]
    assert pa == pb  # every prediction of every split


@pytest.mark.parametrize(
    "where",
    [
        ["debug.signal_at_step=3"],
        pytest.param(["debug.signal_at_phase=epoch_eval"], marks=pytest.mark.slow),
        pytest.param(["debug.signal_at_phase=eval", "train.checkpoint_every=2"], marks=pytest.mark.slow),
    ],
)
def test_a_stopped_cell_resumes_to_the_uninterrupted_result(composed, tmp_path, glue_dir, where):
    from bench.sweep.execute import execute

    whole = tmp_path / "whole"
    assert execute(_cell_cfg(composed, whole, glue_dir))[0] == "ok"
    stopped = tmp_path / "stopped"
    cfg = _cell_cfg(composed, stopped, glue_dir, where)
    with pytest.raises(Stopped) as info:
        execute(cfg)
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    (rec,) = records_in(stopped / "s")
    assert rec["status"] == "interrupted" and rec["error"]["signal"] == "SIGTERM"
    assert rec["run_id"] == records_in(whole / "s")[0]["run_id"]  # debug.signal_* is outside the config hash
    assert not list((stopped / "s").glob("*.claim"))
    assert list((stopped / "s").glob("*.ckpt")) and rec["error"]["checkpoint"].endswith(".ckpt")
    assert execute(_cell_cfg(composed, stopped, glue_dir, where))[0] == "ok"  # the relaunch, same command
    a, pa = _outcome(whole / "s")
    b, pb = _outcome(stopped / "s")
    _same_result(a, b, pa, pb)
    assert b["checkpoint"]["resumed"] == 1 and a["checkpoint"]["resumed"] == 0
    # a stop in the final evaluation resumes from the state kept at the end of training: nothing trains again
    final_eval = where[0] == "debug.signal_at_phase=eval"
    assert b["checkpoint"]["resumes"][0]["reason"] == ("end of training" if final_eval else "stop signal SIGTERM")
    assert b["schema_version"] == SCHEMA_VERSION and not list((stopped / "s").glob("*.ckpt"))  # removed with the record
    if where == ["debug.signal_at_step=3"]:
        assert b["checkpoint"]["resumes"][0]["from_step"] == 3
        # the steps after the restart are a new warm-up: timed steps = all steps - 2 warm-ups
        assert b["throughput"]["timed_steps"] == a["throughput"]["timed_steps"] - 1


def _train(method: str, checkpoint, signal_at: int | None = None):
    built = build_cell(OmegaConf.create(DROPOUT_MODEL), _method(method), 2, seed=0, max_seq_len=128)
    t = {
        "batch_size": 8,
        "epochs": 2,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "max_grad_norm": 1.0,
        "seed": 3,
        "group_by_length": True,
        "warmup_steps_excluded": 0,
        "eval_batch_size": 64,
    }
    head = built.model.head.out.weight

    def evaluate(epoch):
        score = float(head.detach().norm())
        return {"norm": score}, score

    torch.manual_seed(11)
    res, _ = train_model(
        built.model,
        built.method,
        data(),
        OmegaConf.create(t),
        torch.device("cpu"),
        pad_id=0,
        evaluate_epoch=evaluate,
        checkpoint=checkpoint,
        faults={"signal_at_step": signal_at} if signal_at else None,
    )
    return {n: p.detach().clone() for n, p in built.model.named_parameters()}, res


@pytest.mark.parametrize("method", ["adalora", pytest.param("eva", marks=pytest.mark.slow)])
def test_loop_hooks_resume_bit_for_bit(tmp_path, method):
    """AdaLoRA's rank allocator (importance scores, rank pattern) is in the checkpoint; EVA's data pass
    runs again before the restore, on the same rows in the same order."""
    whole, res_whole = _train(method, None)
    install_cell_handlers()
    ck = tmp_path / "c.ckpt"
    with pytest.raises(Stopped):
        _train(method, CellCheckpoint(ck, "c", "h", "off"), signal_at=res_whole.steps - 2)
    assert ck.is_file()
    STOP.reset()
    cont, res_cont = _train(method, CellCheckpoint(ck, "c", "h", "off"))
    assert all(torch.equal(cont[n], whole[n]) for n in whole)
    assert (
        res_cont.final_loss == res_whole.final_loss
        and res_cont.metrics_per_epoch == res_whole.metrics_per_epoch
    )


def test_checkpoint_settings_leave_the_run_id_alone(composed):
    base = OmegaConf.to_container(composed([*TINY]), resolve=True)
    for extra in (
        ["train.checkpoint_every=off"],
        ["train.checkpoint_every=30s"],
        ["train.checkpoint_every=50"],
        ["debug.signal_at_step=2", "debug.signal=SIGUSR1"],
    ):
        assert R.config_hash(
            OmegaConf.to_container(composed([*TINY, *extra]), resolve=True)
        ) == R.config_hash(base)
    assert parse_every("10m") == {"steps": None, "seconds": 600.0, "auto": False}
    assert (
        parse_every(25)["steps"] == 25
        and parse_every("auto")["auto"]
        and parse_every("off")["seconds"] is None
    )
    with pytest.raises(ValueError, match="train.checkpoint_every='soon'"):
        parse_every("soon")


_WRITER = """
import os, sys, json
os.umask(int(sys.argv[2], 8))
from pathlib import Path
from bench.records import schema as R
from bench.sweep import claims as C
out = Path(sys.argv[1])
R.write_record(out / "r.json", {"a": 1})
R.write_predictions(out / "r.predictions.json.gz", {"splits": {}})
C.acquire(out / "r.claim", 300.0)
open(out / "plain.txt", "w").close()
from safetensors.torch import save_file
from bench.measure.storage import open_like_plain_files
import torch
(out / "delta").mkdir()
save_file({"w": torch.zeros(2)}, str(out / "delta" / "adapter_model.safetensors"))
open_like_plain_files(out / "delta")
"""


@pytest.mark.parametrize("umask,mode", [("022", 0o644), ("002", 0o664)])
def test_results_files_get_the_mode_of_a_plain_open(tmp_path, umask, mode):
    subprocess.run(
        [sys.executable, "-c", _WRITER, str(tmp_path), umask],
        check=True,
        env=bench_env(),
        cwd=Path(__file__).resolve().parents[1],
    )
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.rglob("*") if p.is_file()}
    assert modes == {"r.json": mode, "r.predictions.json.gz": mode, "r.claim": mode, "plain.txt": mode,
                     "adapter_model.safetensors": mode}, modes


def test_a_checkpoint_of_another_run_is_set_aside(tmp_path):
    ck = tmp_path / "c.ckpt"
    torch.save({"format": "something else"}, ck)
    assert CellCheckpoint(ck, "c", "h").load(10, ["w"]) is None and not ck.exists()
    ck.write_bytes(b"\x00truncated")
    assert CellCheckpoint(ck, "c", "h").load(10, ["w"]) is None and not ck.exists()


# ------------------------------------------------------------------------------ whole processes (slow)

HOLD = [
    "task=sst2",
    "method=lora",
    "sweep_name=s",
    "inference.enabled=false",
    "progress.mode=off",
    "train.max_train_samples=2000",
    "train.epochs=50",
    "train.checkpoint_every=5",
]


def _started(glue_dir, out, args=HOLD):
    """A sweep left running inside its cell, past its first checkpoint."""
    proc = start_bench([*TINY, *args], glue_dir, out)
    deadline = time.monotonic() + 240
    while not list((out / "s").glob("*.ckpt")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.1)
    return proc


def _cell_pids(out) -> list[int]:
    """Every process whose command line names this test's results folder (the sweep and its cell)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(out).encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _gone(out, timeout=60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _cell_pids(out):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def _cleanup(tmp_path):
    yield
    kill_leftovers(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_sweep_stops_its_cell_and_leaves_no_claim(tmp_path, glue_dir, _cleanup, sig, code):
    proc = _started(glue_dir, tmp_path)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the whole process group
    else:
        os.kill(proc.pid, sig)  # `kill PID`: the sweep only
    proc.communicate(timeout=120)
    assert proc.returncode == code
    assert _gone(tmp_path), "a process outlived the sweep"
    (rec,) = records_in(tmp_path / "s")
    assert rec["status"] == "interrupted" and rec["error"]["signal"] == signal.Signals(sig).name
    assert not list((tmp_path / "s").glob("*.claim")) and list((tmp_path / "s").glob("*.ckpt"))


@pytest.mark.slow
def test_a_cell_stops_when_its_sweep_is_killed(tmp_path, glue_dir, _cleanup):
    proc = _started(glue_dir, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # the sweep only: the cell is not signalled by anyone but the kernel
    proc.wait()
    assert _gone(tmp_path), "the cell outlived its killed sweep"
    (rec,) = records_in(tmp_path / "s")
    assert rec["status"] == "interrupted" and rec["error"]["signal"] == "SIGTERM"
    assert not list((tmp_path / "s").glob("*.claim"))  # the orphaned cell removed its dead parent's claim


@pytest.mark.slow
def test_sigusr1_checkpoints_and_asks_slurm_to_requeue(tmp_path, glue_dir, _cleanup):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/scontrol.args\n')
    (fake / "scontrol").chmod(0o755)
    env = bench_env(glue_dir, {"PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"})
    from clitools import _bench_args

    proc = subprocess.Popen(
        [sys.executable, *_bench_args([*TINY, *HOLD], tmp_path, "bench")],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not list((tmp_path / "s").glob("*.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGUSR1)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGUSR1
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    (rec,) = records_in(tmp_path / "s")
    assert rec["status"] == "interrupted" and rec["error"]["signal"] == "SIGUSR1"
    assert (
        "stop signal SIGUSR1"
        in torch.load(next((tmp_path / "s").glob("*.ckpt")), weights_only=True)["reason"]
    )
