"""Data-budget curves (issue #13): nested + stratified subsamples, the training-length rule, the
crossover logic on hand-made records, the ranking agreement, and the plot from fixture records.

Only the report and the subsampling are exercised here (no training): the records are written by
hand with known per-example predictions, so every verdict has a known answer.
"""
from __future__ import annotations

import random
import zlib
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from report_fixtures import T0, make_record

from bench.data import sampling
from bench.recipe.runtime import length_rule
from bench.records.schema import load_records, record_stem, write_predictions, write_record
from bench.report.data_budget import NEVER, budget_frame, crossover_k, kendall_tau, write_budget

SIZES = [10, 30, 100, 300, 1000]


def _pool(n: int, shares: list[float], seed: int = 0) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    labels = rng.choices(range(len(shares)), weights=shares, k=n)
    pool = sorted(rng.sample(range(3 * n), n))  # pool ids are not 0..n-1 (the selection split is carved out)
    return pool, labels


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_subsamples_are_nested(stratified, seed):
    pool, labels = _pool(2000, [0.55, 0.45], seed)
    subs = [sampling.nested_subsample(pool, k, seed, labels=labels if stratified else None) for k in SIZES]
    for small, big, k in zip(subs, subs[1:], SIZES):
        assert len(small) == k and len(set(small)) == k
        assert set(small) <= set(big), f"K={k} subsample is not inside the next K"
        assert set(big) <= set(pool)
    assert sampling.nested_subsample(pool, None, seed, labels=labels if stratified else None) == pool
    other = sampling.nested_subsample(pool, 300, seed + 1, labels=labels if stratified else None)
    assert other != subs[3], "another seed must draw another subsample"


@pytest.mark.parametrize("shares", [[0.5, 0.5], [0.9, 0.1], [0.68, 0.32], [0.35, 0.33, 0.32], [0.6, 0.3, 0.05, 0.05],
                                    [0.4, 0.2, 0.2, 0.1, 0.05, 0.05]])
def test_stratification_within_one_example_at_every_size(shares):
    pool, labels = _pool(1500, shares, seed=3)
    label_of = dict(zip(pool, labels))
    total = Counter(labels)
    for k in (1, 2, 7, 10, 33, 100, 300, 1000, 1499):  # the subsample the runner draws
        got = Counter(label_of[i] for i in sampling.nested_subsample(pool, k, 1, labels=labels))
        for c, n_c in total.items():
            assert abs(got[c] - k * n_c / len(pool)) < 1, (k, c, got[c], k * n_c / len(pool))
    counts: Counter = Counter()  # every size at once: the subsamples are prefixes of one order
    for k, i in enumerate(sampling.stratified_order(labels, len(labels), 0), 1):
        counts[labels[i]] += 1
        assert all(abs(counts[c] - k * n_c / len(pool)) < 1 for c, n_c in total.items()), k


def test_stratified_order_prefixes_within_one_for_random_class_mixes():
    worst = 0.0
    for trial in range(40):
        r = random.Random(trial)
        n_classes = r.randint(2, 6)
        labels = r.choices(range(n_classes), weights=[r.random() ** 3 + 0.01 for _ in range(n_classes)],
                           k=r.randint(20, 300))
        share = {c: n / len(labels) for c, n in Counter(labels).items()}
        counts: Counter = Counter()
        for k, i in enumerate(sampling.stratified_order(labels, len(labels), trial), 1):
            counts[labels[i]] += 1
            worst = max(worst, *(abs(counts[c] - k * s) for c, s in share.items()))
    assert worst < 1


def test_subsample_labels_must_match_pool():
    with pytest.raises(ValueError, match="one label per pool entry"):
        sampling.nested_subsample([1, 2, 3], 2, 0, labels=[0, 1])


def test_length_rule():
    assert length_rule(3, None, 100, 32) is None
    r = length_rule(3, 200, 100, 32)  # 4 steps per epoch -> 50 epochs
    assert (r["steps_per_epoch"], r["epochs"], r["configured_epochs"]) == (4, 50, 3)
    assert length_rule(3, 200, 3000, 32)["epochs"] == 3  # 94 steps per epoch: the epochs already give 282
    assert length_rule(3, 200, 1000, 32)["epochs"] == 7  # 32 per epoch: ceil(200 / 32)
    assert length_rule(3, 10, 5, 32)["epochs"] == 10  # fewer examples than a batch: one step per epoch


# ------------------------------------------------------------------------------ hand-made records

N = 400  # eval examples
REF = np.random.default_rng(5).integers(0, 2, N).astype(float)
K_OF = {"100": 100, "300": 300, "1000": 1000}


def _preds(quality: float, seed: int, salt: int) -> np.ndarray:
    """`quality` = share of examples predicted right; the rest are wrong (seeded)."""
    rng = np.random.default_rng(1000 * salt + seed)
    return np.where(rng.random(N) < quality, REF, 1 - REF)


# method -> K -> accuracy share. good = bad at 100 (the same predictions: a tie), then far better;
# early beats bad only at K=100, so from no K onwards; bad never beats anyone.
QUALITY = {"good": {"100": 0.55, "300": 0.90, "1000": 0.95},
           "bad": {"100": 0.55, "300": 0.56, "1000": 0.57},
           "early": {"100": 0.85, "300": 0.56, "1000": 0.57}}
# Same salt: identical predictions (an exact tie). early ties bad exactly at 300 and 1000, so whether
# it "beats" bad there can never turn on chance.
SALT = {("good", "100"): 1, ("bad", "100"): 1, ("early", "300"): 2, ("bad", "300"): 2,
        ("early", "1000"): 3, ("bad", "1000"): 3}


def _salt(m: str, k_label: str) -> int:
    """Deterministic across processes (str hash() is salted per interpreter: PYTHONHASHSEED)."""
    return SALT.get((m, k_label), zlib.crc32(f"{m}@{k_label}".encode()) % 997 + 10)


def write_budget_records(root, methods=QUALITY, seeds=(0, 1, 2)):
    from bench.data.metrics import compute_metrics

    for m, by_k in methods.items():
        for k_label, q in by_k.items():
            for seed in seeds:
                label = f"{m}@k={k_label}"
                rec = make_record("tiny-bert", "full", "sst2", seed, value=0.0,
                                  extra_cfg={"label": label, "budget_k": k_label},
                                  finished=T0 + timedelta(minutes=seed))
                rec.update(schema_version=2, method=m, method_label=label, headline_metric="accuracy")
                rec["run_id"] = record_stem("tiny-bert", "sst2", label, seed, rec["config_hash"])
                preds = _preds(q, seed, _salt(m, k_label))
                rec["metrics"] = compute_metrics(["accuracy"], preds, REF)
                rec["data"]["train_examples"] = K_OF[k_label]
                rec["train"] = {"steps": 200, "epochs": 3, "lr": 1e-3}
                rec["time"] = {"train_s": 1.0 + K_OF[k_label] / 100, "eval_s": 0.1, "total_s": 2.0}
                rec["study"] = {"role": "final", "lr": 1e-3}
                name = rec["run_id"] + ".predictions.json.gz"
                write_predictions(root / name, {
                    "format": "peft-bench-predictions", "version": 1, "run_id": rec["run_id"], "task": "sst2",
                    "kind": "classification", "num_labels": 2,
                    "splits": {"validation": {"role": "eval", "metric_suffix": "", "ids": list(range(N)),
                                              "predictions": preds.tolist(), "references": REF.tolist()}}})
                rec["predictions"] = name
                write_record(root / f"{rec['run_id']}.json", rec)
                if seed == 0:  # one learning-rate trial behind the point: its time is the tuning cost
                    trial = dict(rec, run_id=rec["run_id"] + "__t0", study={"role": "trial", "trial_index": 0},
                                 time={"train_s": 1.0, "total_s": 5.0})
                    write_record(root / "trials" / f"{trial['run_id']}.json", trial)
    return root


@pytest.fixture(scope="module")
def budget_report(tmp_path_factory):
    root = write_budget_records(tmp_path_factory.mktemp("budget_records"))
    records, bad = load_records(root)
    assert not bad
    out = tmp_path_factory.mktemp("budget_report")
    plots: list = []
    tables, section = write_budget(records, out, plots, b=200)
    return records, out, plots, tables, section


def test_crossover_k_rule():
    ks = ["100", "300", "1000", "full"]
    assert crossover_k(ks, [False, True, True, True]) == "300"
    assert crossover_k(ks, [True, True, True, True]) == "100"
    assert crossover_k(ks, [True, False, True, True]) == "1000"  # a win that does not last is no crossover
    assert crossover_k(ks, [True, True, True, False]) is None  # lost again at the largest K
    assert crossover_k(ks, [False] * 4) is None


def test_crossover_table_from_hand_made_records(budget_report):
    import pandas as pd

    _, _out, _, tables, _ = budget_report
    cross = pd.read_csv(tables["budget_crossover"], dtype=str).set_index(["method_a", "method_b"])
    assert cross.at[("good", "bad"), "crossover_k"] == "300"  # tie at 100 (identical predictions), then better
    assert cross.at[("bad", "good"), "crossover_k"] == NEVER
    assert cross.at[("early", "bad"), "crossover_k"] == NEVER  # better only at 100: not "from" any K
    assert cross.at[("early", "bad"), "a_better_at"] == "100"
    assert cross.at[("good", "early"), "crossover_k"] == "300"
    assert cross.at[("early", "good"), "a_better_at"] == "100"
    assert cross.at[("good", "bad"), "tested_at"] == "100,300,1000"
    pairs = pd.read_csv(tables["budget_pairs"])
    tie = pairs[(pairs["k_label"] == 100) & (pairs[["method_a", "method_b"]].apply(set, axis=1) == {"good", "bad"})]
    # identical predictions on every seed: delta 0 on every replicate, inside any margin
    assert tie["verdict"].tolist() == ["equivalent"] and float(tie["delta"].iloc[0]) == 0.0


def test_points_ranks_and_cost(budget_report):
    import pandas as pd

    records, _out, _, tables, _ = budget_report
    pts = pd.read_csv(tables["budget_points"], dtype={"k_label": str}).set_index(["method", "k_label"])
    frame = budget_frame(records)
    assert len(frame) == 3 * 3 * 3  # trials are not points
    expected = frame[(frame["method"] == "good") & (frame["k_label"] == "300")]["headline"].mean()
    assert pts.at[("good", "300"), "mean"] == pytest.approx(expected)
    assert pts.at[("good", "300"), "n_seeds"] == 3
    assert pts.at[("good", "300"), "ci_low"] < expected < pts.at[("good", "300"), "ci_high"]
    assert pts.at[("good", "300"), "train_s"] == pytest.approx(4.0)
    assert pts.at[("good", "300"), "tuning_s"] == pytest.approx(5.0)
    assert pts.at[("good", "300"), "trainable_params"] > 0
    ranks = pd.read_csv(tables["budget_ranks"], dtype={"k_label": str})
    largest = ranks[ranks["k_label"] == "1000"]
    assert largest["kendall_tau_vs_largest"].iloc[0] == pytest.approx(1.0)
    at100 = ranks[ranks["k_label"] == "100"].set_index("method")
    assert at100.at["early", "rank_by_mean"] == 1 and at100.at["early", "rank_significant"] == 1
    # at 100 early leads and good = bad; at 1000 good > early ~ bad: tau-b from scipy
    assert at100["kendall_tau_vs_largest"].iloc[0] == pytest.approx(
        kendall_tau([at100.at[m, "mean"] for m in ("good", "bad", "early")],
                    [largest.set_index("method").at[m, "mean"] for m in ("good", "bad", "early")])[0])


def test_kendall_tau_handles_ties():
    assert kendall_tau([1, 2, 3], [1, 2, 3])[0] == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert kendall_tau([1, 1, 2], [1, 2, 3])[0] == pytest.approx(2 / np.sqrt(6))  # tau-b: ties in x
    assert np.isnan(kendall_tau([1], [1])[0])


def test_plot_from_fixture_records(budget_report):
    _, out, plots, tables, section = budget_report
    assert [p.kind for p in plots] == ["budget"]
    assert (out / plots[0].png).stat().st_size > 5000 and (out / plots[0].svg).is_file()
    svg = (out / plots[0].svg).read_text()
    assert "training examples K (log scale)" in svg and "good" in svg
    assert "Data-budget curves" in section and "never in range" in section
    assert tables["budget_md"].read_text().startswith("# Data-budget curves")


def test_no_budget_records_no_section(tmp_path):
    write_record(tmp_path / "r.json", make_record("tiny-bert", "full", "sst2", 1))
    records, _ = load_records(tmp_path)
    assert write_budget(records, tmp_path / "out", []) == ({}, "")


def test_main_report_has_budget_section(tmp_path):
    from bench.report import generate_report

    root = write_budget_records(tmp_path / "res", methods={m: QUALITY[m] for m in ("good", "bad")}, seeds=(0, 1))
    rep = generate_report(root, tmp_path / "rep", bootstrap_samples=200)
    assert any(p.kind == "budget" for p in rep.plots)
    assert "Data-budget curves" in rep.index.read_text()
    assert (tmp_path / "rep" / "budget_crossover.csv").is_file()


def test_search_vs_reuse_has_paired_test(tmp_path):
    """--compare: each point's search-minus-reuse difference gets a paired bootstrap and Holm per task;
    a far better searched point is "search better", an identical one equivalent with delta 0."""
    import pandas as pd

    tuned = write_budget_records(tmp_path / "tuned", {"good": {"100": 0.90}, "same": {"100": 0.70}})
    reused = write_budget_records(tmp_path / "reused", {"good": {"100": 0.55}, "same": {"100": 0.70}})
    tables, _ = write_budget(load_records(tuned)[0], tmp_path / "out", [], b=300,
                             compare=load_records(reused)[0])
    got = pd.read_csv(tables["budget_reuse"]).set_index("method")
    assert got.loc["good", "verdict"] == "search better" and got.loc["good", "ci_low"] > 0.2
    assert got.loc["same", "delta"] == 0 and got.loc["same", "verdict"] == "equivalent"
    assert (got["p_adjusted"] >= got["p"]).all()
