"""A method is its YAML: a tuner added by one file in the user's own config folder joins the experiments that
select its declared tag, with its declared search range, and `bench ls methods` lists it; what it declares
never enters a run's identity, so every committed record still hashes to its run id."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import REPO, run_bench, run_python

from bench.config.listing import listing
from bench.config.method_tags import search_dirs, tagged
from bench.errors import ConfigError
from bench.records.schema import config_hash

NEW_TUNER = """# My VeRA: a user's own tuner, one YAML and nothing else.
_target_: bench.methods.PeftTuner
name: myvera
peft_type: vera
lr: 0.01
r: 16
lr_range: [2.0e-3, 2.0e-1]
tags: [catalogue, mine]
"""


@pytest.fixture
def user_conf(tmp_path) -> Path:
    (tmp_path / "conf" / "method").mkdir(parents=True)
    (tmp_path / "conf" / "method" / "myvera.yaml").write_text(NEW_TUNER)
    return tmp_path / "conf"


def test_a_tuner_added_by_one_yaml_joins_smoke_and_catalogue(user_conf, tmp_path):
    """Hydra itself resolves the experiments' method lists with the user's folder on the search path."""
    for preset in ("smoke", "catalogue"):
        proc = run_python(["-m", "bench", f"experiment={preset}", "--config-dir", user_conf, "--cfg", "hydra",
                           "--resolve"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("method:"))
        methods = line.split(":", 1)[1].strip().split(",")
        assert "myvera" in methods and "vera" in methods and "lora_moe" not in methods, line
    builtin = len(list((search_dirs()[0] / "method").glob("*.yaml")))
    assert listing("methods", [user_conf])[-1].startswith(f"({builtin + 1} methods")
    line = next(x for x in listing("methods", [user_conf]) if x.startswith("myvera "))
    assert "[catalogue, mine]" in line and "lr 2e-03..2e-01" in line and "a user's own tuner" in line


@pytest.mark.slow
def test_a_declared_tag_selects_and_trains_the_new_tuner(user_conf, glue_dir, tmp_path):
    """One real multirun over an experiment that selects by tag: the sweeper resolves the list, the cell trains
    with the declared name, and the declarations do not reach the method's class."""
    (user_conf / "experiment").mkdir()
    (user_conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n      method: ${methods_tagged:mine}\n")
    proc = run_bench(["--config-dir", user_conf, "experiment=mine", "model=tiny_bert", "train=quick", "task=sst2",
                      "train.max_train_samples=16", "train.max_eval_samples=16", "inference.enabled=false"],
                     glue_dir, tmp_path / "res")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "res").rglob("*__s0__*.json")]
    assert [(r["method"], r["status"]) for r in records] == [("myvera", "ok")]
    assert records[0]["config"]["method"]["tags"] == ["catalogue", "mine"]


def test_a_tag_nobody_declares_is_a_named_error():
    with pytest.raises(ConfigError, match=r"no method config declares `tags: \[nobody\]`"):
        tagged("nobody", search_dirs())


def test_what_a_method_declares_is_not_part_of_its_identity():
    cfg = {"method": {"name": "vera", "lr": 0.01, "r": 16}, "train": {"seed": 0}}
    declared = {"method": dict(cfg["method"], lr_range=[1e-3, 1e-1], tags=["catalogue"]), "train": {"seed": 0}}
    assert config_hash(cfg) == config_hash(declared)
    assert config_hash(cfg) != config_hash({**cfg, "method": dict(cfg["method"], r=32)})


def test_every_committed_record_still_hashes_to_its_run_id():
    """Run ids are stable: re-hashing each record's stored config under today's rules gives its stored hash and
    the hash suffix of its run id (results/catalogue: 816 records written by earlier versions)."""
    checked, wrong = 0, []
    for path in sorted((REPO / "results").rglob("*.json")):
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict) or "run_id" not in rec or "config" not in rec:
            continue
        checked += 1
        digest = config_hash(rec["config"])
        if digest != rec.get("config_hash") or not rec["run_id"].endswith(digest[:8]):
            wrong.append(path.name)
    assert checked >= 800 and not wrong, (checked, wrong[:5])
