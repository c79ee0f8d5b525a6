"""The regression gate on real sweeps: the ci_gate preset (six methods x two tasks on the tiny
random-weight BERT) runs once per module; candidates are that sweep's records, re-run cells with a
method broken on purpose, or copies with a cell removed / a record edited. No mocks: the sweeps run
through `python -m bench`; the gate's checks call `bench.regress`'s command line in this process
(`regress`: same parser, code, output and exit status), and the committed-baseline gate and an exit-2
case run it as `python -m bench.regress`, as a user and `make regress` do (`regress_cli`).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from clitools import run_bench, run_main, run_python

from bench.regress.__main__ import main as regress_main
from bench.regress.check import Settings, metric_tolerance, pooled_std

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "baselines" / "ci_gate.json"
N_CELLS = 12  # tasks sst2,stsb x methods full,head_only,adapter,lora,prompt_tuning,bitfit


def bench_ok(args: list[str], glue_dir: Path, results_dir: Path) -> subprocess.CompletedProcess:
    """`python -m bench` that must succeed, in a fresh interpreter: the gate compares peak RSS with the
    committed baseline's, measured that way (a warm child's resident set holds the test server's imports)."""
    p = run_bench(args, glue_dir, results_dir, timeout=600, fresh=True)
    assert p.returncode == 0, f"bench {args} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def regress(*args) -> subprocess.CompletedProcess:
    """`python -m bench.regress ARGS`'s status and output, computed in this process."""
    return run_main(regress_main, list(args))


def regress_cli(*args) -> subprocess.CompletedProcess:
    """`python -m bench.regress ARGS` in a process of its own, as a user runs it."""
    return run_python(["-m", "bench.regress", *args], timeout=120)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, glue_dir) -> Path:
    """The ci_gate preset, run afresh (exactly what `make regress` runs)."""
    root = tmp_path_factory.mktemp("results")
    bench_ok(["experiment=ci_gate"], glue_dir, root)
    folder = root / "ci_gate"
    assert len(list(folder.glob("*.json"))) == N_CELLS
    return folder


@pytest.fixture(scope="module")
def own_baseline(sweep, tmp_path_factory) -> Path:
    """A baseline saved from the module's sweep (so candidates differ only where a test makes them)."""
    out = tmp_path_factory.mktemp("baselines")
    p = regress("save", sweep, "--name", "mine", "--out", out, "--direction", "both")
    assert p.returncode == 0, p.stderr
    assert f"saved {N_CELLS} cell(s) from {N_CELLS} record(s)" in p.stdout
    return out / "mine.json"


def copy_without(sweep: Path, dest: Path, *cells: str) -> Path:
    """Copy the sweep's records except those of the given `method__task` cells."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sweep.glob("*.json"):
        _, task, label, *_ = f.stem.split("__")
        if f"{label}__{task}" not in cells:
            shutil.copy(f, dest / f.name)
            preds = f.with_name(f.stem + ".predictions.json.gz")
            if preds.exists():  # schema 2: the record names its per-example predictions file
                shutil.copy(preds, dest / preds.name)
    return dest


def edit_record(folder: Path, method: str, task: str, change) -> Path:
    (path,) = folder.glob(f"tiny-bert__{task}__{method}__*.json")
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec))
    return path


# -- the CI gate --------------------------------------------------------------------------------

def test_ci_gate_sweep_passes_against_committed_baseline(sweep):
    doc = json.loads(COMMITTED.read_text())
    assert doc["name"] == "ci_gate" and doc["direction"] == "both" and len(doc["cells"]) == N_CELLS
    # Throughput is shown, not gated: on a shared 2-core machine identical runs differ by 25%+.
    p = regress_cli("check", "--baseline", "ci_gate", sweep, "--report-only", "throughput")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"gate: PASS: {N_CELLS} cell(s) within tolerance" in p.stdout


def test_identical_candidate_passes_everything_gated(sweep, own_baseline):
    p = regress("check", "--baseline", own_baseline, sweep)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"gate: PASS: {N_CELLS} cell(s)" in p.stdout
    assert "(not gated)" not in p.stdout  # same environment: memory and throughput were gated too
    doc = json.loads(own_baseline.read_text())
    cell = next(c for c in doc["cells"] if c["method_label"] == "lora" and c["task"] == "stsb")
    assert cell["metrics"]["pearson"]["n"] == 1 and cell["metrics"]["pearson"]["std"] is None
    assert cell["params"]["trainable"] == 2 * 2 * 2 * 8 * 64 + 65  # L*2*2*r*H + head (H+1)
    assert cell["env"]["torch_threads"] == "1" and len(cell["config_hashes"][0]) == 64


def test_baseline_stores_predictions_that_reproduce_the_metrics(sweep, own_baseline):
    """`save` keeps every cell's per-example predictions beside the baseline, and they are the
    predictions the records were scored on: recomputing each headline from them gives the record's
    number. With one seed per cell the paired test has no seed spread to judge by, so it is skipped
    (named in a note) and the per-cell rules gate alone, as before."""
    from bench.records import schema as R
    from bench.regress.paired import metric_value
    from bench.regress.predictions import record_seed_data

    doc = json.loads(own_baseline.read_text())
    assert doc["predictions"]["n_cells"] == N_CELLS
    assert (own_baseline.parent / doc["predictions"]["file"]).stat().st_size == doc["predictions"]["bytes"] < 100_000
    records, _ = R.load_records(sweep)
    for rec in records:
        data, metric, _, problems = record_seed_data([rec], rec["headline_metric"])
        assert not problems and metric == rec["headline_metric"]
        _, preds, refs = data[rec["seed"]]
        assert metric_value(metric, preds, refs) == pytest.approx(rec["metrics"][metric], abs=1e-9)
    p = regress("check", "--baseline", own_baseline, sweep)
    assert p.returncode == 0
    assert "paired:    headline metric per example on common ids, 0 cell(s) tested" in p.stdout
    assert "paired test skipped: 1 baseline and 1 candidate seed(s): the seed spread needs" in p.stdout


def test_broken_method_fails_and_names_the_cell(sweep, own_baseline, tmp_path, glue_dir):
    cand = copy_without(sweep, tmp_path / "cand" / "ci_gate", "lora__stsb")
    # lora with a learning rate that trains nothing; label=lora keeps the cell's identity.
    bench_ok(["experiment=ci_gate", "task=stsb", "method=lora", "label=lora", "train.lr=1e-9"], glue_dir,
             tmp_path / "cand")
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"gate: FAIL: 1 of {N_CELLS} cell(s) regressed: tiny-bert/lora/stsb" in p.stdout
    # which STS-B metric moves past the floor depends on the subsample (here Spearman); one line per metric
    assert re.search(r"REGRESSED: tiny-bert/lora/stsb\n    - (pearson|spearmanr) ", p.stdout)
    assert re.search(r"^tiny-bert/lora/sst2 +ok ", p.stdout, re.MULTILINE)  # the same method on the other task is fine


def test_parameter_count_change_fails_unless_allowed(sweep, own_baseline, tmp_path, glue_dir):
    cand = copy_without(sweep, tmp_path / "cand" / "ci_gate", "lora__stsb")
    bench_ok(["experiment=ci_gate", "task=stsb", "method=lora", "label=lora", "method.r=4"], glue_dir,
             tmp_path / "cand")
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 1
    assert "trainable parameters 4161 -> 2113 (must match exactly" in p.stdout
    assert "regressed: tiny-bert/lora/stsb" in p.stdout
    # the changed cell ran later, in its own process: its speed is not what this test is about (a 2-core CI
    # machine timed it 28 % slower once), so throughput is reported, not gated
    allowed = regress("check", "--baseline", own_baseline, cand, "--allow-param-change", "lora", "--floor", "1",
                      "--report-only", "throughput")
    assert allowed.returncode == 0, allowed.stdout
    assert "trainable parameters 4161 -> 2113 (allowed by --allow-param-change)" in allowed.stdout


def test_missing_cell_fails_unless_excluded(sweep, own_baseline, tmp_path):
    cand = copy_without(sweep, tmp_path / "cand", "adapter__sst2")
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 1
    assert "MISSING: tiny-bert/adapter/sst2" in p.stdout
    assert "regressed: tiny-bert/adapter/sst2" in p.stdout
    p = regress("check", "--baseline", own_baseline, cand, "--exclude", "*/adapter/sst2")
    assert p.returncode == 0, p.stdout
    assert "(1 excluded)" in p.stdout


def test_failed_cell_fails(sweep, own_baseline, tmp_path):
    cand = copy_without(sweep, tmp_path / "cand")

    def fail(rec):
        rec.update(status="failed", metrics={}, error={"type": "NonFiniteLoss", "message": "loss became nan",
                                                       "phase": "train", "where": "x", "log": "x.log"})
    edit_record(cand, "full", "stsb", fail)
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 1
    assert "FAILED: tiny-bert/full/stsb" in p.stdout and "NonFiniteLoss: loss became nan" in p.stdout
    save = regress("save", cand, "--name", "x", "--out", tmp_path / "bl")
    assert save.returncode == 2 and "tiny-bert/full/stsb" in save.stderr and "--allow-failed" in save.stderr
    save = regress("save", cand, "--name", "x", "--out", tmp_path / "bl", "--allow-failed")
    assert save.returncode == 0 and "left out (no ok record): tiny-bert/full/stsb" in save.stdout


def test_memory_is_gated_only_in_the_same_environment(sweep, own_baseline, tmp_path):
    cand = copy_without(sweep, tmp_path / "cand")
    edit_record(cand, "bitfit", "sst2", lambda r: r["memory"].update(peak_rss_bytes=r["memory"]["peak_rss_bytes"] * 2))
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 1 and "REGRESSED: tiny-bert/bitfit/sst2" in p.stdout
    assert "memory.peak_rss_bytes" in p.stdout and "+100.0%" in p.stdout
    edit_record(cand, "bitfit", "sst2", lambda r: r["env"].update(cpu_model="Some Other CPU"))
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 0, p.stdout
    assert "memory/throughput not gated: environment differs (cpu_model:" in p.stdout
    assert "+100% (not gated)" in p.stdout


def test_unreadable_record_is_reported_not_fatal(sweep, own_baseline, tmp_path):
    cand = copy_without(sweep, tmp_path / "cand")
    (cand / "tiny-bert__sst2__broken__s0__deadbeef.json").write_text('{"schema_version": 1, "status": ')
    p = regress("check", "--baseline", own_baseline, cand)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "unreadable record (ignored):" in p.stdout and "tiny-bert__sst2__broken__s0__deadbeef.json" in p.stdout


@pytest.mark.parametrize("content,expected", [
    ('{"format": "peft-bench-baseline", "cells": [', "not valid JSON (line 1"),
    ('[1, 2]', "expected a JSON object, found list"),
    ('{"format": "something-else", "format_version": 1, "cells": []}', "'format' is 'something-else'"),
    ('{"format": "peft-bench-baseline", "format_version": 1, "cells": []}', "'cells' must be a non-empty list"),
    (('{"format": "peft-bench-baseline", "format_version": 1, "cells": [{"model": "m", "method_label": "lora", '
      '"task": "sst2", "metrics": {"accuracy": {"mean": "high", "n": 1}}, "params": {"trainable": 1}}]}'),
     "cells[0] (m/lora/sst2).metrics.accuracy: expected {mean: number"),
])
def test_malformed_baseline_exit_2(sweep, tmp_path, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    p = regress("check", "--baseline", bad, sweep)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert f"baseline {bad}: {expected}" in p.stderr


def test_unusable_paths_exit_2(sweep, own_baseline, tmp_path):
    p = regress_cli("check", "--baseline", "no_such_baseline", sweep)
    assert p.returncode == 2 and "baseline results/baselines/no_such_baseline.json: no such file" in p.stderr
    assert "ci_gate" in p.stderr  # lists the known baselines
    p = regress("check", "--baseline", own_baseline, tmp_path / "nowhere")
    assert p.returncode == 2 and f"results folder {tmp_path / 'nowhere'} does not exist" in p.stderr
    (tmp_path / "empty").mkdir()
    p = regress("check", "--baseline", own_baseline, tmp_path / "empty")
    assert p.returncode == 2 and "no readable result records under" in p.stderr
    assert "Traceback" not in p.stderr


def test_compare_places_a_method(sweep):
    p = regress("compare", "--method", "lora", sweep)
    assert p.returncode == 0, p.stderr
    assert "[tiny-bert] stsb (pearson)" in p.stdout and "[tiny-bert] avg (sst2, stsb)" in p.stdout
    assert "lora on tiny-bert: on the params/quality frontier for" in p.stdout
    # head_only has the fewest trainable parameters: always on the params frontier.
    head_rows = [ln for ln in p.stdout.splitlines() if ln.split()[:1] == ["head_only"]]
    assert len(head_rows) == 3 and all(ln.split()[-2] == "yes" for ln in head_rows)
    p = regress("compare", "--method", "dora", sweep)
    assert p.returncode == 2 and "method 'dora' has no ok record" in p.stderr


def test_tolerance_pools_seed_std():
    st = Settings(k=3, floor=0.01)
    a, b = {"mean": 0.8, "std": 0.02, "n": 3}, {"mean": 0.7, "std": 0.04, "n": 3}
    assert pooled_std(a, b) == pytest.approx((2 * 0.02**2 + 2 * 0.04**2) ** 0.5 / 2)
    assert metric_tolerance(a, b, st)[0] == pytest.approx(3 * 0.001**0.5)
    one = {"mean": 0.8, "std": None, "n": 1}
    assert metric_tolerance(one, one, st) == (0.01, "floor (n=1)")
    assert metric_tolerance(one, {"mean": 0.8, "std": 0.001, "n": 2}, st)[0] == 0.01  # floor wins
