"""The gate's paired per-example test on hand-made records and prediction files (fast, no training).

What must hold: a clear, consistent regression fails and names the cell; identical predictions
pass; ids that differ are intersected (with a note) or refused (too few in common, or references
that disagree); a baseline without predictions, or schema-1 candidate records, leave the existing
rules in charge; a tampered side file is exit 2; and, the reason for the design, healthy seeds
that shift the whole model fail the naive example-only bootstrap far more often than alpha but not
the default design (docs/regress.md, "The paired test").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.records import schema as R
from bench.regress.__main__ import main
from bench.regress.baseline import load_baseline
from bench.regress.paired import components, fails, finish, holm, paired_test
from bench.regress.predictions import align

N = 600


def make_record(folder: Path, seed: int, preds, refs, ids=None, task="sst2", method="lora", metric="accuracy",
                with_predictions=True) -> Path:
    """One ok record (schema 2) and its predictions file, as bench.sweep.execute writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(range(len(refs))) if ids is None else [int(i) for i in ids]
    preds, refs = [float(p) if metric in ("pearson", "spearmanr") else int(p) for p in preds], \
        [float(r) if metric in ("pearson", "spearmanr") else int(r) for r in refs]
    stem = f"m__{task}__{method}__s{seed}__abcdef12"
    from bench.regress.paired import metric_value
    rec = {"schema_version": 2 if with_predictions else 1, "status": "ok", "run_id": stem, "sweep": folder.name,
           "model": "m", "task": task, "method": method, "method_label": method, "seed": seed, "config": {"x": 1},
           "config_hash": "ab" * 32, "headline_metric": metric, "metrics": {metric: metric_value(metric, preds, refs)},
           "params": {"trainable": 10, "total": 100}, "env": {"device": "cpu"}}
    if with_predictions:
        name = stem + R.PREDICTIONS_SUFFIX
        R.write_predictions(folder / name, {
            "format": "peft-bench-predictions", "version": 1, "run_id": stem, "task": task, "kind": "classification",
            "num_labels": 2, "splits": {
                "dev": {"role": "eval", "metric_suffix": "", "ids": ids, "predictions": preds, "references": refs},
                "selection": {"role": "selection", "metric_suffix": "", "ids": [0], "predictions": [0], "references": [1]}}})
        rec["predictions"] = name
    return R.write_record(folder / f"{stem}.json", rec)


def seed_pool(n_seeds: int, shift_sd: float, rng: np.random.Generator, n: int = N):
    """Healthy seeds: each example has an easiness shared by all seeds, each seed a model-wide shift
    (what real seeds do: a better or worse model, not independent example flips)."""
    refs = rng.integers(0, 2, n)
    easy = rng.normal(1.5, 1.5, n)
    out = {}
    for s in range(n_seeds):
        pc = 1 / (1 + np.exp(-(easy + rng.normal(0, shift_sd))))
        out[s] = np.where(rng.random(n) < pc, refs, 1 - refs)
    return refs, out


def flip(preds, refs, k, rng):
    """k correct predictions made wrong: a drop of k/N in accuracy."""
    p = preds.copy()
    pick = rng.choice(np.flatnonzero(p == refs), k, replace=False)
    p[pick] = 1 - p[pick]
    return p


@pytest.fixture()
def pool():
    return seed_pool(3, 0.3, np.random.default_rng(7))


def write_sweep(folder: Path, refs, seeds: dict, **kw) -> Path:
    for s, p in seeds.items():
        make_record(folder, s, p, refs, **kw)
    return folder


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def save(capsys, folder: Path, out: Path, *extra) -> Path:
    rc, _stdout, err = run(capsys, "save", folder, "--name", "bl", "--out", out, *extra)
    assert rc == 0, err
    return out / "bl.json"


# -- the statistics ------------------------------------------------------------------------------

def test_identical_predictions_pass(pool):
    refs, seeds = pool
    r = paired_test("accuracy", refs, seeds, seeds)
    assert r.pairing == "matched" and r.delta == 0 and r.p == 1.0
    assert not fails(r, 0.05, 0.005, "higher")


def test_consistent_regression_is_detected_and_one_sided(pool):
    refs, seeds = pool
    rng = np.random.default_rng(1)
    worse = {s: flip(p, refs, 6, rng) for s, p in seeds.items()}  # 1 point on 600 examples, every seed
    r = paired_test("accuracy", refs, seeds, worse)
    assert r.delta == pytest.approx(-0.01) and r.se_seeds == 0 and r.p < 1e-3
    assert fails(r, 0.05, 0.005, "higher")
    better = paired_test("accuracy", refs, worse, seeds)  # the same change the other way round
    assert better.p > 0.99 and not fails(better, 0.05, 0.005, "higher")
    both = paired_test("accuracy", refs, worse, seeds, direction="both")
    assert both.p < 2e-3 and fails(both, 0.05, 0.005, "both")


def test_min_effect_keeps_a_significant_but_tiny_change(pool):
    refs, seeds = pool
    rng = np.random.default_rng(2)
    worse = {s: flip(p, refs, 2, rng) for s, p in seeds.items()}  # -0.0033 in every seed
    r = paired_test("accuracy", refs, seeds, worse)
    assert r.p < 0.05
    assert not fails(r, 0.05, 0.005, "higher") and fails(r, 0.05, 0.001, "higher")


def test_seed_term_needs_two_matched_or_three_seeds(pool):
    refs, seeds = pool
    msg = paired_test("accuracy", refs, {0: seeds[0]}, {1: seeds[1]})
    assert isinstance(msg, str) and "seed spread" in msg
    assert not isinstance(paired_test("accuracy", refs, {0: seeds[0]}, {1: seeds[1]}, design="examples"), str)
    r = paired_test("accuracy", refs, {0: seeds[0]}, {1: seeds[1], 2: seeds[2]})
    assert r.pairing == "unmatched" and r.df > 0


def test_holm_adjusts_across_cells():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})


def test_aa_false_alarms_need_the_seed_term():
    """Healthy seeds split 3 vs 3 (other seeds, as after any change that moves the random stream):
    the example-only bootstrap flags seed-to-seed differences; the default design does not."""
    rng = np.random.default_rng(11)
    refs, seeds = seed_pool(10, 0.5, rng)
    naive = default = 0
    trials = 40
    for t in range(trials):
        order = rng.permutation(10)
        base = {int(s): seeds[int(s)] for s in order[:3]}
        cand = {int(s): seeds[int(s)] for s in order[3:6]}
        comp = components("accuracy", refs, base, cand, n_boot=500, rng_seed=t)
        naive += fails(finish(comp, "examples"), 0.05, 0.005, "higher")
        default += fails(finish(comp, "seeds+examples"), 0.05, 0.005, "higher")
        # the same split with the candidate renamed to the baseline's seed numbers: matched pairing
        renamed = dict(zip(base, cand.values()))
        comp = components("accuracy", refs, base, renamed, n_boot=500, rng_seed=t)
        default += fails(finish(comp, "seeds+examples"), 0.05, 0.005, "higher")
    assert naive / trials > 0.15, naive  # 3 x alpha at least
    assert default / (2 * trials) <= 0.1, default


def test_align_intersects_ids_and_refuses_other_examples(pool):
    refs, seeds = pool
    ids = np.arange(N)
    base = {s: (ids, p.astype(float), refs.astype(float)) for s, p in seeds.items()}
    cand = {s: (ids[100:], p[100:].astype(float), refs[100:].astype(float)) for s, p in seeds.items()}
    r, b, c, note = align(base, cand)
    assert len(r) == N - 100 and "paired on the 500 example ids common to all seeds" in note
    assert np.array_equal(b[0], seeds[0][100:]) and np.array_equal(c[0], seeds[0][100:])
    shuffled = {s: (ids[::-1], p[::-1].astype(float), refs[::-1].astype(float)) for s, p in seeds.items()}
    r, b, c, note = align(base, shuffled)  # same examples, another order: aligned by id, no note
    assert note == "" and np.array_equal(c[1], seeds[1])
    assert "only 0 example id(s) common to all seeds" in align(base, {0: (ids + N, seeds[0], refs)})
    other = {0: (ids, seeds[0].astype(float), 1.0 - refs)}
    assert "references of candidate seed 0 differ on 600 of 600" in align(base, other)


# -- through the CLI -----------------------------------------------------------------------------

def test_save_stores_predictions_and_check_catches_a_regression(pool, tmp_path, capsys):
    refs, seeds = pool
    bl = save(capsys, write_sweep(tmp_path / "base", refs, seeds), tmp_path / "bl")
    doc = json.loads(bl.read_text())
    side = bl.parent / doc["predictions"]["file"]
    assert doc["predictions"]["n_cells"] == 1 and side.name == "bl.predictions.json.gz" and side.stat().st_size < 20_000
    rc, out, _ = run(capsys, "check", "--baseline", bl, tmp_path / "base")
    assert rc == 0 and "gate: PASS" in out and "1 cell(s) tested" in out
    rng = np.random.default_rng(3)
    worse = write_sweep(tmp_path / "worse", refs, {s: flip(p, refs, 9, rng) for s, p in seeds.items()})
    rc, out, _ = run(capsys, "check", "--baseline", bl, worse)
    assert rc == 1, out
    assert "REGRESSED: m/lora/sst2\n    - paired accuracy: delta -0.0150 on 600 examples, matched seeds 0,1,2" in out
    assert "accuracy 0." not in out.split("REGRESSED")[1]  # the per-cell rule alone would have passed it
    rc, out, _ = run(capsys, "check", "--baseline", bl, worse, "--no-paired")
    assert rc == 0 and "paired:    off" in out


def test_baseline_without_predictions_falls_back(pool, tmp_path, capsys):
    refs, seeds = pool
    bl = save(capsys, write_sweep(tmp_path / "base", refs, seeds), tmp_path / "bl", "--no-predictions")
    assert "predictions" not in json.loads(bl.read_text()) and not (tmp_path / "bl" / "bl.predictions.json.gz").exists()
    rng = np.random.default_rng(3)
    worse = write_sweep(tmp_path / "worse", refs, {s: flip(p, refs, 9, rng) for s, p in seeds.items()})
    rc, out, _ = run(capsys, "check", "--baseline", bl, worse)
    assert rc == 0 and "paired:    not available: the baseline stores no per-example predictions" in out
    assert "predictions" not in load_baseline(str(bl))[0]  # the older baseline format, unchanged


def test_schema1_candidate_records_skip_the_paired_test(pool, tmp_path, capsys):
    refs, seeds = pool
    bl = save(capsys, write_sweep(tmp_path / "base", refs, seeds), tmp_path / "bl")
    old = write_sweep(tmp_path / "old", refs, seeds, with_predictions=False)
    rc, out, _ = run(capsys, "check", "--baseline", bl, old)
    assert rc == 0, out
    assert "paired test skipped: no candidate predictions" in out and "has no predictions (schema 1)" in out


def test_misaligned_candidate_ids(pool, tmp_path, capsys):
    refs, seeds = pool
    bl = save(capsys, write_sweep(tmp_path / "base", refs, seeds), tmp_path / "bl")
    part = tmp_path / "part"
    for s, p in seeds.items():
        make_record(part, s, p[:400], refs[:400], ids=range(400))
    rc, out, _ = run(capsys, "check", "--baseline", bl, part)
    assert rc == 0 and "paired on the 400 example ids common to all seeds (baseline had 600, candidate 400)" in out
    elsewhere = tmp_path / "elsewhere"
    for s, p in seeds.items():
        make_record(elsewhere, s, p, refs, ids=range(N, 2 * N))
    rc, out, _ = run(capsys, "check", "--baseline", bl, elsewhere)
    assert rc == 0 and "paired test skipped: only 0 example id(s) common to all seeds" in out


def test_tampered_or_missing_side_file_is_exit_2(pool, tmp_path, capsys):
    refs, seeds = pool
    bl = save(capsys, write_sweep(tmp_path / "base", refs, seeds), tmp_path / "bl")
    side = bl.parent / "bl.predictions.json.gz"
    side.write_bytes(side.read_bytes() + b"x")
    rc, _, err = run(capsys, "check", "--baseline", bl, tmp_path / "base")
    assert rc == 2 and err.count("\n") == 1 and f"baseline predictions {side}: sha256 differs" in err
    side.unlink()
    rc, _, err = run(capsys, "check", "--baseline", bl, tmp_path / "base")
    assert rc == 2 and f"baseline predictions {side} (named by {bl}): cannot read" in err
    doc = json.loads(bl.read_text())
    doc["predictions"]["file"] = "../elsewhere.gz"
    bl.write_text(json.dumps(doc))
    rc, _, err = run(capsys, "check", "--baseline", bl, tmp_path / "base")
    assert rc == 2 and "predictions: expected {file: a file name beside the baseline" in err


def test_regression_metric_pearson(tmp_path, capsys):
    rng = np.random.default_rng(4)
    refs = rng.uniform(0, 5, N)
    seeds = {s: refs + rng.normal(0, 1.0, N) + rng.normal(0, 0.1) for s in range(3)}
    bl = save(capsys, write_sweep(tmp_path / "base", refs, seeds, task="stsb", metric="pearson"), tmp_path / "bl")
    noisy = {s: p + rng.normal(0, 1.5, N) for s, p in seeds.items()}  # pearson ~0.82 -> ~0.55
    rc, out, _ = run(capsys, "check", "--baseline", bl,
                     write_sweep(tmp_path / "noisy", refs, noisy, task="stsb", metric="pearson"))
    assert rc == 1 and "paired pearson: delta -0." in out


def test_two_level_design_false_alarms_stay_near_alpha_and_regressions_are_caught():
    """The report's seed-aware test as the gate's `two-level` design: healthy seeds split 3 vs 3 (A/A) fail
    at about alpha; a 2-point drop on every seed of the candidate fails."""
    rng = np.random.default_rng(11)
    refs, seeds = seed_pool(10, 0.5, rng)
    alarms, trials = 0, 40
    for t in range(trials):
        order = rng.permutation(10)
        base = {int(s): seeds[int(s)] for s in order[:3]}
        cand = {int(s): seeds[int(s)] for s in order[3:6]}
        alarms += fails(paired_test("accuracy", refs, base, cand, design="two-level", n_boot=500, rng_seed=t),
                        0.05, 0.005, "higher")
    assert alarms / trials <= 0.1, alarms
    base = {s: seeds[s] for s in range(3)}
    worse = {s: flip(p, refs, 12, rng) for s, p in base.items()}
    r = paired_test("accuracy", refs, base, worse, design="two-level", n_boot=500)
    assert r.design == "two-level" and r.df > 0 and r.p < 0.01 and fails(r, 0.05, 0.005, "higher")


def test_with_seeds_on_both_sides_the_paired_test_alone_gates_the_headline(tmp_path, capsys):
    """Seeds that are right on different examples at the same rate: the per-cell rule (pooled sd 0, so the
    0.01 floor) calls a 1.3-point drop a regression, while the seed-aware test, which sees how much the
    examples alone move the score, does not. With >= 2 seeds a side the paired test decides (the rule's breach
    is a note); with one seed a side the rule still gates."""
    rng = np.random.default_rng(11)
    refs = rng.integers(0, 2, N)

    def right_on(k):
        preds = 1 - refs
        hit = rng.choice(N, size=k, replace=False)
        preds[hit] = refs[hit]
        return preds

    base = write_sweep(tmp_path / "base", refs, {s: right_on(420) for s in (0, 1, 2)})
    cand = write_sweep(tmp_path / "cand", refs, {s: right_on(412) for s in (3, 4, 5)})
    bl = save(capsys, base, tmp_path / "bl")
    rc, out, _ = run(capsys, "check", "--baseline", bl, cand)
    assert rc == 0 and "gate: PASS" in out, out
    assert "accuracy 0.7000 -> 0.6867" in out and "not gated on it" in out
    one_base = write_sweep(tmp_path / "base1", refs, {0: right_on(420)})
    one_cand = write_sweep(tmp_path / "cand1", refs, {3: right_on(412)})
    rc, out, _ = run(capsys, "check", "--baseline", save(capsys, one_base, tmp_path / "bl1"), one_cand)
    assert rc == 1 and "REGRESSED" in out and "accuracy 0.7000 -> 0.6867 (delta -0.0133, tolerance 0.0100" in out
