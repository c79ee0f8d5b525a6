"""The learning-rate search (bench/sweep/search.py): past the edge within the budget, up to the hard
limit; the first rung's no-cut rule; as pure functions of given scores."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.sweep.search import (
    chance_score,
    cut_plan,
    hard_limits,
    lr_grid,
    position,
    propose,
    selection_noise,
    step_ratio,
)
from bench.sweep.study import choose

LOW, HIGH = 1e-4, 1e-2


def search(score, trials: int, initial: int = 4, factor: float = 10.0):
    """The study's loop (bench/sweep/study.py _extend) with scores from `score(lr)` (None: failed)."""
    rates = lr_grid(LOW, HIGH, initial)
    scores = [score(r) for r in rates]
    limits, ratio = hard_limits(LOW, HIGH, factor), step_ratio(LOW, HIGH, initial)
    whys = []
    for _ in range(trials - initial):
        nxt = propose(rates, scores, limits, ratio)
        if nxt is None:
            break
        rates.append(nxt[0])
        scores.append(score(nxt[0]))
        whys.append(nxt[1])
    return rates, scores, limits, whys


def test_best_at_the_top_edge_moves_past_it_within_the_budget():
    rates, scores, limits, whys = search(lambda lr: math.log(lr), trials=6)  # rising without end
    assert len(rates) == 6  # the same budget as any other method
    assert rates[4] == pytest.approx(4.64e-2) and rates[4] > HIGH  # one grid step past the declared range
    assert "above the highest rate" in whys[0]
    assert rates[5] == 1e-1 == limits[1]  # the next step (0.215) would cross the hard limit: it lands on it
    where = position(rates, scores, limits)
    assert where["position"] == "hard_limit" and where["side"] == "high"


def test_best_at_the_bottom_edge_moves_below_it():
    rates, scores, limits, whys = search(lambda lr: -math.log(lr), trials=5)
    assert rates[4] == pytest.approx(2.15e-5) and rates[4] < LOW and "below the lowest" in whys[0]
    why = "the trial budget ran out before the search passed this edge"
    assert position(rates, scores, limits) == {"position": "edge", "side": "low", "reason": why}


def test_the_search_stops_at_the_hard_limit_and_spends_the_rest_beside_the_best():
    rates, scores, limits, _ = search(lambda lr: math.log(lr), trials=12)
    assert max(rates) == limits[1] == 1e-1 and min(rates) == LOW  # never past the limit
    assert len(rates) == len(set(rates)) == 12
    assert all(HIGH < r < 1e-1 for r in rates[6:])  # refinement beside the best (the limit)
    assert position(rates, scores, limits)["position"] == "hard_limit"


def test_an_optimum_found_past_the_edge_is_interior():
    peak = 3e-2  # past the declared range, inside the hard limit
    rates, scores, limits, _ = search(lambda lr: -abs(math.log(lr / peak)), trials=6)
    assert max(rates) > peak and position(rates, scores, limits)["position"] == "interior"
    assert choose(rates, scores)[0] == pytest.approx(4.64e-2, rel=0.5)


def test_an_interior_optimum_is_refined_not_extended():
    peak = 1.5e-3
    rates, scores, limits, whys = search(lambda lr: -abs(math.log(lr / peak)), trials=6)
    assert LOW <= min(rates) and max(rates) <= HIGH  # nothing past the declared range
    assert all("between the best rate" in w for w in whys)
    assert position(rates, scores, limits)["position"] == "interior"
    best, _ = choose(rates, scores)
    assert abs(math.log(best / peak)) < abs(math.log(2.15e-3 / peak))  # closer than the grid's best


def test_a_failed_rate_beyond_the_best_bounds_it():
    # the top rate diverges: the best (4.64e-3... the second highest) is interior, nothing goes past the edge
    rates, scores, limits, whys = search(lambda lr: None if lr > 5e-3 else math.log(lr), trials=5)
    assert max(rates) == HIGH and "between the best rate" in whys[0]
    assert position(rates, scores, limits)["position"] == "interior"


def test_the_old_protocol_at_its_edge_is_an_edge():
    grid = lr_grid(LOW, HIGH, 4)
    where = position(grid, [0.1, 0.2, 0.3, 0.4], None, extended=False)
    assert where["position"] == "edge" and where["side"] == "high" and "does not extend" in where["reason"]


def test_pruned_trials_bound_the_search_and_their_rung_scores_pick_the_neighbour():
    grid = lr_grid(LOW, HIGH, 4)
    # only trial 2 went on to full length; 3 was pruned (so 2 is not at the edge), 1 was pruned too
    nxt = propose(grid, [None, None, 0.8, None], hard_limits(LOW, HIGH, 10), step_ratio(LOW, HIGH, 4),
                  side_scores=[0.1, 0.2, 0.5, 0.6])
    assert nxt is not None and grid[2] < nxt[0] < grid[3]  # toward the better neighbour by first-rung score


def test_cut_keeps_the_best_and_every_trial_within_noise():
    kept, why = cut_plan([0.50, 0.62, 0.80, 0.85], keep=1, noise=0.04)
    assert kept == [3] and why.startswith("cut")
    kept, why = cut_plan([0.50, 0.62, 0.82, 0.85], keep=1, noise=0.04)
    assert kept == [2, 3] and "1 within noise" in why
    kept, why = cut_plan([0.80, 0.81, 0.82, 0.83], keep=1, noise=0.04)
    assert kept == [0, 1, 2, 3] and why.startswith("no cut")
    kept, why = cut_plan([0.50, None, 0.82, 0.83], keep=1, noise=0.5)
    assert kept == [0, 2, 3]  # a failed trial never goes on


def test_a_first_rung_near_chance_does_not_cut():
    # STS-B after one epoch: correlations far apart in rank but all within noise of 0 (chance)
    kept, why = cut_plan([0.02, 0.05, 0.11, 0.14], keep=1, noise=0.01, chance=0.0, chance_noise=0.15)
    assert kept == [0, 1, 2, 3] and "chance" in why
    kept, _ = cut_plan([0.02, 0.05, 0.11, 0.40], keep=1, noise=0.01, chance=0.0, chance_noise=0.15)
    assert kept == [3]


def test_selection_noise_from_predictions():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 2, 500).astype(float)
    good = np.where(rng.random(500) < 0.85, ref, 1 - ref)
    close = good.copy()
    close[:5] = 1 - close[:5]  # 5 of 500 flipped: within noise of `good`
    far = np.where(rng.random(500) < 0.55, ref, 1 - ref)
    noise, best_noise = selection_noise(["accuracy"], [far, close, good, None], ref)
    assert math.isinf(noise[3]) and noise[2] == 0.0  # no predictions; the best against itself
    assert 0 < noise[1] < noise[0] < 0.1 and 0.02 < best_noise < 0.05  # 2 x sqrt(.85 .15 / 500) = 0.032
    scores = [float(np.mean(p == ref)) for p in (far, close, good)] + [None]
    kept, _ = cut_plan(scores, keep=1, noise=noise, chance=chance_score(["accuracy"], "classification", ref),
                       chance_noise=best_noise)
    assert kept == [1, 2]
    assert chance_score(["pearson", "spearmanr"], "regression", rng.random(50)) == 0.0


def test_protocol_cost_on_committed_records(tmp_path, capsys):
    """benchmarks/protocol_cost.py on one committed catalogue row (LoRA on SST-2: its rate at the top
    of its range under the 3-seed protocol): the time split adds up and the edge is found."""
    import shutil
    from pathlib import Path

    from benchmarks.protocol_cost import main

    src = Path(__file__).resolve().parents[1] / "results" / "catalogue"
    for f in [*src.glob("minilm__sst2__lora__s*"), *src.glob("trials/minilm__sst2__lora__s*")]:
        dst = tmp_path / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    assert main([str(tmp_path), "--csv", str(tmp_path / "cost.csv")]) == 0
    out = capsys.readouterr().out
    assert "7 timed cells" in out  # 4 first-rung trials, 1 continued, 2 seed reruns (seed 0 was copied)
    assert "chosen rate at an edge of the rates tried: 1 of 1 (100 %; 1 at the top; 0 at the search's hard limit); " \
        "first-rung scores still rising toward a grid edge: 1: sst2/lora (edge, high)" in out
    import pandas as pd

    row = pd.read_csv(tmp_path / "cost.csv").iloc[0]
    assert row["old_position"] == "edge" and row["old_side"] == "high" and row["cells"] == 4 + row[
        "kept_after_rung"] + 2 + 4
    assert row["projected_s"] > row["measured_s"]  # 5 seeds and 2 more trials cost more than they save


def test_the_new_catalogue_preset_keeps_the_committed_cells_hashes():
    """experiment=catalogue (6 trials, 5 seeds, the search, the no-cut rule) builds its first-rung and
    seed cells with the config hashes of the 3-seed protocol's committed records: the study settings
    stay out of the hash, and the initial rates are that protocol's grid."""
    import json
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from bench.config.confdir import conf_dir
    from bench.records.schema import config_hash
    from bench.sweep.execute import identity
    from bench.sweep.study import _cell, study_settings

    src = Path(__file__).resolve().parents[1] / "results" / "catalogue"
    committed = {}
    files = [*src.glob("trials/minilm__stsb__lora__s0__*.json"), *src.glob("minilm__stsb__lora__s1__*.json")]
    for f in files:
        rec = json.loads(f.read_text())
        assert config_hash(rec["config"]) == rec["config_hash"]  # a committed record re-hashes to itself
        committed[(rec["study"].get("rung"), rec["train"]["lr"], rec["seed"])] = rec["config_hash"]
    assert len(committed) == 6  # 4 first-rung trials, the promoted trial's full run, seed 1
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=catalogue", "method=lora", "task=stsb"])
    with open_dict(cfg):
        cfg.hydra = None  # outside a run, as execute sees the job's config
    s = study_settings(cfg)
    assert s["trials"] == 6 and s["seeds"] == 5 and s["grid"] == [1e-4, 4.64e-4, 2.15e-3, 1e-2]
    for (rung, lr, seed), chash in committed.items():
        c = _cell(cfg, lr, seed, "catalogue_v2/trials", {"role": "trial"},
                  stop_after=1 if rung == 1 else None)
        assert identity(c, [])["config_hash"] == chash, (rung, lr, seed)
