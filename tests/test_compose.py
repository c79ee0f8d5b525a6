"""Composition (issue #17) on real tiny cells run through the CLI: the uniform soup of identical deltas
is that delta, a merge of one task's delta is that delta, a transferred run starts from the source
delta's exact weights, and composed records reference existing source records (refused otherwise).
The sources run through `python -m bench`; one soup runs as `python -m bench.compose`, the other
compositions call the same command line in this process (`compose`: same parser, code and exit status).

Tolerances: averaging in float64 and peft's sqrt(w*s) split of the LoRA scaling round in the last
float32 bit, so tensors are compared with torch.allclose(rtol=1e-5, atol=1e-7); predictions exactly."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from clitools import records_in, run_bench, run_main, run_python
from safetensors.torch import load_file

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

CELL = ["model=tiny_bert", "train=quick", "train.threads=1", "inference.enabled=false", "train.max_train_samples=16",
        "train.max_eval_samples=16"]
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def sources(tmp_path_factory, glue_dir):
    """Kept deltas of LoRA and adapter on SST-2, STS-B and MRPC (seed 0)."""
    results = tmp_path_factory.mktemp("compose")
    p = run_bench(["-m", *CELL, "save_delta=true", "sweep_name=src", "task=sst2,stsb,mrpc", "method=lora,adapter"],
                  glue_dir, results, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = {(r["method"], r["task"]): r for r in records_in(results / "src")}
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs.values())
    return results, recs


def read_csv(path):
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def compose_cli(args, glue_dir):
    """`python -m bench.compose ARGS` in a process of its own, as a user runs it."""
    return run_python(["-m", "bench.compose", *map(str, args)], glue_dir, timeout=600)


def compose(args, glue_dir):
    """`python -m bench.compose ARGS`'s status and output, computed in this process (the GLUE folder is
    the session's, as for the command)."""
    from bench.compose.__main__ import main

    return run_main(main, args, glue_dir)


def report(args):
    """`python -m bench.report ARGS` in this process (its command line runs in tests/test_report.py)."""
    from bench.report.__main__ import main

    return run_main(main, args)


def composed_records(folder):
    return [r for r in records_in(folder) if "composed_from" in r]


def preds(rec, split="dev"):
    path = Path(rec["_path"]).parent / rec["predictions"]
    return json.loads(gzip.open(path).read())["splits"][split]["predictions"]


def lora_updates(delta_dir: Path) -> dict:
    """Effective update B A (alpha/r) of every LoRA layer in a peft adapter folder."""
    cfg = json.loads((delta_dir / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    sd = load_file(str(delta_dir / "adapter_model.safetensors"))
    return {k[: -len(".lora_A.weight")]: sd[k.replace("lora_A", "lora_B")] @ v * scale
            for k, v in sd.items() if k.endswith("lora_A.weight")}


def assert_same_lora(a: Path, b: Path):
    ua, ub = lora_updates(a), lora_updates(b)
    assert set(ua) == set(ub) and ua
    assert any(v.abs().sum() > 0 for v in ua.values())  # trained, not a fresh B = 0
    for k in ua:
        assert torch.allclose(ua[k], ub[k], rtol=RTOL, atol=ATOL), k
    ha, hb = load_file(str(a / "head.safetensors")), load_file(str(b / "head.safetensors"))
    for k in ha:
        assert torch.allclose(ha[k], hb[k], rtol=RTOL, atol=ATOL), k


def test_uniform_soup_of_identical_deltas_equals_the_delta(sources, glue_dir, tmp_path):
    _results, recs = sources
    for method in ("lora", "adapter"):
        src = recs[(method, "sst2")]
        out = tmp_path / method
        run = compose_cli if method == "lora" else compose
        p = run(["soup", src["_path"], src["_path"], src["_path"], "--task", "sst2", "--out", out], glue_dir)
        assert p.returncode == 0, p.stderr[-3000:]
        (rec,) = composed_records(out)
        kept, orig = Path(rec["storage"]["kept_at"]), Path(src["storage"]["kept_at"])
        if method == "lora":
            assert_same_lora(kept, orig)
        else:
            a, b = load_file(str(kept / "delta.safetensors")), load_file(str(orig / "delta.safetensors"))
            assert set(a) == set(b)
            for k in a:
                assert torch.allclose(a[k], b[k], rtol=RTOL, atol=ATOL), k
        assert preds(rec) == preds(src)
        assert rec["metrics"] == src["metrics"]
        if method == "lora":  # the report's soup table: soup == every ingredient: a zero difference, equivalent
            p = report([out, "--out", tmp_path / "report"])
            assert p.returncode == 0, p.stderr[-3000:]
            (row,) = read_csv(tmp_path / "report" / "compose_soups.csv")
            assert row["task"] == "sst2" and row["kind"] == "uniform" and int(row["n_ingredients"]) == 3
            assert float(row["vs_mean_delta"]) == 0.0 and row["vs_mean_verdict"] == "equivalent"
            assert float(row["soup"]) == pytest.approx(float(row["mean_of_seeds"]))


def test_merge_of_one_tasks_delta_equals_the_delta(sources, glue_dir, tmp_path):
    _results, recs = sources
    src = recs[("lora", "stsb")]
    p = compose(["merge", src["_path"], "--method", "linear", "--method", "ties", "--method", "dare_ties",
                 "--out", tmp_path], glue_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    got = composed_records(tmp_path)
    assert sorted(r["composition"]["kind"] for r in got) == ["dare_ties", "linear", "ties"]
    for rec in got:
        assert_same_lora(Path(rec["storage"]["kept_at"]), Path(src["storage"]["kept_at"]))
        assert rec["composition"]["retention"]["ratio"] == pytest.approx(1.0, abs=1e-6)
        # regression scores: equal to float32 rounding of the identical update
        assert preds(rec) == pytest.approx(preds(src), abs=1e-5)


@pytest.mark.slow
def test_multitask_merge_and_records_reference_existing_sources(sources, glue_dir, tmp_path):
    _results, recs = sources
    srcs = [recs[("lora", t)] for t in ("sst2", "stsb", "mrpc")]
    p = compose(["merge", *[s["_path"] for s in srcs], "--method", "linear", "--method", "ties", "--method",
                 "dare_ties", "--density", "0.5", "--out", tmp_path / "lora"], glue_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    adapters = [recs[("adapter", t)]["storage"]["kept_at"] for t in ("sst2", "stsb", "mrpc")]  # delta folders
    p = compose(["merge", *adapters, "--out", tmp_path / "adapter"], glue_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    got = composed_records(tmp_path)
    assert len(got) == 12
    for rec in got:
        assert len(rec["composed_from"]) == 3
        for ref in rec["composed_from"]:
            src = json.loads(Path(ref["record"]).read_text())
            assert src["run_id"] == ref["run_id"] and src["status"] == "ok"
        assert Path(rec["_path"]).parent.joinpath(rec["predictions"]).is_file()
        assert set(rec["selection_metrics"]) and rec["composition"]["retention"]["own"] is not None
        # the composed delta loads with the ordinary loader
        assert Path(rec["storage"]["kept_at"], "bench_delta.json").is_file()
    # the report reads composed records unchanged, and its retention table pairs each merge with its own delta
    p = run_python(["-m", "bench.report", tmp_path / "lora", "--out", tmp_path / "report"], glue_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_csv(tmp_path / "report" / "compose_merge.csv")
    assert sorted((r["kind"], r["task"]) for r in rows) == sorted(
        (k, t) for k in ("linear", "ties", "dare_ties") for t in ("sst2", "stsb", "mrpc"))
    for r in rows:
        assert float(r["retention"]) == pytest.approx(float(r["merged"]) / float(r["own"]))
        assert float(r["delta"]) == pytest.approx(float(r["merged"]) - float(r["own"]), abs=1e-9)
        assert float(r["ci_low"]) <= float(r["delta"]) <= float(r["ci_high"]) and 0 < float(r["p_adjusted"]) <= 1
    assert "compose_merge.csv" in (tmp_path / "report" / "index.html").read_text()


def test_refuses_missing_source_records(sources, glue_dir, tmp_path):
    _results, recs = sources
    src = recs[("lora", "sst2")]
    missing = tmp_path / "nowhere" / "x.json"
    p = compose(["soup", src["_path"], missing, "--out", tmp_path / "o"], glue_dir)
    assert p.returncode == 2 and str(missing) in p.stderr
    # a delta folder whose record is gone: named in the error
    import shutil

    orphan = tmp_path / "sw" / "deltas" / "orphan"
    shutil.copytree(src["storage"]["kept_at"], orphan)
    p = compose(["soup", orphan, "--out", tmp_path / "o"], glue_dir)
    assert p.returncode == 2 and str(tmp_path / "sw" / "orphan.json") in p.stderr
    assert not (tmp_path / "o").exists() or not records_in(tmp_path / "o")


@pytest.mark.slow
def test_transferred_run_starts_from_the_source_deltas_exact_weights(glue_dir, tmp_path):
    from omegaconf import OmegaConf
    from peft import get_peft_model_state_dict

    from bench.data import tasks as T
    from bench.models.build import build_cell, method_from_config
    from bench.recipe.init_from import apply_init_from

    p = compose(["transfer", "--tasks", "mrpc,rte", "--method", "lora", "--budget", "8", "--sweep", "tr",
                 *CELL, f"results_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/_hydra"], glue_dir)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    recs = records_in(tmp_path / "tr")
    assert all(r["status"] == "ok" for r in recs) and len(recs) == 6
    moved = [r for r in recs if (r["train"] or {}).get("init_from")]
    assert sorted(r["method_label"] for r in moved) == ["lora_n8_from_mrpc", "lora_n8_from_rte"]
    by_id = {r["run_id"]: r for r in recs}
    for rec in moved:
        src = by_id[rec["train"]["init_from"]["run_id"]]  # the source record exists in the sweep
        assert src["task"] == rec["train"]["init_from"]["task"] != rec["task"]
        assert rec["data"]["train_examples"] == 8 and src["data"]["train_examples"] == 16
        # rebuild the transferred cell's start (its own recorded config) and compare with the kept delta
        cfg = OmegaConf.create(rec["config"])
        spec = T.task_spec(cfg.task)
        method = method_from_config(cfg, where="test")
        cell = build_cell(cfg.model, method, spec.num_labels, int(cfg.train.seed), int(cfg.train.max_seq_len))
        apply_init_from(cfg, spec, method, cell.model)
        saved = load_file(str(Path(src["storage"]["kept_at"]) / "adapter_model.safetensors"))
        now = get_peft_model_state_dict(cell.model.backbone)
        assert set(now) == set(saved)
        assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)
        for k, v in saved.items():
            assert torch.equal(now[k], v), k
        head = load_file(str(Path(src["storage"]["kept_at"]) / "head.safetensors"))  # mrpc/rte: 2 labels each
        # the transfer command's default (train.init_head=never): the delta moves, the head starts fresh
        assert rec["train"]["init_from"]["head_transferred"] is False
        assert not all(torch.equal(v, head[k]) for k, v in cell.model.head.state_dict().items())
        cfg.train.init_head = "auto"  # same-shaped label spaces: auto loads the source head too
        cell = build_cell(cfg.model, method_from_config(cfg, where="test"), spec.num_labels, int(cfg.train.seed),
                          int(cfg.train.max_seq_len))
        assert apply_init_from(cfg, spec, cell.method, cell.model)["head_transferred"] is True
        for k, v in cell.model.head.state_dict().items():
            assert torch.equal(v, head[k]), k
    # the report pairs each transfer arm with the scratch arm of its target, and draws the heatmap
    p = run_python(["-m", "bench.report", tmp_path / "tr", "--out", tmp_path / "report"], glue_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_csv(tmp_path / "report" / "compose_transfer.csv")
    assert sorted((r["source"], r["target"]) for r in rows) == [("mrpc", "rte"), ("rte", "mrpc")]
    scratch = {r["task"]: r for r in recs if r["method_label"] == "lora_n8"}
    for r in rows:
        assert int(r["budget"]) == 8 and int(r["n_seeds"]) == 1
        hm = scratch[r["target"]]["headline_metric"]
        assert float(r["scratch"]) == pytest.approx(scratch[r["target"]]["metrics"][hm])
        assert float(r["delta"]) == pytest.approx(float(r["transfer"]) - float(r["scratch"]), abs=1e-9)
    assert (tmp_path / "report" / "plots" / "transfer__tiny-bert__lora__n8.png").is_file()


def test_sources_found_beside_their_record_when_kept_at_does_not_resolve(sources, glue_dir, tmp_path):
    """A run with a relative results_dir writes kept_at relative to where it started; read from
    another directory (or after the results moved) the delta beside the record is used."""
    import shutil

    _results, recs = sources
    src = recs[("lora", "sst2")]
    moved = tmp_path / "elsewhere" / "src"
    moved.mkdir(parents=True)
    for name in (Path(src["_path"]).name, src["predictions"]):
        shutil.copy(Path(src["_path"]).parent / name, moved / name)
    shutil.copytree(src["storage"]["kept_at"], moved / "deltas" / src["run_id"])
    rec = json.loads((moved / Path(src["_path"]).name).read_text())
    rec["storage"]["kept_at"] = f"results/src/deltas/{src['run_id']}"  # as a relative results_dir writes it
    (moved / Path(src["_path"]).name).write_text(json.dumps(rec))
    p = compose(["soup", moved / Path(src["_path"]).name, "--task", "sst2", "--out", tmp_path / "o"], glue_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    (got,) = composed_records(tmp_path / "o")
    assert got["composed_from"][0]["delta"] == str((moved / "deltas" / src["run_id"]).resolve())
