"""Seed-aware verdicts on retention quantities (bench.analysis.seed_level.seed_scalar, bench/report/retention.py,
the catalogue's forgetting columns, the gate's `--gate-on` seed test): one number per seed, the task
metric's four outcomes, Holm, the equivalence margin of equivalence.MARGINS."""
from __future__ import annotations

import numpy as np
import pytest

from bench.analysis import equivalence, power

SEEDS = [1, 2, 3]
ACCURACY = {"full": 0.03, "bitfit": -0.03}  # offsets from 0.8: full scores higher and forgets more


def _write(folder, forgetting: dict[str, list[float]], seeds=SEEDS) -> None:
    """Fixture records whose retention section carries the given forgetting per seed."""
    from report_fixtures import make_record

    from bench.records.schema import write_record

    for method, values in forgetting.items():
        for seed, f in zip(seeds, values):
            rec = make_record("tiny-bert", method, "sst2", seed)
            rec["metrics"] = {"accuracy": 0.8 + ACCURACY.get(method, 0.0) + 0.001 * seed}
            rec["retention"] = {"skill": {"before": 0.8, "after": 0.8 - f, "forgetting": f},
                                "drift": {"cka": 1 - f}, "intruders": {"total": 0, "mean_per_matrix": 0.0}}
            write_record(folder / f"{rec['run_id']}.json", rec)


def _agg(folder):
    from bench.analysis.aggregate import build
    from bench.records.schema import load_records

    return build(load_records(folder)[0])


def _forgetting(agg, **kw):
    from bench.report.retention import retention_verdicts

    v = retention_verdicts(agg, quantities=("retention.forgetting",), **kw)
    assert len(v) == 1
    return v.iloc[0]


# -- the test itself ---------------------------------------------------------------------------------------------


def test_a_forgetting_difference_made_of_one_bad_seed_is_not_significant(tmp_path):
    # every seed of full forgets a little more, but the size of the difference is one seed's
    full, lora = [0.025, 0.025, 0.30], [0.020, 0.020, 0.020]
    _write(tmp_path, {"full": full, "lora[r=8]": lora})
    r = _forgetting(_agg(tmp_path))
    assert r["method_a"] == "full" and r["delta"] == pytest.approx(np.mean(full) - np.mean(lora))
    assert r["pairing"] == "paired seeds" and r["outcome"] == "undecided" and r["p_adj"] > 0.05
    assert r["ci_low"] < 0 < r["ci_high"] and "undecided" in r["verdict"]


def test_a_consistent_difference_is_significant_and_names_who_forgets_less(tmp_path):
    _write(tmp_path, {"full": [0.10, 0.12, 0.11], "lora[r=8]": [0.02, 0.03, 0.025]})
    r = _forgetting(_agg(tmp_path))
    assert r["outcome"] == "worse" and r["verdict"] == "lora[r=8] forgets less" and r["p_adj"] < 0.05
    assert r["ci_low"] > 0 and np.isnan(r["seeds_to_decide"])


def test_equivalence_inside_the_margin_and_not_outside(tmp_path):
    # seed by seed the two methods differ by +0.3, -0.1 and +0.1 points of forgetting
    _write(tmp_path, {"full": [0.050, 0.060, 0.040], "lora[r=8]": [0.047, 0.061, 0.039]})
    agg = _agg(tmp_path)
    inside = _forgetting(agg)  # default margin 0.01 (equivalence.MARGINS)
    assert inside["margin"] == equivalence.MARGINS["retention.forgetting"] == 0.01
    assert inside["outcome"] == "equivalent" and -0.01 < inside["eq_low"] < inside["eq_high"] < 0.01
    outside = _forgetting(agg, margin=0.001)  # the 90 % interval reaches past ±0.001
    assert outside["outcome"] == "undecided" and outside["margin"] == 0.001
    assert outside["seeds_to_decide"] >= 2


def test_one_seed_on_a_side_gives_no_verdict_and_other_seed_sets_are_not_paired(tmp_path):
    from bench.report.verdicts import ONE_SEED

    _write(tmp_path / "one", {"full": [0.10], "lora[r=8]": [0.02, 0.03, 0.025]})
    assert _forgetting(_agg(tmp_path / "one"))["verdict"] == ONE_SEED
    _write(tmp_path / "two", {"full": [0.10, 0.12, 0.11]})
    _write(tmp_path / "two", {"lora[r=8]": [0.02, 0.03, 0.025]}, seeds=[4, 5, 6])
    r = _forgetting(_agg(tmp_path / "two"))
    assert r["pairing"] == "unpaired seeds" and r["test"].startswith("Welch t")


def test_the_seed_test_keeps_its_false_verdict_rate_where_a_seed_bootstrap_does_not():
    from benchmarks.seed_scalar_calibration import false_rates

    boot, t = false_rates(3, True, "normal", reps=400, b=200)
    assert t / 400 <= 0.09, f"t over 3 paired seeds: {t}/400 false verdicts"
    assert boot / 400 >= 0.12, f"seed bootstrap: {boot}/400 (expected far above 5 %)"


# -- the reports -------------------------------------------------------------------------------------------------


def test_both_reports_show_forgetting_columns_verdicts_and_the_frontier(tmp_path):
    from bench.records.schema import load_records
    from bench.report import generate_report, summary_text
    from bench.report.catalogue import catalogue_table
    from bench.report.catalogue_markdown import markdown

    _write(tmp_path / "res", {"full": [0.10, 0.12, 0.11], "lora[r=8]": [0.02, 0.03, 0.025],
                              "bitfit": [0.021, 0.031, 0.024]})
    report = generate_report(tmp_path / "res", tmp_path / "out")
    md = (tmp_path / "out" / "retention.md").read_text()
    assert "| forgetting ×100 |" in md and "| frontier |" in md
    assert "lora[r=8] forgets less" in md and "equivalent" in md and "TOST" in md
    assert "11.00 [" in md  # full's forgetting ×100 with its interval over seeds
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'id="retention"' in html and "paired t over seeds" in html
    assert any(p.name.endswith("__retention.png") for p in (tmp_path / "out" / "plots").iterdir())
    assert "forgetting verdicts (seed-aware" in summary_text(report)
    table, agreement = catalogue_table(report.agg, load_records(tmp_path / "res")[0], reference="lora[r=8]")
    full = table[table["method_label"] == "full"].iloc[0]
    assert full["forgetting_outcome"] == "worse" and full["forgetting_delta"] == pytest.approx(0.085)
    bitfit = table[table["method_label"] == "bitfit"].iloc[0]
    assert bitfit["forgetting_outcome"] in ("equivalent", "undecided")
    cat = markdown(table, agreement, "lora[r=8]")
    assert "Δ forgetting vs lora[r=8] [95 % CI], verdict" in cat and "forgets more (p " in cat
    assert "11.00 [" in cat and set(table.loc[table["frontier_forgetting"], "method_label"]) == {"full", "lora[r=8]"}
    assert "__retention.png" in cat


# -- the gate ----------------------------------------------------------------------------------------------------


def _gate(tmp_path, rise: list[float], keep_per_seed: bool = True):
    from bench.records.schema import load_records
    from bench.regress.baseline import make_baseline
    from bench.regress.cells import summarize
    from bench.regress.check import Settings, run_check

    _write(tmp_path / "base", {"lora[r=8]": [0.02, 0.03, 0.025]})
    doc, _ = make_baseline(load_records(tmp_path / "base")[0], "b", str(tmp_path))
    if not keep_per_seed:  # a baseline saved before the gate tested retention
        for c in doc["cells"]:
            for s in c["retention"].values():
                s.pop("seeds"), s.pop("values")
    cand = load_records(tmp_path / "base")[0]
    for r in cand:
        r["retention"]["skill"]["forgetting"] += rise[SEEDS.index(r["seed"])]
    cells, _ = summarize(cand)
    (res,) = run_check(doc, cells, Settings(gate_on=["retention.forgetting"]))
    return res


def test_the_gate_uses_the_seed_aware_test_when_both_sides_have_seeds(tmp_path):
    # a rise of 1.2 points on every seed: inside the tolerance rule (3 x pooled std = 1.5 points), but the
    # paired seeds show it on each one
    res = _gate(tmp_path, [0.011, 0.012, 0.013])
    assert res.verdict == "REGRESSED" and any("seed-aware test" in p for p in res.problems)
    assert not any("tolerance" in p for p in res.problems)


def test_the_gate_passes_a_rise_made_of_one_bad_seed(tmp_path):
    res = _gate(tmp_path, [0.0, 0.0, 0.05])
    assert res.verdict == "ok", res.problems


def test_an_old_baseline_without_per_seed_values_is_gated_by_the_tolerance_rule_alone(tmp_path):
    res = _gate(tmp_path, [0.011, 0.012, 0.013], keep_per_seed=False)
    assert res.verdict == "ok" and any("no seed-aware test" in n for n in res.notes)


def test_seeds_to_decide_for_a_per_seed_quantity_uses_t_quantiles():
    # full vs LoRA forgetting on SST-2 (docs/retention.md): 3 paired seeds left it undecided
    d = np.array([0.127, 0.162, 0.057])
    var = float(np.var(d, ddof=1))
    assert power.seeds_to_decide(d.mean(), var, 0.0, 0.01) == 2  # the normal approximation: already decided
    need = power.seeds_to_decide_t(d.mean(), var, 0.01, paired=True)
    assert need > 3 and need == power.seeds_to_decide_t(d.mean(), var, 0.01, paired=True, m=1)
    assert power.seeds_to_decide_t(d.mean(), var, 0.01, paired=True, m=10) > need  # Holm asks more of 10 pairs
    assert power.seeds_to_decide_t(0.0, 0.0, 0.01, paired=True) == 2  # equal on every seed: equivalent at once
