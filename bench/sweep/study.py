"""The tuning protocol: an equal learning-rate budget per method, chosen on held-out train data,
then rerun with several seeds. `python -m bench experiment=study` (docs/protocol.md).

Why a protocol and not a fixed rate: a shared or hand-picked rate decides rankings by itself (peft's
own comparison lost prompt tuning 17.7 points to one), and a rate picked on the reported split
inflates what is reported (Chen et al. 2022). Here every method gets `study.trials` rates, log-spaced
over its documented range, trained with one seed; the rate with the best *selection-split* score
(carved from train, `data.selection`) wins; that rate is rerun with `study.seeds` seeds, and only
those runs are reported. The reported split never feeds a choice, and every trial is kept so the
report can draw expected-best-score-versus-budget curves (Dodge et al. 2019).

One Hydra job = one (model, task, method) protocol; a multirun over methods x tasks is the grid.
Each cell still goes through `bench.sweep.execute` (isolation, resume, failure records), so an
interrupted study resumes where it stopped.

`study.prune.enabled` (off by default) makes the trials cheaper by successive halving with one cut:
every rate trains its first `rung_epochs` epochs (`train.stop_after_epochs`: the full-length
schedule, stopped early, so these epochs are exactly the full run's first ones); the best
`trials // eta` by selection-split score go on to the full length, continuing from the state their
first rung saved (weights, AdamW moments, schedule, RNG: bench/training/rung_state.py), so the promoted run is
bit for bit the trial an exhaustive study trains and the first rung's epochs are not trained twice;
the rate is chosen among those full-length runs, on the selection split as always.
`benchmarks/prune_replay.py` replays the rule on an exhaustive study's records (what it would select,
what it would save).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from bench.records import schema as R

log = logging.getLogger("bench")


def lr_grid(low: float, high: float, n: int) -> list[float]:
    """n rates evenly spaced on a log scale from low to high inclusive, to 3 significant digits."""
    if n == 1:
        return [float(f"{math.sqrt(low * high):.3g}")]
    return [float(f"{low * (high / low) ** (i / (n - 1)):.3g}") for i in range(n)]


def study_settings(cfg: DictConfig) -> dict:
    """study.* and the rate grid. The rules (types and ranges, a range for this method, no fixed
    train.lr, a selection split) are bench.config.schema' (StudySettings, check_study), which the CLI ran
    before any cell; checked again here because run_study may be called without the CLI."""
    from bench.config.schema import StudySettings, check_section, lr_search_range
    from bench.recipe.validate import check_study

    st = OmegaConf.to_container(cfg.study, resolve=True)
    method = str(cfg.method.get("name") or "method")
    check_section("study", st, StudySettings)
    check_study(cfg, st, method)
    rng = list(lr_search_range(st, dict(OmegaConf.to_container(cfg.method, resolve=True), name=method)))
    trials, seeds, trial_seed = st["trials"], st["seeds"], st.get("trial_seed", 0)
    prune = dict({"enabled": False, "eta": 3, "rung_epochs": 1}, **(st.get("prune") or {}))
    return {"method": method, "trials": trials, "seeds": seeds, "trial_seed": trial_seed, "prune": prune,
            "grid": lr_grid(float(rng[0]), float(rng[1]), trials), "range": [float(rng[0]), float(rng[1])]}


def survivors(trials: int, eta: int) -> int:
    """How many trials continue past the first rung: the best 1/eta, at least one."""
    return max(1, trials // eta)


def promote(scores: list[float | None], keep: int) -> list[int]:
    """Indices of the `keep` best first-rung scores, in grid order; ties go to the smaller rate (as in
    `choose`); a failed trial is never promoted."""
    ranked = sorted((i for i, v in enumerate(scores) if v is not None), key=lambda i: (-scores[i], i))
    return sorted(ranked[:keep])


def planned_cells(cfg) -> int:
    """Cells one job runs through bench.sweep.execute (the sweep line's total, bench/training/progress.py): 1; for
    a study, its trials (+ the survivors' full runs when pruned) and the seeds besides the trial seed."""
    st = cfg.get("study") or {}
    if not st.get("enabled"):
        return 1
    trials, seeds, trial_seed = int(st.get("trials")), int(st.get("seeds")), int(st.get("trial_seed", 0) or 0)
    prune = st.get("prune") or {}
    kept = survivors(trials, int(prune.get("eta", 3))) if prune.get("enabled") else 0
    return trials + kept + seeds - (1 if trial_seed < seeds else 0)


def _cell(cfg: DictConfig, lr: float, seed: int, sweep: str, block: dict, stop_after: int | None = None) -> DictConfig:
    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.train.lr = lr
        c.train.seed = seed
        c.sweep_name = sweep
        c.study_cell = block  # excluded from the config hash; copied into the record's `study`
        if stop_after:  # a first-rung trial: its own config hash; inference cost of a partial run is not wanted
            c.train.stop_after_epochs = stop_after
            if c.get("inference") is not None:
                c.inference.enabled = False
    return c


def _mark(path: Path, **fields) -> None:
    """Add what the study decided after a trial ran (pruned or promoted) to its record's `study`
    block (excluded from the config hash, so resume still finds the record)."""
    if not (path.is_file() and path.suffix == ".json"):
        return
    try:
        rec = R.read_record(path)
    except ValueError:
        return
    rec.pop("_path", None)
    rec["study"] = dict(rec.get("study") or {}, **fields)
    R.write_record(path, rec)


def _pruned_trials(cfg, s: dict, base: dict, sweep: str, own: list, headline: dict):
    """Successive halving with one cut: every rate for `rung_epochs`, the best `trials // eta` to the
    full length. Returns (full-length record paths, their scores (None where pruned), statuses, what
    the cut decided)."""
    from bench.sweep.execute import execute

    k, eta = int(s["prune"]["rung_epochs"]), int(s["prune"]["eta"])
    states = Path(str(cfg.results_dir)) / sweep / "trials" / ".rung_state"
    state_of = [states / f"{cfg.model.name}__{cfg.task.name}__{s['method']}__t{i}__e{k}.pt" for i in range(len(s["grid"]))]
    rung_paths, statuses = [], []
    for i, lr in enumerate(s["grid"]):
        block = dict(base, role="trial", trial_index=i, lr=lr, rung=1, rung_epochs=k, rung_state=str(state_of[i]))
        status, path = execute(_cell(cfg, lr, s["trial_seed"], f"{sweep}/trials", block, stop_after=k), own)
        statuses.append(status)
        rung_paths.append(path)
    rung_scores = [_score(p, headline) for p in rung_paths]
    kept = promote(rung_scores, survivors(len(s["grid"]), eta))
    paths: list = [None] * len(s["grid"])
    for i in kept:
        # continues from its rung's saved state (bit for bit the uninterrupted trial, same config hash);
        # without the file (a rung run by an older version) it trains from the start, to the same result
        block = dict(base, role="trial", trial_index=i, lr=s["grid"][i], rung=2, pruned=False,
                     continue_from=str(state_of[i]))
        status, paths[i] = execute(_cell(cfg, s["grid"][i], s["trial_seed"], f"{sweep}/trials", block), own)
        statuses.append(status)
        _mark(paths[i], rung=2, pruned=False)
    if all(st == "ok" for st in statuses):  # every promoted trial is done: the states are spent
        for f in state_of:
            f.unlink(missing_ok=True)
    for i, p in enumerate(rung_paths):
        _mark(p, pruned=i not in kept, promoted=i in kept, **({} if i in kept else {"pruned_at_rung": 1}))
    scores = [_score(paths[i], headline) if i in kept else None for i in range(len(s["grid"]))]
    decided = {"rung_epochs": k, "eta": eta, "rung_scores": rung_scores, "promoted": kept,
               "pruned": [i for i in range(len(s["grid"])) if i not in kept]}
    return paths, scores, statuses, decided


def _score(path: Path, headline_of: dict) -> float | None:
    """The trial's selection score on the selection split (the task's `select_metric`, default the
    headline; MRPC: mean of F1 and accuracy, bench.records.results.selection_keys); None: failed or unreadable."""
    from bench.records.results import record_selection_keys, selection_name, selection_score

    try:
        rec = R.read_record(path)
    except ValueError:
        return None
    if rec.get("status") != "ok":
        return None
    keys = record_selection_keys(rec)
    headline_of["key"] = selection_name(keys)
    v = selection_score(keys, rec.get("selection_metrics"))
    return v if v is not None and math.isfinite(v) else None


def _select_text(cfg: DictConfig) -> str:
    """What the study chooses on, in words for its records (`study.selection`)."""
    from bench.records.results import selection_keys, selection_name

    task = OmegaConf.to_container(cfg.task, resolve=False)
    return selection_name(selection_keys(task, str(task.get("headline"))))


def choose(grid: list[float], scores: list[float | None]) -> tuple[float, int]:
    """Best selection score wins; a failed trial (e.g. a diverged loss) never does; ties go to the
    smaller rate (the first in the grid). Raises when every trial failed."""
    best = None
    for i, s in enumerate(scores):
        if s is not None and (best is None or s > scores[best]):
            best = i
    if best is None:
        raise RuntimeError("every learning-rate trial failed; see the trial records' errors")
    return grid[best], best


def _copy_as_final(src: Path, dst: Path, block: dict, sweep: str) -> None:
    """The trial at the selected rate and the trial seed *is* the final run for that seed (same
    config, same hash): copy it instead of training it again, marked as final."""
    rec = json.loads(src.read_text(encoding="utf-8"))
    rec["study"] = block
    rec["sweep"] = sweep
    if rec.get("predictions"):
        shutil.copyfile(src.parent / rec["predictions"], dst.parent / rec["predictions"])
    rec["study"]["copied_from"] = str(Path(src.parent.name) / src.name)
    R.write_record(dst, rec)


def run_study(cfg: DictConfig, overrides: list[str] | None) -> str:
    """Run (or resume) the protocol for this job's (model, task, method); returns ok / failed."""
    from bench.sweep.execute import execute, identity, record_path

    s = study_settings(cfg)
    sweep = str(cfg.sweep_name)
    own = [o for o in (overrides or []) if not o.lstrip("+~").startswith(("train.lr=", "train.seed="))]
    base = {"name": sweep, "n_trials": s["trials"], "lr_grid": s["grid"], "lr_range": s["range"],
            "trial_seed": s["trial_seed"], "selection": f"selection split, {_select_text(cfg)}"}
    headline: dict = {}
    pruning = None
    if s["prune"]["enabled"]:
        paths, scores, statuses, pruning = _pruned_trials(cfg, s, base, sweep, own, headline)
    else:
        paths, statuses = [], []
        for i, lr in enumerate(s["grid"]):
            c = _cell(cfg, lr, s["trial_seed"], f"{sweep}/trials", dict(base, role="trial", trial_index=i, lr=lr))
            status, path = execute(c, own)
            statuses.append(status)
            paths.append(path)
        scores = [_score(p, headline) for p in paths]
    try:
        best_lr, best_i = choose(s["grid"], scores)
    except RuntimeError as exc:
        log.error("study %s / %s: %s", cfg.task.name, s["method"], exc)
        return "failed"
    log.info("study %s / %s: selected lr %g (selection %s %s; grid %s)", cfg.task.name, s["method"], best_lr,
             headline.get("key"), " ".join("-" if v is None else f"{v:.4f}" for v in scores),
             " ".join(f"{g:g}" for g in s["grid"]))
    if pruning:
        log.info("study %s / %s: pruned after %d epoch(s): trials %s (first-rung scores %s)", cfg.task.name,
                 s["method"], pruning["rung_epochs"], pruning["pruned"],
                 " ".join("-" if v is None else f"{v:.4f}" for v in pruning["rung_scores"]))
    final_block = dict(base, role="final", lr=best_lr, selected_lr=best_lr, selected_trial=best_i,
                       trial_scores=scores, **({"pruning": pruning} if pruning else {}))
    for seed in range(s["seeds"]):
        c = _cell(cfg, best_lr, seed, sweep, dict(final_block, seed=seed))
        if seed == s["trial_seed"]:
            dst = record_path(c, identity(c, own))
            if not (cfg.get("resume", True) and dst.is_file()):
                _copy_as_final(paths[best_i], dst, dict(final_block, seed=seed), sweep)
            statuses.append("ok")
            continue
        status, _ = execute(c, own)
        statuses.append(status)
    summary = Path(str(cfg.results_dir)) / sweep / "selected" / f"{cfg.model.name}__{cfg.task.name}__{s['method']}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"model": str(cfg.model.name), "task": str(cfg.task.name), "method": s["method"],
                                   "headline": headline.get("key"), "grid": s["grid"], "scores": scores,
                                   "selected_lr": best_lr, "seeds": s["seeds"], "pruning": pruning,
                                   "config": OmegaConf.to_container(cfg.study, resolve=True)}, indent=2))
    return "failed" if "failed" in statuses else "ok"
