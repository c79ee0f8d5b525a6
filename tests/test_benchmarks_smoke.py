"""Every module of benchmarks/ run cheaply, so that none can break silently again (#23: `make bench`
stopped on an assertion for weeks because nothing ran the benchmarks).

Three levels, cheapest first:
* every module imports and its command line parses (`--help`), all in ONE subprocess (a process per
  module would spend a minute importing torch 19 times); bad input to the scripts that read a
  folder is a clear message, not a traceback; the GPU-only scripts say there is no CUDA device;
* the benchmarks `make bench` runs (bench_overhead, bench_optimizer, bench_trainer,
  bench_measurements; the last two, 55 s together, in `make test-slow`) each do a real run at their
  smallest sizes and print their figures, which
  the tests read back (and check the claims each benchmark makes: identical losses, bit-identical
  weights, equal trainable counts, a known allocation measured as such);
* compare_records on two folders of real records: identical, then one metric changed.
The figures are smoke-sized and mean nothing; `make bench` (benchmarks/run_benchmarks.sh) measures.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from clitools import REPO, TINY, records_in, run_bench, run_python

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

BENCH_DIR = REPO / "benchmarks"
MODULES = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem != "__init__")
# what the suite must cover at least: a module that leaves benchmarks/ must leave this list too
NAMED = {"aa_calibration", "bench_compile", "bench_measurements", "bench_multi_adapter", "bench_optimizer", "bench_overhead",
         "bench_report", "bench_trainer", "compare_records", "cost_pass_check", "gate_aa", "gpu_check",
         "gpu_profile", "inference_aa", "inference_precision", "machine_load", "paired_arms", "protocol_cost", "prune_replay",
         "remeasure_inference", "retention_cost", "seed_scalar_calibration", "seed_verdicts_from_table", "sweep_flops"}
LIBRARY_ONLY = {"machine_load"}  # no command line: the others import it
GPU_ONLY = {"gpu_check": ["--out", "{tmp}/gpu_check"], "gpu_profile": []}
# scripts that read a folder, given an empty one: (argv, what the message must say)
EMPTY_FOLDER = {
    "aa_calibration": (["{tmp}/empty"], "no readable result records"),
    "compare_records": (["{tmp}/empty", "{tmp}/empty"], "no run records"),
    "cost_pass_check": (["{tmp}/empty", "{tmp}/empty"], "no cell of"),
    "gate_aa": (["{tmp}/empty"], "no readable result records"),
    "inference_aa": (["{tmp}/empty"], "no bench_delta.json"),
    "paired_arms": (["{tmp}/empty", "{tmp}/empty"], "no cell in both folders"),
    "prune_replay": (["{tmp}/empty"], "no exhaustive study protocols"),
    "protocol_cost": (["{tmp}/empty"], "no timed study records"),
    "remeasure_inference": (["{tmp}/empty"], "no ok record with an inference section"),
    "retention_cost": (["--results-dir", "{tmp}/empty", "--read-only"], "no rep<k>_off / rep<k>_on sweep"),
}

# Runs each (key, module, argv) in this one process as `python -m module argv` would (runpy, so the
# module's `if __name__ == "__main__"` block runs), output captured per call; argv None = import only.
DRIVER = r'''
import contextlib, importlib, io, json, runpy, sys, traceback, warnings
warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
calls, out_path = json.loads(sys.argv[1]), sys.argv[2]
results = {"_cuda": None}
for key, module, argv in calls:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            if argv is None:
                mod = importlib.import_module(module)
                print("names:", " ".join(sorted(n for n in vars(mod) if not n.startswith("_"))))
            else:
                sys.argv = [module, *argv]
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if isinstance(exc.code, str):
                print(exc.code)
        except BaseException:
            traceback.print_exc()
            rc = "exception"
    results[key] = {"rc": rc, "output": buf.getvalue()}
import torch
results["_cuda"] = torch.cuda.is_available()
with open(out_path, "w") as fh:
    json.dump(results, fh)
'''


@pytest.fixture(scope="module")
def cli_checks(tmp_path_factory, glue_dir) -> dict:
    """Every module's --help, the empty-folder runs and the GPU scripts' no-CUDA runs, in one process."""
    tmp = tmp_path_factory.mktemp("bench_cli")
    (tmp / "empty").mkdir()
    calls = [[f"help:{m}", f"benchmarks.{m}", None if m in LIBRARY_ONLY else ["--help"]] for m in MODULES]
    calls += [[f"empty:{m}", f"benchmarks.{m}", [a.format(tmp=tmp) for a in argv]]
              for m, (argv, _) in EMPTY_FOLDER.items()]
    calls += [[f"nocuda:{m}", f"benchmarks.{m}", [a.format(tmp=tmp) for a in argv]] for m, argv in GPU_ONLY.items()]
    out = tmp / "results.json"
    proc = run_python(["-c", DRIVER, json.dumps(calls), out], glue_dir, timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_benchmark_module_is_covered():
    assert NAMED <= set(MODULES), f"benchmarks/ lost {sorted(NAMED - set(MODULES))}: update this test's list"
    assert set(EMPTY_FOLDER) | set(GPU_ONLY) | LIBRARY_ONLY <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_imports_and_parses_its_command_line(cli_checks, module):
    r = cli_checks[f"help:{module}"]
    assert r["rc"] == 0, f"benchmarks.{module}:\n{r['output'][-3000:]}"
    if module in LIBRARY_ONLY:
        assert "ForeignCPU" in r["output"].split()
    else:
        assert f"usage: {module}.py" in r["output"], r["output"][-2000:]


@pytest.mark.parametrize("module", sorted(EMPTY_FOLDER))
def test_an_empty_folder_is_a_clear_error(cli_checks, module):
    r = cli_checks[f"empty:{module}"]
    assert r["rc"] not in (0, "exception") and "Traceback" not in r["output"], r["output"][-3000:]
    assert EMPTY_FOLDER[module][1] in r["output"], r["output"][-2000:]


@pytest.mark.parametrize("module", sorted(GPU_ONLY))
def test_gpu_scripts_say_there_is_no_cuda(cli_checks, module):
    if cli_checks["_cuda"]:
        pytest.skip(f"CUDA present: run `python -m benchmarks.{module}` itself; the suite checks only its --help")
    r = cli_checks[f"nocuda:{module}"]
    assert r["rc"] == 2 and "Traceback" not in r["output"], r["output"][-3000:]
    assert "no CUDA device" in r["output"]


def _bench(args: list[str], glue_dir, timeout: int = 600):
    proc = run_python(["-m", *args], glue_dir, timeout=timeout, extra_env={"TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow  # 15 s; its import and --help stay in make test, make bench runs it (docs/decisions.md)
def test_bench_overhead_tiny_run(glue_dir):
    out = _bench(["benchmarks.bench_overhead", "--methods", "lora,head_only", "--steps", "3", "--warmup", "1",
                  "--batch-size", "4", "--threads", "1", "--predict-sizes", "50", "--cached-epochs", "1"], glue_dir)
    for method in ("lora", r"head_only \(cache_features=false\)"):
        m = re.search(method + r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+\[[\d., ]+\]\s+[\d.]+\s+[\d.]+\s+(\S+)", out)
        assert m, out[-3000:]
        harness_ms, minimal_ms, ratio, dloss = map(float, m.groups())
        assert harness_ms > 0 and minimal_ms > 0 and ratio == pytest.approx(harness_ms / minimal_ms, rel=0.01)
        assert dloss == 0.0  # the benchmark's premise: both sides compute the same losses
    assert "head_only (cache_features=true)" in out and re.search(r"goal ratio <= 1.05: ", out)


def test_bench_optimizer_tiny_run(glue_dir):
    out = _bench(["benchmarks.bench_optimizer", "--steps", "3", "--threads", "1"], glue_dir)
    rows = re.findall(r"^  (\w+) .*AdamW step\s+([\d.]+) ms\s+clip_grad_norm_\s+([\d.]+) ms\s+weights sha256 (\w+)",
                      out, re.MULTILINE)
    assert [r[0] for r in rows] == ["loop", "foreach", "fused"], out
    assert all(float(r[1]) > 0 for r in rows)
    assert rows[0][3] == rows[1][3]  # foreach (the harness's default) trains bit-identically to the loop


@pytest.mark.slow  # 24 s; its import and --help stay in make test, make bench runs it (docs/decisions.md)
def test_bench_trainer_tiny_run(glue_dir):
    out = _bench(["benchmarks.bench_trainer", "--variants", "bench_noinf,trainer", "--samples", "16",
                  "--max-eval", "16", "--repeats", "1", "--threads", "1"], glue_dir)
    m = re.search(r"bench_noinf / trainer: wall ([\d.]+), in-process ([\d.]+), training loop ([\d.]+)", out)
    assert m and all(float(x) > 0 for x in m.groups()), out[-3000:]
    trainable = dict(re.findall(r"^(bench_noinf|trainer)\s+1\s+(?:[\d.]+\s+){5}(\d+)$", out, re.MULTILINE))
    assert set(trainable) == {"bench_noinf", "trainer"}, out[-3000:]
    assert trainable["bench_noinf"] == trainable["trainer"]  # both sides train the same parameters
    assert dict(re.findall(r"rep 0 (\w+)\s+wall .* threads (\d+),", out)) == {"bench_noinf": "1", "trainer": "1"}


@pytest.mark.slow  # 31 s; its import and --help stay in make test, make bench runs it (docs/decisions.md)
def test_bench_measurements_tiny_run(glue_dir):
    out = _bench(["benchmarks.bench_measurements", "--sections", "memory,known,throughput", "--samples", "48",
                  "--max-eval", "16", "--methods", "lora", "--override", "model=tiny_bert", "--override", "train=quick",
                  "--override", "inference.enabled=false", "--override", "train.threads=1"], glue_dir)
    m = re.search(r"sst2 lora n=48\s+(\d+) MiB\s+(\d+) MiB\s+(\d+) MiB\s+(\d+) MiB\s+([\d.]+)", out)
    assert m, out[-3000:]
    peak, baseline, time_v, outside, _ = map(float, m.groups())
    assert peak > baseline > 0 and time_v > 0 and outside > 0
    assert "breakdown" in out and "kernel check" in out
    known = re.findall(r"VmHWM path.*peak - baseline = ([\d., ]+) MiB", out)
    assert len(known) == 2, out[-3000:]
    for row in known:  # the kernel's high-water mark sees a touched 512 MiB allocation as 512 MiB
        assert all(abs(float(v) - 512) < 512 * 0.02 for v in row.split(",")), row
    assert re.search(r"sst2 lora :\s+[\d.]+ samples/s over \d+ of \d+ steps", out), out[-2000:]


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory, glue_dir) -> Path:
    out = tmp_path_factory.mktemp("compare")
    proc = run_bench([*TINY, "task=sst2", "method=lora", "train.max_train_samples=16", "train.max_eval_samples=16",
                      "inference.enabled=false", "train.threads=1", "sweep_name=one"], glue_dir, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "one"


def test_compare_records_tiny_run(tiny_records, tmp_path, glue_dir):
    before, after = tmp_path / "before", tmp_path / "after"
    shutil.copytree(tiny_records, before)
    shutil.copytree(tiny_records, after)
    proc = run_python(["-m", "benchmarks.compare_records", before, after], glue_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 cells, 1 identical, 0 differing or missing" in proc.stdout
    rec = records_in(after)[0]
    path = Path(rec.pop("_path"))
    rec["metrics"]["accuracy"] += 0.125
    path.write_text(json.dumps(rec))
    proc = run_python(["-m", "benchmarks.compare_records", before, after], glue_dir)
    assert proc.returncode == 1 and "DIFFERS" in proc.stdout and "metrics.accuracy" in proc.stdout, proc.stdout


def test_compare_records_ignores_what_varies_and_pairs_renamed_settings(tiny_records, tmp_path):
    """Timing, memory, the environment, timestamps and each side's own folder do not count; LoRA's older
    setting names pair with peft's; any other field that changes does, run_id included."""
    from benchmarks import compare_records as cr

    before, after = tmp_path / "before" / "records", tmp_path / "after" / "records"
    shutil.copytree(tiny_records, before)
    shutil.copytree(tiny_records, after)
    for side in (before, after):  # each side's records name its own folder, as two revisions' runs do
        own = records_in(side)[0]
        own_path = Path(own.pop("_path"))
        own["config"]["results_dir"] = str(side)
        own_path.write_text(json.dumps(own))
    rec = records_in(after)[0]
    path = Path(rec.pop("_path"))
    rec["time"]["total_s"] += 1.0
    rec["created_at"] = "2099-01-01T00:00:00+00:00"
    rec["env"] = {"host": "elsewhere"}
    rec["memory"]["peak_rss_bytes"] = 1
    method = rec["config"]["method"]
    method["alpha"] = method.pop("lora_alpha")  # the older spelling, as a record written before the rename
    method["dropout"] = method.pop("lora_dropout")
    path.write_text(json.dumps(rec))
    roots = (str(tmp_path / "before"), str(tmp_path / "after"))
    assert cr.compare(before, after, 0.0, False, roots) == 0
    rec["run_id"] += "x"
    rec["train"]["final_loss"] += 1e-9
    path.write_text(json.dumps(rec))
    assert cr.compare(before, after, 0.0, False, roots) == 1
    fb, fa = cr.fields(records_in(before)[0], roots[0]), cr.fields(rec, roots[1])
    assert sorted(k for k in fb if fb[k] != fa.get(k)) == ["run_id", "train.final_loss"]


def test_compare_records_refuses_an_unknown_revision(tmp_path, capsys):
    from benchmarks import compare_records as cr

    assert cr.main(["--revisions", "no-such-revision", "HEAD", "--workdir", str(tmp_path)]) == 2
    assert "no-such-revision" in capsys.readouterr().err


def test_aa_calibration_on_real_prediction_files(tmp_path, capsys):
    """Five seeds of one method (record and predictions files as the harness writes them): every split
    of 2 vs 2 seeds is an A/A comparison, and a method whose seeds are near copies of each other (the
    same 85 % of examples right, a few flipped per seed) must not be called better or worse by the
    seed-aware test; the table names the method and counts the splits (15 for 5 seeds)."""
    import sys as _sys

    import numpy as np

    _sys.path.insert(0, str(Path(__file__).parent))
    import report_fixtures as fx

    from benchmarks import aa_calibration

    refs = fx.pred_references("sst2", 300)
    base = np.where(np.random.default_rng(1).random(300) < 0.85, refs, 1 - refs)
    for seed in range(5):
        p = base.copy()
        flip = np.random.default_rng(100 + seed).choice(300, 6, replace=False)
        p[flip] = 1 - p[flip]
        fx.write_prediction_record(tmp_path / "res", "m", "lora", "sst2", seed, p, refs)
    assert aa_calibration.main([str(tmp_path / "res"), "--b", "300"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| sst2 | lora |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:4] == ["5", "15"]
    assert cells[5].startswith("0/15 = 0 %")  # seed-aware: no false verdict
    assert "one seed against one other seed" in out and "sst2: " in out
