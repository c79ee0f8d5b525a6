"""A study on a tiny model: the search's placed trial goes where bench/sweep/search.propose says, the
record says where the chosen rate lies, and seeds added to a finished study train only the new cells."""
from __future__ import annotations

import json

import pytest
from clitools import TINY, records_in, run_bench

from bench.sweep.search import hard_limits, position, propose, step_ratio
from bench.sweep.study import planned_cells

LOW, HIGH = 1e-4, 1e-2
STUDY = ["experiment=study", *TINY, "task=sst2", "method=lora", "study.trials=3", "study.search.initial=2",
         "study.prune.enabled=false", "train.max_train_samples=32", "train.eval_every_epoch=true",
         "inference.enabled=false", f"study.lr_range=[{LOW},{HIGH}]"]


def _files(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*")
            if p.is_file() and p.parent.name != "selected" and "_hydra" not in p.parts}


@pytest.mark.timeout(1200)
@pytest.mark.slow  # 4 + 1 tiny cells: a few minutes on a busy 2-core machine
def test_search_trial_and_added_seeds_train_only_the_new_cells(tmp_path, glue_dir):
    proc = run_bench([*STUDY, "study.seeds=2"], glue_dir, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records_in(tmp_path / "study")
    trials = sorted((r for r in recs if r["study"]["role"] == "trial"),
                    key=lambda r: r["study"]["trial_index"])
    assert len(trials) == 3  # the budget: 2 rates over the range + 1 placed by the search
    rates = [r["train"]["lr"] for r in trials]
    scores = [r["selection_metrics"]["accuracy"] for r in trials]
    assert rates[:2] == [LOW, HIGH]
    # the placed trial is the search's proposal from the first two scores: past the edge when the
    # best lies there (the hard limit 1e-1 or 1e-5: one step of 100x lands on it), else between them
    want = propose(rates[:2], scores[:2], hard_limits(LOW, HIGH, 10), step_ratio(LOW, HIGH, 2))
    assert want is not None and rates[2] == want[0] and trials[2]["study"]["proposed"] == want[1]
    best_first = rates[0] if scores[0] >= scores[1] else rates[1]
    assert rates[2] == (1e-5 if best_first == LOW else 1e-1)
    sel = json.loads(next((tmp_path / "study" / "selected").glob("*.json")).read_text())
    assert sel["rates"] == rates and sel["position"] == position(rates, scores, hard_limits(LOW, HIGH, 10))
    finals = [r for r in recs if r["study"]["role"] == "final"]
    assert sorted(r["seed"] for r in finals) == [0, 1]
    assert all(r["study"]["selected_position"] == sel["position"] for r in finals)

    # seeds added to the finished study: the existing files stay as they were, one new seed trains
    before = _files(tmp_path / "study")
    more = run_bench([*STUDY, "study.seeds=3"], glue_dir, tmp_path, timeout=600)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "(1 ok, 0 failed, 4 skipped)" in more.stdout + more.stderr
    after = _files(tmp_path / "study")
    assert {k: v for k, v in after.items() if k in before} == before  # not rewritten (same mtimes, bytes)
    new = [records_in(tmp_path / "study")]
    new_finals = [r for r in new[0] if r["study"]["role"] == "final"]
    assert sorted(r["seed"] for r in new_finals) == [0, 1, 2]
    added = sorted(set(after) - set(before))
    assert [p.name for p in added if p.suffix == ".json"] == [
        next(r for r in new_finals if r["seed"] == 2)["_path"].rsplit("/", 1)[-1]]


@pytest.mark.parametrize("study,expected", [
    ({"trials": 6, "seeds": 5, "search": {"initial": 4}, "prune": {"enabled": True, "eta": 4}}, 6 + 4 + 4),
    ({"trials": 6, "seeds": 5, "search": {"initial": 4}, "prune": {"enabled": True, "eta": 4, "noise_z": 0}},
     6 + 1 + 4),
    ({"trials": 4, "seeds": 3}, 4 + 2)])
def test_planned_cells_of_the_search(study, expected):
    assert planned_cells({"study": {"enabled": True, "trial_seed": 0, **study}}) == expected
