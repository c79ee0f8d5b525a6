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


STABLE = ["experiment=study", *TINY, "task=stsb", "method=lora", "study.trials=3", "study.search.initial=3",
          "study.prune.enabled=false", "study.seeds=2", "train.max_train_samples=64", "inference.enabled=false",
          "retention.enabled=false", "study.lr_range=[1e-4,1e-1]"]


def _edit(rec: dict, collapsed: bool | None = None, score: float | None = None) -> None:
    """Write a record's selection-split collapse flag and selection score (what the stability check reads)
    to its file, as a resumed study finds it."""
    path = rec.pop("_path")
    if collapsed is not None:
        rec["collapse"]["splits"]["selection"]["collapsed"] = collapsed
    if score is not None:
        rec["selection_metrics"] = {"pearson": score, "spearmanr": score}
    with open(path, "w") as fh:
        json.dump(rec, fh)
    rec["_path"] = path


def _selection(rec: dict) -> float:
    return (rec["selection_metrics"]["pearson"] + rec["selection_metrics"]["spearmanr"]) / 2


@pytest.mark.timeout(900)
def test_a_rate_whose_seeds_fail_gives_way_to_the_best_lower_rate(tmp_path, glue_dir):
    """The study's chosen rate with a seed that did not train (records edited on disk, as a resumed study
    reads them: the trial seed scores 0.6 on the selection split, seed 1 0.1, under half the trial's gain
    over chance) is rejected and the best lower rate whose trial trained gets its seeds; the rate with
    fewer failed seeds is reported, the other's runs stay on disk, out of every table; the catalogue
    report marks the row."""
    from bench.analysis.aggregate import build
    from bench.report.catalogue import _method_facts
    from bench.report.verdicts import tuning_curves

    first = run_bench([*STABLE, "study.stability.max_failed_share=null"], glue_dir, tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    recs = records_in(tmp_path / "study")
    trials = sorted((r for r in recs if r["study"]["role"] == "trial"), key=lambda r: r["study"]["trial_index"])
    finals = sorted((r for r in recs if r["study"]["role"] == "final"), key=lambda r: r["seed"])
    top = finals[0]["study"]["selected_lr"]
    lower = sorted((t for t in trials if t["train"]["lr"] < top), key=lambda t: t["train"]["lr"])
    assert lower, f"this test needs the study to choose above its lowest rate; it chose {top}"
    want = lower[-1]
    for t in trials:  # the top rate stays the search's choice (0.6); of the lower ones only `want` trained
        if t["train"]["lr"] == top:
            _edit(t, collapsed=False, score=0.6)
        else:
            _edit(t, collapsed=t is not want, score=0.5 if t is want else 0.0)
    _edit(finals[0], collapsed=False, score=0.6)
    _edit(finals[1], collapsed=False, score=0.1)  # chance 0 (STS-B): under 0 + 0.5 x 0.6

    again = run_bench(STABLE, glue_dir, tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"lr {top:g} rejected: 1 of 2 seeds failed on the selection split" in again.stdout + again.stderr
    recs = records_in(tmp_path / "study")
    seeded: dict = {}
    for r in recs:
        if r["study"].get("role") == "final" or r["study"].get("rejected"):
            seeded.setdefault(r["train"]["lr"], []).append(r)
    low = want["train"]["lr"]
    assert sorted(seeded) == sorted([top, low])
    assert all(sorted(r["seed"] for r in v) == [0, 1] for v in seeded.values())
    floor = {top: 0.3, low: 0.25}  # chance + half the trial seed's gain
    failed = {lr: sum(r["collapse"]["splits"]["selection"]["collapsed"] or _selection(r) < floor[lr] for r in v)
              for lr, v in seeded.items()}
    assert failed[top] == 1
    kept = top if failed[top] <= failed[low] else low  # a tie keeps the search's choice
    other = low if kept == top else top
    assert all(r["study"]["role"] == "final" for r in seeded[kept])
    assert all(r["study"]["role"] == "trial" and r["study"]["rejected"].startswith(f"{failed[other]} of 2 seeds failed")
               for r in seeded[other])
    sel = json.loads(next((tmp_path / "study" / "selected").glob("*.json")).read_text())
    assert sel["selected_lr"] == kept and sel["stability"]["rates_seeded"] == [top, low]
    assert [r["lr"] for r in sel["stability"]["rejected"]] == [other]
    assert sel["stability"]["floor"] == pytest.approx(floor[kept])

    agg = build(recs)  # the report's tables: the kept rate's two seeds only
    assert sorted(agg.kept["seed"]) == [0, 1] and set(agg.kept["study_lr"]) == {kept}
    assert set(tuning_curves(agg.trials)["n_trials"]) == {3}  # the budget's trials, not the rejected rate's seeds
    assert f"{other:.3g}: {failed[other]} of 2 seeds failed" in _method_facts(recs).loc[0, "lr_unstable"]
