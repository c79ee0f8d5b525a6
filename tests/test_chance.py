"""Chance (issue #25): trivial baselines from real GLUE dev labels, the test against chance in the
report, collapse warnings in records, and the selection score that collapse cannot win.

Expected values are recomputed here from the raw dev files (csv module) or known by construction
(a model trained on one class predicts one class; a learning rate of 1e-9 learns nothing)."""
from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from clitools import TINY, records_in, run_bench, run_python

from bench.analysis import chance
from bench.data import tasks as T
from bench.records.results import selection_keys, selection_score
from bench.records.schema import config_hash
from bench.report import generate_report

sys.path.insert(0, str(Path(__file__).parent))
import report_fixtures as fx


def dev_labels(glue_dir: Path, folder: str, column: str) -> np.ndarray:
    with open(glue_dir / folder / "dev.tsv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return np.asarray([float(r[column]) for r in rows])


def by_name(baselines) -> dict:
    return {b.name: b for b in baselines}


# ------------------------------------------------------------------------- baselines on real labels


def test_mrpc_majority_is_always_equivalent(glue_dir):
    ref = dev_labels(glue_dir, "MRPC", "Quality")
    assert len(ref) == 408 and int(ref.sum()) == 279
    b = by_name(chance.trivial_baselines("classification", ref, ["f1", "accuracy"]))
    assert set(b) == {"majority", "label_prior"}  # class 1 is the majority: always_positive is the same
    assert b["majority"].scores["accuracy"] == pytest.approx(279 / 408)  # 68.4
    assert b["majority"].scores["f1"] == pytest.approx(2 * 279 / (2 * 279 + 129))  # 81.2
    assert round(100 * b["majority"].scores["f1"], 1) == 81.2 and round(100 * b["majority"].scores["accuracy"], 1) == 68.4
    p = 279 / 408
    prior = b["label_prior"]
    assert prior.scores["accuracy"] == pytest.approx(p * p + (1 - p) ** 2, abs=0.005)  # E[acc] = sum p_c^2
    assert prior.low["accuracy"] < prior.scores["accuracy"] < prior.high["accuracy"] < b["majority"].scores["accuracy"]
    assert chance.chance_constant(list(b.values()), "f1").name == "majority"


def test_cola_constant_has_mcc_zero_and_stsb_constant_is_undefined(glue_dir):
    with open(glue_dir / "CoLA" / "dev.tsv", encoding="utf-8") as fh:  # no header: the label is column 2
        cola = np.asarray([float(line.split("\t")[1]) for line in fh if line.strip()])
    b = by_name(chance.trivial_baselines("classification", cola, ["matthews_correlation", "accuracy"]))
    assert b["majority"].scores["matthews_correlation"] == 0.0
    assert b["majority"].scores["accuracy"] == pytest.approx(max(cola.mean(), 1 - cola.mean()))
    assert abs(b["label_prior"].scores["matthews_correlation"]) < 0.01
    assert b["label_prior"].low["matthews_correlation"] < 0 < b["label_prior"].high["matthews_correlation"]
    stsb = dev_labels(glue_dir, "STS-B", "score")
    s = by_name(chance.trivial_baselines("regression", stsb, ["pearson", "spearmanr"]))
    assert np.isnan(s["constant_mean"].scores["pearson"]) and "undefined" in s["constant_mean"].undefined["pearson"]
    assert s["constant_mean"].predictions[0] == pytest.approx(stsb.mean())
    half = 1.96 / np.sqrt(len(stsb))  # a shuffled predictor's r is ~N(0, 1/n)
    assert s["label_prior"].low["pearson"] == pytest.approx(-half, abs=0.015)
    assert s["label_prior"].high["pearson"] == pytest.approx(half, abs=0.015)


def test_always_positive_wins_f1_when_positives_are_the_minority():
    ref = np.array([1.0] * 37 + [0.0] * 63)  # QQP-like: 37 % duplicates
    b = by_name(chance.trivial_baselines("classification", ref, ["f1", "accuracy"]))
    assert b["majority"].scores["f1"] == 0.0 and b["majority"].scores["accuracy"] == pytest.approx(0.63)
    assert b["always_positive"].scores["f1"] == pytest.approx(2 * 0.37 / 1.37)
    assert chance.chance_constant(list(b.values()), "f1").name == "always_positive"
    assert chance.chance_constant(list(b.values()), "accuracy").name == "majority"


def test_collapse_rule():
    ref = np.array([0.0, 1.0] * 50)
    one = chance.collapse_of("classification", np.ones(100), ref)
    assert one["collapsed"] and one["top_share"] == 1.0 and one["reference_share"] == 0.5
    assert not chance.collapse_of("classification", np.r_[np.ones(97), np.zeros(3)], ref)["collapsed"]
    assert chance.collapse_of("classification", np.r_[np.ones(98), np.zeros(2)], ref)["collapsed"]
    y = np.linspace(0, 5, 100)
    assert chance.collapse_of("regression", 2.5 + 0.01 * y, y)["collapsed"]
    assert not chance.collapse_of("regression", y + np.sin(y), y)["collapsed"]


# ------------------------------------------------------------------------------- selection score


def test_selection_score_of_mrpc_is_glue_task_score(glue_dir):
    from bench.params import compose_config

    spec = T.task_spec(compose_config(["task=mrpc", f"data.glue_dir={glue_dir}"]).task)
    assert T.selection_keys(spec) == ["f1", "accuracy"]
    collapsed, learned = {"f1": 0.812, "accuracy": 0.684}, {"f1": 0.80, "accuracy": 0.72}
    assert collapsed["f1"] > learned["f1"]  # the old rule (headline F1) picks the collapsed run ...
    assert T.selection_score(spec, learned) > T.selection_score(spec, collapsed)  # ... the new one does not
    assert selection_score(selection_keys({"select_metric": ["f1", "accuracy"]}, "f1"), collapsed) == pytest.approx(0.748)
    sst2 = T.task_spec(compose_config(["task=sst2", f"data.glue_dir={glue_dir}"]).task)
    assert T.selection_keys(sst2) == ["accuracy"]  # default: the headline
    with pytest.raises(ValueError, match="select_metric"):
        T.task_spec(compose_config(["task=mrpc", f"data.glue_dir={glue_dir}", "task.select_metric=pearson"]).task)


def test_select_metric_changes_the_hash_only_under_best_epoch():
    base = {"task": {"name": "mrpc", "headline": "f1"}, "train": {"select": "last"}}
    with_sel = json.loads(json.dumps(base))
    with_sel["task"]["select_metric"] = ["f1", "accuracy"]
    assert config_hash(base) == config_hash(with_sel)  # select=last: the default sweep's cells stay themselves
    base["train"]["select"] = with_sel["train"]["select"] = "best_epoch"
    assert config_hash(base) != config_hash(with_sel)


# ---------------------------------------------------------------------- report: chance rows, verdicts


def _constant_results(root: Path) -> None:
    """sst2 (fixture references): 'always1' predicts class 1 everywhere (3 seeds), chance/chance_copy
    are seeded noise: no method learns the task."""
    refs = fx.pred_references("sst2")
    for seed in fx.SEEDS:
        fx.write_prediction_record(root, "tiny-bert", "always1", "sst2", seed, np.ones(len(refs)), refs)
        for label in ("chance", "chance_copy"):
            fx.write_prediction_record(root, "tiny-bert", label, "sst2", seed, fx.pred_predictions("chance", "sst2", seed),
                                       refs)


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_task_where_nothing_is_above_chance_gets_no_verdict(tmp_path):
    _constant_results(tmp_path / "results")
    rep = generate_report(tmp_path / "results", tmp_path / "out")
    rows = csv_rows(rep.out / "table.csv")
    refs = fx.pred_references("sst2")
    major = next(r for r in rows if r["row_type"] == "chance" and r["method"] == "majority")
    assert float(major["headline_mean"]) == pytest.approx(max(refs.mean(), 1 - refs.mean()))
    assert {r["method"] for r in rows if r["row_type"] == "chance"} == {"majority", "label_prior"}
    cells = {r["method_label"]: r for r in rows if r["row_type"] == "cell"}
    assert all(c["above_chance"] == "False" for c in cells.values())
    assert cells["always1"]["collapsed_seeds"] == "3" and "100.0% of 400 predictions are class 1" in \
        cells["always1"]["collapse_warnings"]
    assert cells["chance"]["collapsed_seeds"] == "0"
    md = (rep.out / "table.md").read_text()
    assert "no method learned this task at this budget" in md
    main = md.split("## Pairwise verdicts")[0]
    assert "**" not in main  # nothing bold: no method is tied with a best that learned nothing
    assert "| majority |" in main and "† (collapsed 3/3)" in main
    html = (rep.out / "index.html").read_text()
    assert "no method learned this task at this budget" in html and "label_prior" in html


def test_verdict_fixture_marks_only_the_learners_above_chance(tmp_path):
    fx.write_prediction_results(tmp_path / "results")
    rep = generate_report(tmp_path / "results", tmp_path / "out")
    cells = {(r["method_label"], r["task"]): r for r in csv_rows(rep.out / "table.csv") if r["row_type"] == "cell"}
    assert cells[("oracle", "sst2")]["above_chance"] == "True" and float(cells[("oracle", "sst2")]["chance_p_adjusted"]) < 0.05
    assert cells[("oracle", "stsb")]["chance_baseline"] == "constant_mean"
    assert float(cells[("oracle", "stsb")]["chance_delta"]) == pytest.approx(1.0)  # r = 1 vs a constant's 0
    assert cells[("chance", "stsb")]["above_chance"] == "False"
    assert cells[("legacy", "sst2")]["above_chance"] == ""  # no predictions: not tested, not marked
    ranks = rep.agg.ranks.set_index(["method_label", "task"])
    assert not ranks.loc[("chance", "sst2"), "tied_best"] and ranks.loc[("oracle", "sst2"), "tied_best"]


# ---------------------------------------------------------------- real cells: learners and collapses


def _one_class_task(tmp_path: Path) -> Path:
    """The example_csv task with every training row 'positive' and a mixed dev split."""
    src = Path(__file__).resolve().parents[1] / "examples" / "data"
    root = tmp_path / "oneclass"
    root.mkdir()
    with open(src / "sentiment_train.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(root / "sentiment_train.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([dict(r, sentiment="positive") for r in rows])
    (root / "sentiment_dev.csv").write_text((src / "sentiment_dev.csv").read_text(encoding="utf-8"), encoding="utf-8")
    return root


def test_a_constant_predictor_record_carries_the_collapse_warning(tmp_path, glue_dir):
    """A model trained on one class only predicts that class: its record says so, and the cell's
    log line warns."""
    root = _one_class_task(tmp_path)
    res = run_bench([*TINY, "task=example_csv", f"task.root={root}", "method=head_only", "train.lr=0.5",
                     "train.epochs=3", "data.selection.fraction=0.2", "inference.enabled=false"], glue_dir,
                    tmp_path / "results")
    assert res.returncode == 0, res.stderr[-3000:]
    (rec,) = records_in(tmp_path / "results")
    assert rec["collapse"]["splits"]["dev"]["top_share"] == 1.0
    assert any(w.startswith("collapsed: dev: 100.0% of") for w in rec["collapse"]["warnings"])
    assert any(w.startswith("collapsed: selection:") for w in rec["collapse"]["warnings"])
    assert "collapsed: dev" in res.stderr + res.stdout  # the cell's log line
    assert "collapsed" in res.stdout.split("headline", 1)[1]  # the end-of-sweep table
    gate = [run_python(["-m", "bench.regress", *a], timeout=120) for a in
            (["save", tmp_path / "results", "--name", "one", "--out", tmp_path / "base"],
             ["check", "--baseline", tmp_path / "base" / "one.json", tmp_path / "results"])]
    assert gate[0].returncode == 0 and gate[1].returncode == 0, gate[0].stderr + gate[1].stdout + gate[1].stderr
    assert "WARNING seed 0 collapsed: dev: 100.0% of" in gate[1].stdout  # the gate's output, not a failure


@pytest.mark.slow
def test_trained_lora_is_above_chance_and_a_frozen_one_is_not(tmp_path, glue_dir):
    """MiniLM on SST-2: LoRA with 500 rows x 2 epochs learns (above the majority class, no collapse);
    the same cell at lr 1e-9 does not move from its initialisation and is not above chance."""
    common = ["model=minilm", "task=sst2", "method=lora", "train.max_eval_samples=300", "train.max_seq_len=64",
              "data.selection.fraction=0", "inference.enabled=false", "sweep_name=chance"]
    res = run_bench([*common, "train.max_train_samples=500", "train.epochs=2"], glue_dir, tmp_path / "results",
                    timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_bench([*common, "train.max_train_samples=32", "train.epochs=1", "train.lr=1e-9", "label=frozen"],
                    glue_dir, tmp_path / "results", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = {r["method_label"]: r for r in records_in(tmp_path / "results")}
    assert recs["lora"]["collapse"]["warnings"] == []
    rep = generate_report(tmp_path / "results", tmp_path / "out")
    rows = csv_rows(rep.out / "table.csv")
    cells = {r["method_label"]: r for r in rows if r["row_type"] == "cell"}
    assert cells["lora"]["above_chance"] == "True", cells["lora"]
    assert cells["frozen"]["above_chance"] == "False", cells["frozen"]
    # the majority row is the majority share of the references the records carry
    with gzip.open(tmp_path / "results" / "chance" / recs["lora"]["predictions"]) as fh:
        refs = np.asarray(json.load(fh)["splits"]["dev"]["references"])
    major = next(r for r in rows if r["row_type"] == "chance" and r["method"] == "majority")
    assert float(major["headline_mean"]) == pytest.approx(max(refs.mean(), 1 - refs.mean()))
    assert float(cells["lora"]["headline_mean"]) > float(major["headline_mean"]) + 0.1
