"""The selection split and the tuning protocol: choices are made on held-out train rows only."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from clitools import TINY, records_in, run_bench, run_python

from bench.data import loading, sampling
from bench.data import tasks as T
from bench.data.readers import Example
from bench.records import schema as R
from bench.sweep.study import choose, lr_grid


def _examples(n: int, n_pos: int) -> list[Example]:
    return [Example(f"row {i}", None, 1 if i < n_pos else 0) for i in range(n)]


def test_selection_is_disjoint_seeded_and_stratified():
    ex = _examples(1000, 300)
    sel, pool = sampling.carve_selection(ex, "classification", 0.1, 1000, seed=3)
    assert len(sel) == 100 and len(pool) == 900
    assert not set(sel) & set(pool) and sorted(sel + pool) == list(range(1000))
    counts = Counter(ex[i].label for i in sel)
    # class proportions of the file (30 % / 70 %) within one example per class
    assert abs(counts[1] - 30) <= 1 and abs(counts[0] - 70) <= 1
    assert sampling.carve_selection(ex, "classification", 0.1, 1000, seed=3) == (sel, pool)
    assert sampling.carve_selection(ex, "classification", 0.1, 1000, seed=4)[0] != sel
    assert len(sampling.carve_selection(ex, "classification", 0.5, 40, seed=0)[0]) == 40  # the cap
    assert sampling.carve_selection(ex, "classification", 0.0, 40, seed=0) == ([], list(range(1000)))


def test_training_subsample_is_nested_and_outside_the_selection_split():
    ex = _examples(500, 250)
    sel, pool = sampling.carve_selection(ex, "classification", 0.1, None, seed=1)
    small, large = sampling.nested_subsample(pool, 50, 1), sampling.nested_subsample(pool, 200, 1)
    assert set(small) <= set(large) and len(small) == 50 and len(large) == 200
    assert not set(large) & set(sel)
    assert sampling.nested_subsample(pool, None, 1) == pool


def test_lr_grid_and_choice():
    g = lr_grid(1e-4, 1e-2, 5)
    assert g == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
    assert choose(g, [0.5, None, 0.7, 0.7, 0.1]) == (1e-3, 2)  # failed trial never wins; tie -> smaller rate
    with pytest.raises(RuntimeError):
        choose(g, [None] * 5)


def _glue_copy(glue_dir: Path, dest: Path, flip_dev: bool) -> Path:
    """SST-2 with the first 3,000 train rows; dev labels inverted when `flip_dev`."""
    (dest / "SST-2").mkdir(parents=True)
    train = (glue_dir / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    (dest / "SST-2" / "train.tsv").write_text("\n".join(train[:3001]) + "\n", encoding="utf-8")
    dev = (glue_dir / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    if flip_dev:
        dev = dev[:1] + [f"{s}\t{1 - int(y)}" for s, y in (line.rsplit("\t", 1) for line in dev[1:])]
    (dest / "SST-2" / "dev.tsv").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return dest


@pytest.mark.slow
def test_dev_labels_never_feed_the_choice(tmp_path, glue_dir):
    """Invert every dev label: the trials' selection scores and the selected rate stay the same,
    the reported dev metric does not."""
    runs = {}
    for flip in (False, True):
        data = _glue_copy(glue_dir, tmp_path / f"glue_{flip}", flip)
        out = tmp_path / f"res_{flip}"
        proc = run_bench(["experiment=study", *TINY, "task=sst2", "method=lora", "study.trials=3", "study.seeds=1",
                          f"task.root={data}"], glue_dir, out, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        sel = json.loads(next((out / "study" / "selected").glob("*.json")).read_text())
        final = [r for r in records_in(out / "study") if r.get("study", {}).get("role") == "final"]
        assert len(final) == 1 and final[0]["train"]["lr"] == sel["selected_lr"]
        runs[flip] = (sel, final[0])
        if not flip:  # the real study's records feed the report: trials only as budget curves
            rep = run_python(["-m", "bench.report", out / "study", "--out", tmp_path / "report"])
            assert rep.returncode == 0, rep.stderr[-2000:]
            budget = (tmp_path / "report" / "budget.csv").read_text().splitlines()
            assert len(budget) == 1 + 3 and all(",lora,study,3," in line for line in budget[1:])
    (sel_a, rec_a), (sel_b, rec_b) = runs[False], runs[True]
    assert sel_a["scores"] == sel_b["scores"] and sel_a["selected_lr"] == sel_b["selected_lr"]
    assert rec_a["selection_metrics"] == rec_b["selection_metrics"]
    assert rec_a["metrics"]["accuracy"] == pytest.approx(1 - rec_b["metrics"]["accuracy"], abs=1e-9)
    assert len(set(sel_a["scores"])) > 1, "the trials should differ, or the test shows nothing"


@pytest.mark.slow
def test_smoke_records_selection_and_predictions(tmp_path, glue_dir):
    """Same selection split for every method of a (task, seed); metrics recomputed from the
    predictions files equal the records'."""
    proc = run_bench(["-m", *TINY, "task=sst2,stsb", "method=lora,head_only", "train.seed=0,1"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = records_in(tmp_path)
    assert len(recs) == 8
    by_task_seed: dict = {}
    for rec in recs:
        sel = rec["data"]["selection"]
        assert sel["examples"] == 64  # 10 % of train, capped by train.max_eval_samples=64
        by_task_seed.setdefault((rec["task"], rec["seed"]), set()).add(sel["fingerprint"])
        preds = R.load_predictions(rec)
        spec_cfg = rec["config"]["task"]
        spec = T.task_spec(spec_cfg)
        dev = preds["splits"]["dev"]
        again = T.evaluate_predictions(spec, "dev", dev["predictions"], dev["references"])
        for k, v in again.items():
            assert v == pytest.approx(rec["metrics"][k], abs=1e-12)
        s = preds["splits"]["selection"]
        assert s["role"] == "selection" and len(s["ids"]) == 64
        again = T.evaluate_predictions(spec, "dev", s["predictions"], s["references"])
        assert again[rec["headline_metric"]] == pytest.approx(rec["selection_metrics"][rec["headline_metric"]])
        # selection rows come from the train file, and none of them was trained on
        train_rows = loading.load_split(spec, "train")
        assert [train_rows[i].label for i in s["ids"]] == pytest.approx(s["references"])
    assert all(len(f) == 1 for f in by_task_seed.values())  # equal across methods
    assert by_task_seed[("sst2", 0)] != by_task_seed[("sst2", 1)]  # but seeded


def test_best_epoch_without_selection_split_is_refused(tmp_path, glue_dir):
    proc = run_bench([*TINY, "task=sst2", "method=lora", "train.eval_every_epoch=true", "train.select=best_epoch",
                      "data.selection.fraction=0"], glue_dir, tmp_path)
    # checked with the settings, before any work: exit 2, the option named, no record written
    assert proc.returncode == 2
    assert "data.selection.fraction" in proc.stdout + proc.stderr
    assert records_in(tmp_path) == []
    assert "Traceback" not in proc.stderr + proc.stdout
