"""Fault injection: every fault keeps finished records, says what went wrong, and shows no
traceback on the terminal (the traceback goes to the cell's log)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from clitools import TINY, kill_leftovers, records_in, run_bench, start_bench

SWEEP = ["-m", *TINY, "task=sst2", "method=lora,bitfit,adapter", "sweep_name=s"]
# The `inference` settings are outside the config hash, so a cell held in an endless inference
# warm-up has the identity of the normal cell (which a resume then runs). Holding the second cell
# lets a test signal a sweep mid-cell without guessing how long a cell takes.
HELD = ["inference.warmup=1000000000"]


@pytest.fixture(autouse=True)
def _no_held_cell_outlives_its_test(tmp_path):
    """A held cell never ends by itself: whatever happens in the test, kill what it started."""
    yield
    kill_leftovers(str(tmp_path))


def _no_traceback(proc):
    assert "Traceback" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def _ok(folder):
    return sorted(r["method"] for r in records_in(folder) if r["status"] == "ok")


def _second_cell_held(glue_dir, out):
    """SWEEP's first cell finished, then the sweep started again and left running inside its
    second cell (bitfit), which cannot finish. Returns the running process."""
    first = run_bench([*TINY, "task=sst2", "method=lora", "sweep_name=s"], glue_dir, out)
    assert first.returncode == 0, first.stderr[-2000:]
    proc = start_bench([*SWEEP, *HELD], glue_dir, out)
    deadline = time.monotonic() + 240
    while not any((out / "s").glob("*__bitfit__*.log")):  # the cell's log: its process has started
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "the second cell never started"
        time.sleep(0.05)
    # Past the few statements between creating the log and the cell's own interrupt handling;
    # waiting longer is always safe, as the held cell never ends by itself.
    time.sleep(2.0)
    assert proc.poll() is None
    return proc


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_runs_only_missing_cells(tmp_path, glue_dir):
    proc = _second_cell_held(glue_dir, tmp_path)
    (done,) = records_in(tmp_path / "s")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for p in (tmp_path / "s").glob("*.json"):  # nothing half-written
        json.loads(p.read_text())
    assert records_in(tmp_path / "s") == [done]
    assert len(list((tmp_path / "s").glob("*__bitfit__*.claim"))) == 1  # the killed run's claim (bench/sweep/claims.py)
    again = run_bench(SWEEP, glue_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 ok, 0 failed, 1 skipped" in again.stdout
    assert "taking over a stale claim" in again.stdout + again.stderr  # its processes are gone: taken over
    assert not list((tmp_path / "s").glob("*.claim"))
    assert _ok(tmp_path / "s") == ["adapter", "bitfit", "lora"]
    assert json.loads(Path(done["_path"]).read_text())["finished_at"] == done["finished_at"]  # untouched


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_completes(tmp_path, glue_dir):
    proc = _second_cell_held(glue_dir, tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out + err)[-2000:]
    assert "interrupted" in out + err and "resume" in out + err
    assert "Traceback" not in out + err
    assert {r["method"]: r["status"] for r in records_in(tmp_path / "s")} == {"lora": "ok", "bitfit": "interrupted"}
    again = run_bench(SWEEP, glue_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 ok, 0 failed, 1 skipped" in again.stdout
    assert _ok(tmp_path / "s") == ["adapter", "bitfit", "lora"]


@pytest.mark.slow
def test_nan_loss_fails_its_cell_alone(tmp_path, glue_dir):
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora", "debug.inject_nan_at_step=null,2", "sweep_name=n"],
                     glue_dir, tmp_path)
    assert proc.returncode == 1
    _no_traceback(proc)
    assert "1 ok, 1 failed" in proc.stdout
    assert "loss became nan at step 2" in proc.stdout + proc.stderr
    recs = records_in(tmp_path / "n")
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["type"] == "NonFiniteLoss"
    assert failed[0]["error"]["phase"] == "train" and "bench/training/loop.py" in failed[0]["error"]["where"]
    log = (tmp_path / "n" / failed[0]["error"]["log"]).read_text()
    assert "Traceback" in log and "NonFiniteLoss" in log
    assert [r["status"] for r in recs].count("ok") == 1


@pytest.mark.slow
def test_truncated_record_is_rerun_not_trusted(tmp_path, glue_dir):
    args = [*TINY, "task=sst2", "method=bitfit", "sweep_name=t"]
    assert run_bench(args, glue_dir, tmp_path).returncode == 0
    (rec,) = records_in(tmp_path / "t")
    path = Path(rec["_path"])
    path.write_text(path.read_text()[:200])  # as if edited by hand or cut off by a full disk
    proc = run_bench(args, glue_dir, tmp_path)
    assert proc.returncode == 0 and "1 ok, 0 failed, 0 skipped" in proc.stdout
    assert json.loads(path.read_text())["status"] == "ok"


# Settings that need the built model to check (the method against the backbone, the data files): the cell
# fails in setup with a record. Options the schemas check (train.lr=-1, train.batch_size=0,
# model.pooling=max, typos) exit 2 before any record: tests/test_configs.py.
BAD_SETTINGS = [
    (["method=lora", "method.r=0"], "method.r=0"),
    (["method=adapter", "method.size=0"], "method.size=0"),
    (["method=prompt_tuning", "method.num_virtual_tokens=100", "train.max_seq_len=450"], "method.num_virtual_tokens=100"),
    (["method=lora", "method.target_modules=[nope]"], "nope"),
    (["method=lora", "task=qnli"], "no train split"),
]


# Two cases (a validate and a data failure) go through the command line: its exit code, its terminal, the
# forked cell's record. The other three run in-process through the same executor (bench.sweep.execute,
# isolate=false): what they test is the cell's message and record, not the ~8 s process start.
CLI_CASES = {"method.r=0", "no train split"}


@pytest.mark.parametrize("args,expected", BAD_SETTINGS, ids=[e for _, e in BAD_SETTINGS])
def test_bad_setting_names_the_option(tmp_path, glue_dir, args, expected, caplog):
    base = [*TINY, "task=sst2"] if not any(a.startswith("task=") for a in args) else TINY
    if expected in CLI_CASES:
        proc = run_bench([*base, *args], glue_dir, tmp_path)
        assert proc.returncode == 1
        _no_traceback(proc)
        assert expected in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    else:
        from bench.params import compose_config
        from bench.sweep.execute import execute

        overrides = [*base, *args, "isolate=false"]
        cfg = compose_config([*overrides, f"results_dir={tmp_path}", f"data.glue_dir={glue_dir}"])
        with caplog.at_level(logging.INFO):
            assert execute(cfg, overrides)[0] == "failed"
        assert expected in caplog.text and "Traceback" not in caplog.text, caplog.text[-2000:]
    (rec,) = records_in(tmp_path)
    assert rec["status"] == "failed" and rec["error"]["phase"] in ("validate", "data", "build")
    assert "time" not in rec and rec["metrics"] == {}  # rejected before training: nothing was timed


def test_unknown_method_lists_the_choices(tmp_path, glue_dir):
    proc = run_bench([*TINY, "method=nosuch"], glue_dir, tmp_path)
    assert proc.returncode == 2  # a configuration error like every other, before any work
    text = proc.stdout + proc.stderr
    assert "method=nosuch: no method/nosuch.yaml" in text and "lora" in text and "prompt_tuning" in text
    assert "Traceback" not in text and not list(tmp_path.rglob("*.json"))
    proc = run_bench(["-m", *TINY, "method=lora,lroa"], glue_dir, tmp_path)  # one bad value of a sweep
    assert proc.returncode == 2 and "method=lroa: no method/lroa.yaml; did you mean lora?" in proc.stderr
    assert not list(tmp_path.rglob("*.json"))


def test_malformed_data_file_names_file_and_line(tmp_path, glue_dir):
    data = tmp_path / "glue"
    shutil.copytree(Path(glue_dir) / "STS-B", data / "STS-B")
    train = data / "STS-B" / "train.tsv"
    lines = train.read_text(encoding="utf-8").split("\n")
    cols = lines[5].split("\t")
    cols[-1] = "high"
    lines[5] = "\t".join(cols)
    train.write_text("\n".join(lines), encoding="utf-8")
    proc = run_bench([*TINY, "task=stsb", "method=lora", f"data.glue_dir={data}"], glue_dir, tmp_path / "r")
    assert proc.returncode == 1
    _no_traceback(proc)
    text = proc.stdout + proc.stderr
    assert "train.tsv" in text and "line 6" in text and "high" in text


@pytest.mark.slow
def test_same_seed_same_result(tmp_path, glue_dir):
    recs = []
    for i in range(2):
        proc = run_bench([*TINY, "task=stsb", "method=lora"], glue_dir, tmp_path / str(i))
        assert proc.returncode == 0
        (rec,) = records_in(tmp_path / str(i))
        recs.append(rec)
    assert recs[0]["metrics"] == recs[1]["metrics"]
    assert recs[0]["train"]["final_loss"] == recs[1]["train"]["final_loss"]
    assert recs[0]["train"]["deterministic"] is True


@pytest.mark.slow
def test_out_of_memory_and_killed_cells_fail_alone(tmp_path, glue_dir):
    """An OOM error, and a cell process killed outright (what the kernel's OOM killer does), each
    fail their own cell; the other cell of the sweep finishes."""
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora",
                      "debug.inject_oom_at_step=null,2", "sweep_name=o"], glue_dir, tmp_path)
    assert proc.returncode == 1
    _no_traceback(proc)
    assert "1 ok, 1 failed" in proc.stdout and "OutOfMemoryError" in proc.stdout + proc.stderr
    proc = run_bench(["-m", *TINY, "task=sst2", "method=bitfit",
                      "debug.inject_kill_at_step=2,null", "sweep_name=k"], glue_dir, tmp_path)
    assert proc.returncode == 1
    _no_traceback(proc)
    assert "1 ok, 1 failed" in proc.stdout
    assert "SIGKILL" in proc.stdout + proc.stderr and "out-of-memory" in proc.stdout + proc.stderr
    failed = [r for r in records_in(tmp_path / "k") if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["type"] == "CellProcessDied"
