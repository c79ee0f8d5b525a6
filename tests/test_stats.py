"""The statistics of bench/analysis/ against textbook values, hand-computed cases and the project's real metric code.

Expected numbers come from formulas or tables written out here (t-table values, binomial
standard errors, Holm and order-statistics cases done by hand), not from the code under test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.analysis import example_bootstrap, intervals, multiple_comparisons, resampled_metrics, score_distributions
from bench.data.metrics import compute_metrics


def test_t_interval_equals_textbook_value():
    # 1..5: mean 3, s = sqrt(2.5); t_{0.975,4} = 2.776 (t table) -> half width 2.776 * sqrt(2.5) / sqrt(5).
    iv = intervals.t_interval([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert iv.estimate == 3.0
    assert iv.low == pytest.approx(3 - half, abs=1e-5) and iv.high == pytest.approx(3 + half, abs=1e-5)
    assert iv.method == "t over seeds (n=5)"
    # Two values: t_{0.975,1} = 12.706.
    iv = intervals.t_interval([0.80, 0.82])
    assert iv.high - iv.low == pytest.approx(2 * 12.7062 * math.sqrt(0.0002) / math.sqrt(2), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        intervals.t_interval([0.8])
    lo, hi = intervals.t_bounds([0.5, 0.5], [0.1, 0.1], [1, 4])
    assert math.isnan(lo[0]) and hi[1] == pytest.approx(0.5 + 3.182446 * 0.1 / 2, abs=1e-6)


def test_bootstrap_width_matches_binomial_standard_error():
    n, p = 1000, 0.8
    ref = np.ones(n)
    pred = np.zeros(n)
    pred[: int(p * n)] = 1  # exactly 80% correct
    iv = intervals.bootstrap_ci("accuracy", pred, ref, b=2000, seed=3)
    textbook = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert iv.estimate == pytest.approx(0.8)
    assert iv.high - iv.low == pytest.approx(textbook, rel=0.10)
    assert iv.low < 0.8 < iv.high
    assert intervals.bootstrap_ci("accuracy", pred, ref, b=200, seed=3) == intervals.bootstrap_ci(
        "accuracy", pred, ref, b=200, seed=3)  # seeded: reproducible


@pytest.mark.parametrize("k", [2, 3])
def test_vectorised_metrics_equal_the_project_metrics(k):
    rng = np.random.default_rng(k)
    ref = rng.integers(0, k, 500).astype(float)
    pred = np.where(rng.random(500) < 0.6, ref, rng.integers(0, k, 500)).astype(float)
    names = ["accuracy", "matthews_correlation"] + (["f1"] if k == 2 else [])
    want = compute_metrics(names, pred, ref)
    for name in names:
        assert resampled_metrics.metric(name, pred, ref) == pytest.approx(want[name], abs=1e-12), name
    x = rng.normal(size=300)
    y = np.round(x + rng.normal(size=300), 1)  # ties for spearman
    want = compute_metrics(["pearson", "spearmanr"], x, y)
    assert resampled_metrics.metric("pearson", x, y) == pytest.approx(want["pearson"], abs=1e-12)
    assert resampled_metrics.metric("spearmanr", x, y) == pytest.approx(want["spearmanr"], abs=1e-12)
    # Degenerate cases follow glue_metric: constant predictions give MCC 0 and Pearson 0.
    assert resampled_metrics.metric("matthews_correlation", np.ones(10), ref[:10]) == 0.0
    assert resampled_metrics.metric("pearson", np.ones(10), y[:10]) == 0.0
    # A resample row equals the metric on the resampled arrays.
    idx = resampled_metrics.resample_indices(500, 5, seed=1)
    rows = resampled_metrics.batch_metric("matthews_correlation", pred, ref, idx)
    assert rows[2] == pytest.approx(compute_metrics(["matthews_correlation"], pred[idx[2]], ref[idx[2]])
                                    ["matthews_correlation"], abs=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        resampled_metrics.metric("bleu", [1.0], [1.0])
    with pytest.raises(ValueError, match="equal length"):
        resampled_metrics.metric("accuracy", [1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        score_distributions.expected_max([0.5, float("nan")])


def test_paired_bootstrap_known_answers():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 2, 600).astype(float)
    chance = [rng.integers(0, 2, 600).astype(float) for _ in range(3)]
    same = example_bootstrap.paired_bootstrap("accuracy", chance, [c.copy() for c in chance], ref, b=500)
    assert same.delta == 0.0 and same.p == 1.0 and same.low == same.high == 0.0
    perfect = example_bootstrap.paired_bootstrap("accuracy", [ref.copy()], chance, ref, b=500)
    assert perfect.delta == pytest.approx(1 - np.mean([np.mean(c == ref) for c in chance]))
    assert perfect.p == pytest.approx(1 / 501) and perfect.low > 0.4
    # A small but consistent gain: B fixes 4% of A's errors on the same examples -> significant
    # because the test is paired (an unpaired comparison of two ~0.5 accuracies would not see it).
    better = chance[0].copy()
    wrong = np.flatnonzero(better != ref)[:24]
    better[wrong] = ref[wrong]
    gain = example_bootstrap.paired_bootstrap("accuracy", [better], [chance[0]], ref, b=1000)
    assert gain.delta == pytest.approx(24 / 600) and gain.p < 0.01 and gain.low > 0


def test_paired_bootstrap_p_values_are_calibrated_under_the_null():
    # Two methods of equal skill (independent 70%-correct predictions): p < 0.05 in ~5% of cases.
    rng = np.random.default_rng(7)
    rejections = 0
    trials = 120
    for _ in range(trials):
        ref = rng.integers(0, 2, 200).astype(float)
        a, b = (np.where(rng.random(200) < 0.7, ref, 1 - ref) for _ in range(2))
        rejections += example_bootstrap.paired_bootstrap("accuracy", [a], [b], ref, b=300, seed=1).p < 0.05
    assert rejections / trials < 0.12


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    adj = multiple_comparisons.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert multiple_comparisons.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = multiple_comparisons.holm([0.02, float("nan")])  # NaN does not count towards m
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_expected_max_hand_computed():
    mean, std = score_distributions.expected_max([3, 1, 2])
    assert mean == pytest.approx([2.0, 8 / 3, 3.0])  # n=2: (1*2 + 2*3) / C(3,2)
    assert std[-1] == 0.0 and std[0] == pytest.approx(math.sqrt(2 / 3))
    # with ties: sorted .5 .7 .9 .9; n=2 weights (0,1,2,3)/6; n=3 weights (0,0,1,3)/4
    mean, _ = score_distributions.expected_max([0.5, 0.9, 0.7, 0.9])
    assert mean == pytest.approx([0.75, 5.2 / 6, 0.9, 0.9])


def test_aso_known_cases():
    rng = np.random.default_rng(1)
    b = rng.normal(0.80, 0.01, 5)
    a = b + 0.2  # a dominates b completely
    assert score_distributions.aso_eps_min(a, b) < 0.05
    assert score_distributions.aso_eps_min(b, a) > 0.95
    # Identical scores: violation ratio exactly 0.5, so eps_min (an upper bound) is >= 0.5: no claim.
    assert score_distributions._violation_ratio(np.sort(b)[None], np.sort(b)[None], 0.005)[0] == 0.5
    assert score_distributions.aso_eps_min(b, b.copy()) >= 0.5
    with pytest.raises(ValueError, match="finite"):
        score_distributions.aso_eps_min([], [1.0])


def test_aso_agrees_with_deepsig():
    import deepsig  # a dev dependency (pyproject.toml): missing, the setup is broken, not the test skipped
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.3, 1, 10), rng.normal(0.0, 1, 10)
    ref = deepsig.aso(a, b, seed=0, show_progress=False)
    assert score_distributions.aso_eps_min(a, b, b=2000) == pytest.approx(ref, abs=0.05)


def test_rank_with_ties_rule():
    # A beats C; B ties A and C -> A and B rank 1 (not shown worse than anything), C rank 2.
    ranks = multiple_comparisons.rank_with_ties(["A", "B", "C"], {("A", "C")})
    assert ranks == {"A": 1, "B": 1, "C": 2}
    assert multiple_comparisons.rank_with_ties(["A", "B", "C"], {("A", "B"), ("A", "C"), ("B", "C")}) == {"A": 1, "B": 2, "C": 3}
    assert multiple_comparisons.significant(0.01, 0.1, 0.3) and not multiple_comparisons.significant(0.01, -0.1, 0.3)
    assert not multiple_comparisons.significant(0.2, 0.1, 0.3) and not multiple_comparisons.significant(float("nan"), 0.1, 0.3)


def test_holm_floor_decides_whether_a_family_can_be_significant():
    """A bootstrap p is at least 1/(B+1), so Holm over m comparisons cannot go below m/(B+1): with
    120 comparisons and B=1,000 a perfect method against a chance one still reads tie. min_resamples
    gives a B where the same data is significant (10·m/alpha, rounded up to thousands)."""
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 2, 400)
    perfect, chance = ref.copy(), rng.integers(0, 2, 400)
    small = example_bootstrap.paired_bootstrap("accuracy", [perfect], [chance], ref, b=1000)
    assert small.p == pytest.approx(1 / 1001)  # no resample comes near 0
    assert multiple_comparisons.holm([small.p] * 120).min() == pytest.approx(120 / 1001) == multiple_comparisons.holm_floor(120, 1000)
    assert multiple_comparisons.holm_floor(120, 1000) > multiple_comparisons.ALPHA
    assert multiple_comparisons.min_resamples(50) == 10_000 and multiple_comparisons.min_resamples(120) == 24_000 and multiple_comparisons.min_resamples(1) == 1000
    b = multiple_comparisons.min_resamples(120)
    assert multiple_comparisons.holm_floor(120, b) <= multiple_comparisons.ALPHA / 10
    big = example_bootstrap.paired_bootstrap("accuracy", [perfect], [chance], ref, b=b)
    assert multiple_comparisons.holm([big.p] * 120).max() < multiple_comparisons.ALPHA
