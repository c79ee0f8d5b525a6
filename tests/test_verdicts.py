"""bench.report's verdicts end to end: real record and predictions files -> pairwise.csv, CI
columns, ranks, budget curves. Expected values are recomputed from the raw files with json/gzip,
statistics and scipy, or are known by construction (an oracle beats chance; a copy ties)."""
from __future__ import annotations

import csv
import gzip
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from scipy.stats import t as student_t

from bench.report import generate_report

sys.path.insert(0, str(Path(__file__).parent))
import report_fixtures as fx


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("verdicts")
    fx.write_prediction_results(base / "results")
    rep = generate_report(base / "results", base / "report", "verdicts")
    return {"results": base / "results", "out": rep.out, "report": rep}


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pair(pw: list[dict], task: str, x: str, y: str) -> dict:
    return next(r for r in pw if r["task"] == task and {r["method_a"], r["method_b"]} == {x, y})


def raw_predictions(results: Path, label: str, task: str) -> list[list[float]]:
    out = []
    for p in sorted(results.rglob("*.json")):
        rec = json.loads(p.read_text())
        if rec.get("method_label") == label and rec["task"] == task and rec.get("study", {}).get("role") != "trial":
            with gzip.open(p.parent / rec["predictions"]) as fh:
                out.append(json.load(fh)["splits"]["validation"])
    return out


def test_oracle_beats_chance_and_copies_tie(report):
    pw = rows(report["out"] / "pairwise.csv")
    for col in ("task", "method_a", "method_b", "delta", "ci_low", "ci_high", "p", "p_adjusted", "verdict", "test",
                "n_seeds_a", "n_seeds_b", "n_examples", "aso_eps"):
        assert col in pw[0], col
    r = pair(pw, "sst2", "oracle", "chance")
    chance_acc = statistics.fmean(statistics.fmean(float(p == q) for p, q in zip(s["predictions"], s["references"]))
                                  for s in raw_predictions(report["results"], "chance", "sst2"))
    assert r["method_a"] == "oracle" and r["verdict"] == "a better"
    assert float(r["delta"]) == pytest.approx(1 - chance_acc)
    assert float(r["p_adjusted"]) < 0.05 and float(r["ci_low"]) > 0
    assert r["n_seeds_a"] == "3" and r["n_seeds_b"] == "3" and r["n_examples"] == str(fx.PRED_N)
    assert float(r["aso_eps"]) < 0.2  # both have 3 seeds: ASO reported, oracle dominates
    tie = pair(pw, "sst2", "chance", "chance_copy")
    # a copy: delta 0 on every resample, so the 90 % interval lies inside any margin
    assert tie["verdict"] == "equivalent" and float(tie["delta"]) == 0.0 and float(tie["p"]) == 1.0
    assert float(tie["pooled_p"]) == 1.0 and tie["pooled_verdict"] == "equivalent"
    assert pair(pw, "stsb", "chance", "chance_copy")["verdict"] == "equivalent"
    assert pair(pw, "stsb", "oracle", "chance")["verdict"] == "a better"
    # single has one seed: no method verdict, no seed-aware p; the example-level (pooled) interval is
    # what the row shows, and no ASO (needs >= 3 seeds on both sides).
    single = pair(pw, "sst2", "oracle", "single")
    assert single["n_seeds_b"] == "1" and single["aso_eps"] == ""
    assert single["verdict"] == "one seed: no method verdict" and single["p"] == "" and single["seeds_to_decide"] == ""
    assert (single["ci_low"], single["ci_high"]) == (single["pooled_ci_low"], single["pooled_ci_high"])
    assert single["pooled_verdict"] == "a better"  # these two trained models do differ


def test_holm_is_over_the_pairs_of_one_task(report):
    """Each test's Holm family is the pairs of one task that it tested: the seeds-pooled test all of them,
    the seed-aware test those with >= 2 seeds on both sides (single has one seed: no method verdict)."""
    pw = rows(report["out"] / "pairwise.csv")
    for task in ("sst2", "stsb"):
        sub = [r for r in pw if r["task"] == task]
        assert len(sub) == {"sst2": 6, "stsb": 3}[task]  # legacy has no predictions: no pairs with it
        for p_col, adj_col, m in (("pooled_p", "pooled_p_adjusted", len(sub)), ("p", "p_adjusted", 3)):
            tested = [r for r in sub if r[p_col] != ""]
            assert len(tested) == m
            ps = sorted(float(r[p_col]) for r in tested)
            smallest = min(tested, key=lambda r: float(r[p_col]))
            assert float(smallest[adj_col]) == pytest.approx(min(1.0, ps[0] * m))
            assert all(float(r[adj_col]) >= float(r[p_col]) for r in tested)
    assert not any("legacy" in (r["method_a"], r["method_b"]) for r in pw)


def test_too_few_resamples_for_the_family_is_said_not_hidden(report, tmp_path):
    """With B=100 the 6 pooled sst2 pairs cannot go below Holm p 6/101 > 0.05: the oracle, better than
    chance on every example, reads undecided under the pooled test, and the notes say so and name the B
    that would test it; the seed-aware family (3 pairs with >= 2 seeds) only leaves little room (3/101).
    The default B=1,000 report on the same records has no such note and calls the oracle better."""
    low = generate_report(report["results"], tmp_path / "low", "low", bootstrap_samples=100)
    notes = " ".join(low.agg.notes)
    assert "sst2 pooled pairwise tests: Holm over 6 comparisons with B=100 resamples cannot reach p < 0.05" in notes
    assert "--bootstrap-samples 2000" in notes  # bench.analysis.multiple_comparisons.min_resamples(6)
    assert "sst2 pairwise tests: Holm over 3 comparisons with B=100 resamples leaves little room" in notes
    assert "stsb pairwise tests: Holm over 3 comparisons with B=100 resamples leaves little room" in notes  # 3/101
    assert "sst2 tests against chance: Holm over 4 comparisons with B=100 resamples leaves little" in notes  # 4 methods with predictions
    assert pair(rows(low.out / "pairwise.csv"), "sst2", "oracle", "chance")["pooled_verdict"] == "undecided"
    assert not any("resamples cannot reach" in n or "leaves little room" in n for n in report["report"].agg.notes)
    ch = low.agg.chance
    assert ch[ch.task == "sst2"]["p_adjusted"].min() == pytest.approx(4 / 101)  # the floor, not the data


def test_ci_columns_hold_t_and_bootstrap_intervals(report):
    cells = {(r["method_label"], r["task"]): r for r in rows(report["out"] / "table.csv") if r["row_type"] == "cell"}
    c = cells[("legacy", "sst2")]  # schema 1, 3 seeds: t interval from the records' values
    vals = [0.6 + 0.01 * s for s in fx.SEEDS]
    half = student_t.ppf(0.975, 2) * statistics.stdev(vals) / math.sqrt(3)
    assert c["ci_method"] == "t over seeds (n=3)"
    assert float(c["headline_ci_low"]) == pytest.approx(statistics.fmean(vals) - half)
    assert float(c["metrics.accuracy_ci_high"]) == pytest.approx(statistics.fmean(vals) + half)
    s = cells[("single", "sst2")]  # one seed with predictions: bootstrap over examples
    assert s["ci_method"] == "bootstrap over examples (1 seed, B=1000)"
    acc = float(s["headline_mean"])
    width = float(s["headline_ci_high"]) - float(s["headline_ci_low"])
    assert float(s["headline_ci_low"]) < acc < float(s["headline_ci_high"])
    assert width == pytest.approx(2 * 1.96 * math.sqrt(acc * (1 - acc) / fx.PRED_N), rel=0.15)
    o = cells[("oracle", "stsb")]
    assert float(o["metrics.spearmanr_ci_low"]) == pytest.approx(1.0)
    assert cells[("single", "stsb")]["ci_method"] == ""  # never run: no interval


def test_trials_stay_out_of_tables_and_feed_budget_curves(report):
    cells = {(r["method_label"], r["task"]): r for r in rows(report["out"] / "table.csv") if r["row_type"] == "cell"}
    oracle = cells[("oracle", "sst2")]
    assert float(oracle["headline_mean"]) == 1.0 and oracle["headline_n"] == "3"  # trials (score 0) not mixed in
    budget = rows(report["out"] / "budget.csv")
    got = [float(r["expected_max"]) for r in budget if r["method_label"] == "oracle"]
    s = sorted(fx.TRIAL_SCORES)  # 0.5 0.6 0.7 0.9: E[max of 2] = (1*.6 + 2*.7 + 3*.9) / 6
    assert got == pytest.approx([statistics.fmean(s), (0.6 + 1.4 + 2.7) / 6, (0.7 + 3 * 0.9) / 4, 0.9])
    assert any(p.kind == "budget_curves" for p in report["report"].plots)
    assert list((report["out"] / "plots").glob("*budget_curves.png"))
    assert "budget_curves.png" in (report["out"] / "index.html").read_text()


def test_ranks_bold_and_notes_in_markdown_and_html(report):
    md = (report["out"] / "table.md").read_text()
    main = next(line for line in md.splitlines() if line.startswith("| oracle |"))
    assert "**100.0 [100.0, 100.0]**" in main  # oracle is best on both tasks
    chance = next(line for line in md.splitlines() if line.startswith("| chance |"))
    assert "**" not in chance
    assert "no per-example predictions for legacy" in md
    assert "### Pairwise verdicts: tiny-bert / sst2" in md
    ranks = report["report"].agg.ranks.set_index(["task", "method_label"])["rank"]
    assert ranks[("sst2", "oracle")] == 1 and ("sst2", "single") not in ranks.index  # one seed: no rank
    assert ranks[("sst2", "chance")] == ranks[("sst2", "chance_copy")] == 2
    page = (report["out"] / "index.html").read_text()
    assert 'id="verdicts"' in page and 'href="pairwise.csv"' in page and "<b>100.0 [100.0, 100.0]</b>" in page


def test_old_records_still_report_without_pairs(tmp_path):
    fx.write_fixture_results(tmp_path / "results")
    rep = generate_report(tmp_path / "results", tmp_path / "report", "old")
    pw = rows(rep.out / "pairwise.csv")
    assert pw == [] and "No pair could be tested" in (rep.out / "table.md").read_text()
    cells = [r for r in rows(rep.out / "table.csv") if r["row_type"] == "cell"]
    assert {r["ci_method"] for r in cells} == {"t over seeds (n=3)", "t over seeds (n=2)", ""}
    assert not (rep.out / "budget.csv").exists()


def test_broken_predictions_file_is_named_not_fatal(tmp_path):
    refs = fx.pred_references("sst2", 50)
    path = fx.write_prediction_record(tmp_path / "results", "m", "a", "sst2", 1, refs, refs)
    fx.write_prediction_record(tmp_path / "results", "m", "b", "sst2", 1, 1 - refs, refs)
    rec = json.loads(path.read_text())
    (path.parent / rec["predictions"]).write_bytes(b"not gzip")
    rep = generate_report(tmp_path / "results", tmp_path / "report", "broken")
    assert rep.agg.pairwise.empty
    assert any(rec["predictions"] in n and "cannot read predictions" in n for n in rep.agg.notes)


def test_the_catalogue_report_reads_the_same_records(report):
    """bench.report.catalogue on this folder's real record and prediction files (schema-1 and -2
    records side by side): verdicts known by construction against chance as the reference (the oracle
    is better on both tasks, the exact copy ties), trials out of the table, a schema-1 record whose
    config names its method by a string read without error."""
    from bench.records.schema import load_records
    from bench.report.catalogue import catalogue_table
    from bench.report.catalogue_markdown import markdown, summary_markdown

    table, agreement = catalogue_table(report["report"].agg, load_records(report["results"])[0], "chance")
    assert sorted(table[table.task == "stsb"]["method_label"]) == ["chance", "chance_copy", "oracle"]
    summary = summary_markdown(table, "chance")
    line = {row.split(" | ")[0][2:]: row for row in summary.splitlines() if row.startswith("| ") and " | " in row}
    assert line["oracle"].count("100.0 [100.0, 100.0], better") == 2  # both tasks
    assert line["chance_copy"].count(", equivalent (p 1)") == 2 and "(reference)" in line["chance"]
    assert "| legacy |" in summary and line["legacy"].endswith("| – |  |")  # sst2 only, no predictions: no verdict
    assert agreement["methods"] == 3 and "Kendall tau-b" in markdown(table, agreement, "chance")
    with_b, _ = catalogue_table(report["report"].agg, load_records(report["results"])[0], "chance", 100)
    # sst2: 3 comparisons with chance, single's has one seed (no seed-aware test): 2 in the family, 2/101
    assert "lifts that to a floor of 0.0198 (sst2)" in markdown(with_b, agreement, "chance")


def test_one_bad_seed_is_not_a_method_verdict(tmp_path):
    """Real record and predictions files: `steady` and `one_bad` share seeds 1 and 2 exactly (the same
    predictions), and seed 3 of `one_bad` collapsed to one class. The seeds-pooled test calls that a
    large, significant drop (these trained models do differ); as a verdict about the method it rests
    on one seed of three, and the seed-aware verdict must not be "better"/"worse". The report says
    which test is which and shows the undecided pair's seed estimate."""
    import numpy as np

    refs = fx.pred_references("sst2", 600)
    rng = np.random.default_rng(9)
    for seed in fx.SEEDS:
        steady = np.where(rng.random(600) < 0.85, refs, 1 - refs)
        bad = np.ones(600) if seed == 3 else steady
        fx.write_prediction_record(tmp_path / "results", "m", "steady", "sst2", seed, steady, refs)
        fx.write_prediction_record(tmp_path / "results", "m", "one_bad", "sst2", seed, bad, refs)
    from bench.analysis.aggregate import build
    from bench.records.schema import load_records
    from bench.report.verdicts import add_verdicts

    agg = add_verdicts(build(load_records(tmp_path / "results")[0]))  # the report's verdict step, no plots
    r = agg.pairwise.iloc[0]
    assert len(agg.pairwise) == 1 and r["method_a"] == "steady" and float(r["delta"]) > 0.1
    assert r["pooled_verdict"] == "a better" and float(r["pooled_p_adjusted"]) < 0.01
    assert r["verdict"] not in ("a better", "b better"), r
    assert r["verdict"] == "undecided" and float(r["p"]) > 0.05 and r["pairing"] == "paired seeds"
    assert r["test"].startswith("paired two-level bootstrap") and "these trained models" in r["pooled_test"]
    assert float(r["seeds_to_decide"]) >= 2  # or inf: never a blank for an undecided pair
    ranks = agg.ranks.set_index("method_label")["rank"]
    assert ranks["steady"] == ranks["one_bad"] == 1  # not shown worse: both tied with the best


def test_split_half_replication(tmp_path, capsys):
    """python -m bench.report.replicate on real record files: 4 seeds per method, halves {1, 3} and
    {2, 4}. `good` is right on 90 % of examples on every seed and `poor` on 60 %: both halves call it
    better (replicated, no contradiction). `flip` beats `poor` on seeds 1 and 3 and loses on 2 and 4
    by the same margin: each half is decided the other way, and the command names it."""
    import numpy as np

    from bench.report import replicate

    n = 400
    refs = fx.pred_references("sst2", n)

    def acc(share, seed):
        pred = 1 - refs
        right = np.random.default_rng(seed).permutation(n)[: round(share * n)]
        pred[right] = refs[right]
        return pred

    for seed in (1, 2, 3, 4):
        fx.write_prediction_record(tmp_path / "res", "m", "good", "sst2", seed, acc(0.9, seed), refs)
        fx.write_prediction_record(tmp_path / "res", "m", "poor", "sst2", seed, acc(0.6, 10 + seed), refs)
        fx.write_prediction_record(tmp_path / "res", "m", "flip", "sst2", seed,
                                   acc(0.8 if seed % 2 else 0.4, 20 + seed), refs)
    assert replicate.halves([4, 1, 3, 2, 1]) == ([1, 3], [2, 4])
    assert replicate.main([str(tmp_path / "res"), "--reference", "poor", "--bootstrap", "500",
                           "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    got = {frozenset((r["method_a"], r["method_b"])): r for r in rows(tmp_path / "rep" / "replicate.csv")}
    good = got[frozenset(("good", "poor"))]
    assert good["agreement"] == "replicated" and good["seeds_1"] == "1 3" and good["seeds_2"] == "2 4"
    assert got[frozenset(("flip", "poor"))]["agreement"] == "contradicting"
    summary = rows(tmp_path / "rep" / "replicate_summary.csv")[0]
    assert (summary["pairs"], summary["replicated"], summary["contradicting"]) == ("2", "1", "1")
    assert float(summary["agreement"]) == 0.5
    assert "contradicting directional verdicts: 1" in out and ("flip vs poor" in out or "poor vs flip" in out)
