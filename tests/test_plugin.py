"""The example external method (examples/plugins: LayerNorm tuning) runs through `python -m bench`
with no change to bench/: via `--config-dir` + `method=layernorm_tuning`, and via a plain `_target_`
override; its delta saves and loads through the Method protocol; `bench.regress compare` places it.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from clitools import run_python
from omegaconf import OmegaConf
from tiny import TINY_BERT

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "examples" / "plugins"
L, H = 2, 64  # tiny-bert: 2 layers, hidden 64


def bench(args: list[str], glue_dir: Path, plugins_on_path: bool = True) -> subprocess.CompletedProcess:
    """`python -m bench` with the plugin package on the Python path, or with no path at all."""
    return run_python(["-m", "bench", *args], glue_dir, timeout=600,
                      extra_env={"PYTHONPATH": "examples/plugins" if plugins_on_path else None})


def records(folder: Path) -> dict[str, dict]:
    return {r["method_label"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, glue_dir) -> Path:
    """The plugin next to two built-ins, exactly as examples/plugins/README.md runs it (smaller)."""
    root = tmp_path_factory.mktemp("results")
    p = bench(["--config-dir", "examples/plugins/conf", "-m", "model=tiny_bert", "train=quick", "task=sst2",
               "method=layernorm_tuning,lora,head_only", f"results_dir={root}", "sweep_name=plugin"], glue_dir)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return root / "plugin"


def test_plugin_runs_via_config_dir(sweep):
    recs = records(sweep)
    assert set(recs) == {"layernorm_tuning", "lora", "head_only"}  # built-in groups still resolve: dir was ADDED
    rec = recs["layernorm_tuning"]
    assert rec["status"] == "ok" and rec["method"] == "layernorm_tuning"
    assert rec["config"]["method"]["_target_"] == "bench_plugins.layernorm_tuning.LNTuning"
    # (2 LayerNorms per layer + the embeddings') x (gain + bias) x H, plus the head H*2 + 2.
    assert rec["params"]["trainable_excl_head"] == (2 * L + 1) * 2 * H
    assert rec["params"]["trainable"] == (2 * L + 1) * 2 * H + H * 2 + 2
    assert 0 <= rec["metrics"]["accuracy"] <= 1 and rec["train"]["lr"] == 1e-3


@pytest.mark.slow  # 14 s; the plugin loading path is the config-dir test's (docs/decisions.md)
def test_plugin_runs_via_target_override(tmp_path, glue_dir):
    """No config file at all: remove the method group and give _target_ and settings directly."""
    p = bench(["~method", "+method._target_=bench_plugins.layernorm_tuning.LNTuning", "+method.name=layernorm_tuning",
               "+method.include_embeddings=false", "+method.lr=1e-3", "model=tiny_bert", "train=quick", "task=sst2",
               f"results_dir={tmp_path}"], glue_dir)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (rec,) = records(tmp_path / "adhoc").values()
    assert rec["status"] == "ok" and rec["method"] == "layernorm_tuning"
    # the lr is part of the label too: no config file, so the command line is its one source
    assert rec["method_label"].startswith("layernorm_tuning[") and "include_embeddings=false" in rec["method_label"]
    assert rec["train"]["lr"] == 1e-3
    assert rec["params"]["trainable_excl_head"] == 2 * L * 2 * H


def test_plugin_off_the_path_fails_with_a_clear_message(tmp_path, glue_dir):
    p = bench(["--config-dir", "examples/plugins/conf", "method=layernorm_tuning", "model=tiny_bert", "train=quick",
               "task=sst2", f"results_dir={tmp_path}"], glue_dir, plugins_on_path=False)
    # a method that cannot be imported is a configuration error: caught before any work (exit 2, no record)
    assert p.returncode == 2
    assert not list(tmp_path.rglob("*.json"))
    assert "Traceback" not in p.stderr + p.stdout
    assert "cannot import 'bench_plugins.layernorm_tuning'" in p.stderr + p.stdout
    assert "is its package on the Python path?" in p.stderr + p.stdout


def test_compare_places_the_plugin(sweep):
    p = run_python(["-m", "bench.regress", "compare", "--method", "layernorm_tuning", sweep], timeout=120)
    assert p.returncode == 0, p.stderr
    row = next(ln for ln in p.stdout.splitlines() if ln.startswith("<-"))
    assert row.split()[1:3] == ["layernorm_tuning", "external"]
    assert "layernorm_tuning on tiny-bert: on the params/quality frontier for" in p.stdout


def test_delta_round_trip_and_bench_untouched(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    from bench.methods import build_method
    from bench.models.build import build_cell

    cfg = OmegaConf.load(PLUGINS / "conf" / "method" / "layernorm_tuning.yaml")
    model_cfg = OmegaConf.create(TINY_BERT)
    method = build_method(OmegaConf.to_container(cfg))
    model = build_cell(model_cfg, method, 2, seed=0, max_seq_len=64).model
    names = [n for n, _ in method.trainable_named_parameters(model)]
    assert all("LayerNorm" in n or n.startswith("head.") for n in names) and len(names) == (2 * L + 1) * 2 + 2
    with torch.no_grad():
        for _, p in method.trainable_named_parameters(model):
            p.add_(0.5)
    method.save_delta(model, tmp_path / "delta")
    fresh = build_cell(model_cfg, method, 2, seed=1, max_seq_len=64).model
    method.load_delta(fresh, tmp_path / "delta")
    for (n, a), (_, b) in zip(method.trainable_named_parameters(model), method.trainable_named_parameters(fresh)):
        assert torch.equal(a, b), n
    # Registration is the config's _target_ alone: nothing in bench/ names the plugin.
    hits = [p for p in (REPO / "bench").rglob("*.py") if "bench_plugins" in p.read_text() or "layernorm_tuning" in p.read_text()]
    assert hits == []
