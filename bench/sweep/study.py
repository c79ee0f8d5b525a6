"""The tuning protocol: an equal learning-rate budget per method, chosen on held-out train data,
then rerun with several seeds. `python -m bench experiment=study` (docs/protocol.md).

Why a protocol and not a fixed rate: a shared or hand-picked rate decides rankings by itself (peft's
own comparison lost prompt tuning 17.7 points to one), and a rate picked on the reported split
inflates what is reported (Chen et al. 2022). Here every method gets `study.trials` rates, trained
with one seed: `study.search.initial` log-spaced over its documented range, the rest placed by the
search (bench/sweep/search.py: past the edge where the best score sits, up to a hard limit, else
beside the best); the rate with the best *selection-split* score (carved from train,
`data.selection`) wins, and the records say whether it is interior, at the hard limit or at an edge;
that rate is rerun with `study.seeds` seeds, and only those runs are reported. A seed fails when it
collapses on the selection split (constant outputs, one class) or gains less than
`study.stability.min_gain_share` of the trial seed's gain over chance there; a rate at which more than
`study.stability.max_failed_share` of the seeds fail is the edge of stable training, not an optimum (a
one-seed search rewards that edge), and the best lower rate whose trial trained gets its seeds too
(`study.stability.retries` times at most). The rate with the fewest failed seeds is reported; the other
rate's runs stay on disk marked `role: trial`, `rejected: ...`. Raising `study.seeds`
on a finished study trains only the new seeds (every other cell is found by its config hash). The
reported split never feeds a choice, and every trial is kept so the report can draw
expected-best-score-versus-budget curves (Dodge et al. 2019).

One Hydra job = one (model, task, method) protocol; a multirun over methods x tasks is the grid.
Each cell still goes through `bench.sweep.execute` (isolation, resume, failure records), so an
interrupted study resumes where it stopped.

`study.prune.enabled` (off by default) makes the trials cheaper by successive halving with one cut:
every rate trains its first `rung_epochs` epochs (`train.stop_after_epochs`: the full-length
schedule, stopped early, so these epochs are exactly the full run's first ones); the best
`trials // eta` by selection-split score go on to the full length, continuing from the state their
first rung saved (weights, AdamW moments, schedule, RNG: bench/training/rung_state.py), so the promoted run is
bit for bit the trial an exhaustive study trains and the first rung's epochs are not trained twice;
the rate is chosen among those full-length runs, on the selection split as always. The cut keeps
every trial within noise of the best and cuts nothing when the best is near chance (`first_rung_cut`).
`benchmarks/prune_replay.py` replays the rule on an exhaustive study's records (what it would select,
what it would save).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from bench.records import schema as R
from bench.sweep.search import cut_plan, hard_limits, lr_grid, position, propose, step_ratio

__all__ = ["choose", "lr_grid", "planned_cells", "promote", "run_study", "study_settings", "survivors"]

log = logging.getLogger("bench")


def study_settings(cfg: DictConfig) -> dict:
    """study.* and the search's initial rates. The rules (types and ranges, a range for this method, no
    fixed train.lr, a selection split) are bench.config.schema' (StudySettings, check_study), which the
    CLI ran before any cell; checked again here because run_study may be called without the CLI."""
    from bench.config.schema import (
        StabilitySettings,
        StudySettings,
        all_settings,
        build,
        check_section,
        lr_search_range,
    )
    from bench.recipe.validate import check_study

    st = OmegaConf.to_container(cfg.study, resolve=True)
    method = str(cfg.method.get("name") or "method")
    check_section("study", st, StudySettings)
    check_study(cfg, all_settings(cfg), method)
    rng = list(lr_search_range(st, dict(OmegaConf.to_container(cfg.method, resolve=True), name=method)))
    trials, seeds, trial_seed = st["trials"], st["seeds"], st.get("trial_seed", 0)
    prune = dict({"enabled": False, "eta": 3, "rung_epochs": 1, "noise_z": 2.0}, **(st.get("prune") or {}))
    search = dict({"initial": None, "max_factor": 10.0}, **(st.get("search") or {}))
    stability = asdict(build(StabilitySettings, st.get("stability") or {}))  # checked above (check_section)
    initial = min(int(search["initial"] or trials), trials)  # fewer trials: all on the declared range
    low, high = float(rng[0]), float(rng[1])
    return {"method": method, "trials": trials, "seeds": seeds, "trial_seed": trial_seed, "prune": prune,
            "initial": initial, "grid": lr_grid(low, high, initial), "range": [low, high],
            "ratio": step_ratio(low, high, initial),
            "limits": list(hard_limits(low, high, float(search["max_factor"]))),
            "max_factor": float(search["max_factor"]), "stability": stability}


def survivors(trials: int, eta: int) -> int:
    """How many trials continue past the first rung: the best 1/eta, at least one."""
    return max(1, trials // eta)


def promote(scores: list[float | None], keep: int) -> list[int]:
    """Indices of the `keep` best first-rung scores, in grid order; ties go to the smaller rate (as in
    `choose`); a failed trial is never promoted."""
    ranked = sorted((i for i, v in enumerate(scores) if v is not None), key=lambda i: (-scores[i], i))
    return sorted(ranked[:keep])


def planned_cells(cfg) -> int:
    """Cells one job runs through bench.sweep.execute (the sweep line's total, bench/training/progress.py): 1;
    for a study, its trials (+ the survivors' full runs when pruned) and the seeds besides the trial seed.
    With the no-cut rule (prune.noise_z > 0) the survivors are counted as at most every initial trial."""
    st = cfg.get("study") or {}
    if not st.get("enabled"):
        return 1
    trials, seeds, trial_seed = int(st.get("trials")), int(st.get("seeds")), int(st.get("trial_seed", 0) or 0)
    initial = min(int((st.get("search") or {}).get("initial") or trials), trials)
    prune = st.get("prune") or {}
    kept = 0
    if prune.get("enabled"):
        no_cut = float(prune.get("noise_z", 2.0)) > 0
        kept = initial if no_cut else survivors(initial, int(prune.get("eta", 3)))
    return trials + kept + seeds - (1 if trial_seed < seeds else 0)


def _cell(cfg: DictConfig, lr: float, seed: int, sweep: str, block: dict, stop_after: int | None = None) -> DictConfig:
    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.train.lr = lr
        c.train.seed = seed
        c.sweep_name = sweep
        c.study_cell = block  # excluded from the config hash; copied into the record's `study`
        if stop_after:  # a first-rung trial: its own config hash, never reported nor copied as a final: the
            c.train.stop_after_epochs = stop_after  # served cost and the forgetting of a partial run are not wanted
            if c.get("inference") is not None:
                c.inference.enabled = False
            if c.get("retention") is not None:
                c.retention.enabled = False
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
    study = dict(rec.get("study") or {}, **fields)
    if study != rec.get("study"):  # a resumed study makes the same marks: the file is left as it was
        rec["study"] = study
        R.write_record(path, rec)


def _selection_split(path: Path) -> tuple | None:
    """(predictions, references, task kind, selection keys) of a trial's selection split; None if absent."""
    import numpy as np

    from bench.records.results import record_selection_keys

    try:
        rec = dict(R.read_record(path), _path=str(path))  # the predictions file lies beside the record
        data = R.load_predictions(rec) if rec.get("status") == "ok" else None
    except ValueError:
        return None
    sp = next((v for v in ((data or {}).get("splits") or {}).values()
               if isinstance(v, dict) and v.get("role") == "selection"), None)
    if sp is None:
        return None
    order = np.argsort(np.asarray(sp["ids"]), kind="stable")
    kind = str(((rec.get("config") or {}).get("task") or {}).get("kind", "classification"))
    return (np.asarray(sp["predictions"], float)[order], np.asarray(sp["references"], float)[order], kind,
            record_selection_keys(rec))


def first_rung_cut(rung_paths: list, rung_scores: list[float | None], keep: int,
                   z: float) -> tuple[list[int], str, dict]:
    """The first rung's cut (bench.sweep.search.cut_plan) with its noise measured on the trials' own
    selection-split predictions; z = 0: the best `keep` by rank alone. Returns (kept, why, noise)."""
    if z <= 0:
        return promote(rung_scores, keep), f"cut by rank: the best {keep}", {}
    from bench.sweep.search import chance_score, selection_noise

    splits = [_selection_split(p) if v is not None else None for p, v in zip(rung_paths, rung_scores)]
    first = next((x for x in splits if x is not None), None)
    if first is None:
        return promote(rung_scores, keep), "cut by rank: no selection predictions to measure noise on", {}
    _, ref, kind, keys = first
    noise, best_noise = selection_noise(keys, [None if x is None else x[0] for x in splits], ref, z)
    chance = chance_score(keys, kind, ref)
    kept, why = cut_plan(rung_scores, keep, noise, chance, best_noise)
    return kept, why, {"z": z, "noise": [None if math.isinf(v) else round(v, 6) for v in noise],
                       "chance": round(chance, 6), "best_noise": round(best_noise, 6)}


def _pruned_trials(cfg, s: dict, base: dict, sweep: str, own: list, headline: dict):
    """Successive halving with one cut over the initial rates: every rate for `rung_epochs`, then those
    the cut keeps (first_rung_cut) to the full length. Returns (full-length record paths, their scores
    (None where pruned), statuses, what the cut decided)."""
    from bench.sweep.execute import execute

    k, eta = int(s["prune"]["rung_epochs"]), int(s["prune"]["eta"])
    states = Path(str(cfg.results_dir)) / sweep / "trials" / ".rung_state"
    stem = f"{cfg.model.name}__{cfg.task.name}__{s['method']}"
    state_of = [states / f"{stem}__t{i}__e{k}.pt" for i in range(len(s["grid"]))]
    rung_paths, statuses = [], []
    for i, lr in enumerate(s["grid"]):
        block = dict(base, role="trial", trial_index=i, lr=lr, rung=1, rung_epochs=k,
                     rung_state=str(state_of[i]), score_reported=False)
        status, path = execute(_cell(cfg, lr, s["trial_seed"], f"{sweep}/trials", block, stop_after=k), own)
        statuses.append(status)
        rung_paths.append(path)
    rung_scores = [_score(p, headline) for p in rung_paths]
    kept, why, noise = first_rung_cut(rung_paths, rung_scores, survivors(len(s["grid"]), eta),
                                      float(s["prune"].get("noise_z", 0) or 0))
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
               "pruned": [i for i in range(len(s["grid"])) if i not in kept], "cut": why, **noise}
    return paths, scores, statuses, decided


def _score(path: Path, headline_of: dict) -> float | None:
    """The trial's selection score on the selection split (the task's `select_metric`, default the
    headline; MRPC: mean of F1 and accuracy, bench.records.results.selection_keys); None: failed or unreadable."""
    try:
        rec = R.read_record(path)
    except ValueError:
        return None
    return _record_score(rec, headline_of)


def _record_score(rec: dict, headline_of: dict) -> float | None:
    """`_score` of a record already read."""
    from bench.records.results import record_selection_keys, selection_name, selection_score

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
    """Best selection score wins; a failed or pruned trial (None) never does; ties go to the smaller
    rate. Raises when every trial failed."""
    best = None
    for i in sorted(range(len(grid)), key=lambda i: grid[i]):
        if scores[i] is not None and (best is None or scores[i] > scores[best]):
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


def _extend(cfg, s: dict, base: dict, sweep: str, own: list, headline: dict, rates: list, scores: list,
            paths: list, statuses: list, side: list) -> list[dict]:
    """The rest of the trial budget (study.trials - search.initial), one trial at a time where
    bench.sweep.search.propose puts it (past the edge the best score sits at, up to the hard limit;
    else beside the best), each trained to the full length. Extends the lists in place; returns the
    proposals made, in order."""
    from bench.sweep.execute import execute

    steps = []
    for step in range(s["trials"] - s["initial"]):
        nxt = propose(rates, scores, tuple(s["limits"]), s["ratio"], side)
        if nxt is None:
            log.info("study %s / %s: no untried rate left near the best; %d trial(s) of the budget unused",
                     cfg.task.name, s["method"], s["trials"] - s["initial"] - step)
            break
        lr, why = nxt
        i = len(rates)
        block = dict(base, role="trial", trial_index=i, lr=lr, search_step=step + 1, proposed=why)
        status, path = execute(_cell(cfg, lr, s["trial_seed"], f"{sweep}/trials", block), own)
        statuses.append(status)
        rates.append(lr)
        paths.append(path)
        scores.append(_score(path, headline))
        side.append(None)
        steps.append({"trial_index": i, "lr": lr, "why": why})
    return steps


def _collapsed(rec: dict) -> bool:
    """Whether a run's outputs collapsed on the selection split (its record's `collapse` block)."""
    split = (((rec.get("collapse") or {}).get("splits") or {}).get("selection") or {})
    return bool(split.get("collapsed"))


def _read(path: Path) -> dict:
    """A run's record; {} where it cannot be read (a failed score, not a collapse)."""
    try:
        return R.read_record(path)
    except ValueError:
        return {}


def _failed_seed(path: Path, floor: float | None) -> bool:
    """A final seed that did not train: collapsed on the selection split, failed, or scoring under `floor`."""
    rec = _read(path)
    if _collapsed(rec):
        return True
    v = _record_score(rec, {})
    return v is None or (floor is not None and v < floor)


def _allowed_failures(s: dict) -> int | None:
    """How many of the study's seeds may fail before its rate is rejected; None: no check."""
    share = s["stability"].get("max_failed_share")
    return None if share is None else math.floor(share * s["seeds"] + 1e-9)


def _gain_floor(trial_path: Path, trial_score: float, share: float) -> float | None:
    """chance + share x (the trial seed's selection score - chance): below it a seed learned less than
    `share` of what the trial seed did (chance measured on the trial's own selection split)."""
    from bench.sweep.search import chance_score

    split = _selection_split(trial_path)
    if split is None:
        return None
    _, ref, kind, keys = split
    chance = chance_score(keys, kind, ref)
    return chance + share * (trial_score - chance)


def _run_finals(cfg, s: dict, sweep: str, own: list, block: dict, lr: float, trial_path: Path,
                statuses: list) -> list[Path]:
    """The seeds of rate `lr` (the trial seed's run is the trial itself, copied); returns their records."""
    from bench.sweep.execute import execute, identity, record_path

    out = []
    for seed in range(s["seeds"]):
        c = _cell(cfg, lr, seed, sweep, dict(block, seed=seed))
        if seed == s["trial_seed"]:
            dst = record_path(c, identity(c, own))
            if not (cfg.get("resume", True) and dst.is_file()):
                _copy_as_final(trial_path, dst, dict(block, seed=seed), sweep)
            statuses.append("ok")
            out.append(dst)
            continue
        status, path = execute(c, own)
        statuses.append(status)
        out.append(path)
    return out


def _stable_finals(cfg, s: dict, sweep: str, own: list, common: dict, rates: list, scores: list, paths: list,
                   statuses: list, best_i: int, extended: bool) -> list[dict]:
    """Seeds of the chosen rate; while more than `stability.max_failed_share` of them fail (`_failed_seed`),
    the seeds of the best lower rate whose (trial-seed) trial trained and did not collapse, up to
    `stability.retries` times. Returns one entry per rate whose seeds ran, in order."""
    st = s["stability"]
    allowed = _allowed_failures(s)
    attempts: list[dict] = []
    seen = list(scores)
    i = best_i
    while True:
        where = position(rates, seen, tuple(s["limits"]) if extended else None, extended)
        block = dict(common, lr=rates[i], selected_lr=rates[i], selected_trial=i, selected_position=where)
        finals = _run_finals(cfg, s, sweep, own, block, rates[i], paths[i], statuses)
        floor = _gain_floor(paths[i], scores[i], float(st["min_gain_share"])) if allowed is not None else None
        n = sum(_failed_seed(p, floor) for p in finals)
        attempts.append({"trial": i, "lr": rates[i], "failed": n, "paths": finals, "position": where,
                         "floor": floor})
        if allowed is None or n <= allowed or len(attempts) > int(st.get("retries", 0)):
            return attempts
        lower = [j for j in range(len(rates)) if rates[j] < min(a["lr"] for a in attempts)
                 and scores[j] is not None and paths[j] is not None and not _collapsed(_read(paths[j]))]
        if not lower:
            return attempts
        for a in attempts:
            seen[a["trial"]] = None  # an unstable rate counts as failed where the next choice lies
        i = max(lower, key=lambda j: (scores[j], -rates[j]))
        log.info("study %s / %s: lr %g rejected: %d of %d seeds failed on the selection split; seeds of "
                 "lr %g (selection %.4f) follow", cfg.task.name, s["method"], attempts[-1]["lr"], n, s["seeds"],
                 rates[i], scores[i])


def _stability_summary(s: dict, attempts: list[dict], chosen: dict) -> dict:
    """What the stability check decided, for the final records and the study's summary file."""
    st, seeds, allowed = s["stability"], s["seeds"], _allowed_failures(s)
    rule = (f"collapsed, or under {st['min_gain_share']:g} of the trial seed's gain over chance on the selection "
            f"split; allowed: {allowed}")
    rejected = [{"lr": a["lr"], "failed": a["failed"], "seeds": seeds, "floor": a["floor"],
                 "why": f"{a['failed']} of {seeds} seeds failed ({rule})"}
                for a in attempts if a is not chosen]
    return {"max_failed_share": st.get("max_failed_share"), "min_gain_share": st["min_gain_share"],
            "failed": chosen["failed"], "seeds": seeds, "floor": chosen["floor"],
            "stable": allowed is None or chosen["failed"] <= allowed,
            "rates_seeded": [a["lr"] for a in attempts], "rejected": rejected}


def _initial_trials(cfg, s: dict, base: dict, sweep: str, own: list, headline: dict):
    """The initial rates: pruned (first rung, cut, survivors to the full length) or all at full length."""
    from bench.sweep.execute import execute

    if s["prune"]["enabled"]:
        return _pruned_trials(cfg, s, base, sweep, own, headline)
    paths, statuses = [], []
    for i, lr in enumerate(s["grid"]):
        c = _cell(cfg, lr, s["trial_seed"], f"{sweep}/trials", dict(base, role="trial", trial_index=i, lr=lr))
        status, path = execute(c, own)
        statuses.append(status)
        paths.append(path)
    return paths, [_score(p, headline) for p in paths], statuses, None


def run_study(cfg: DictConfig, overrides: list[str] | None) -> str:
    """Run (or resume) the protocol for this job's (model, task, method); returns ok / failed."""
    s = study_settings(cfg)
    sweep = str(cfg.sweep_name)
    own = [o for o in (overrides or []) if not o.lstrip("+~").startswith(("train.lr=", "train.seed="))]
    base = {"name": sweep, "n_trials": s["trials"], "lr_grid": s["grid"], "lr_range": s["range"],
            "trial_seed": s["trial_seed"], "selection": f"selection split, {_select_text(cfg)}"}
    if s["trials"] > s["initial"]:
        base["search"] = {"initial": s["initial"], "max_factor": s["max_factor"], "limits": s["limits"]}
    headline: dict = {}
    paths, scores, statuses, pruning = _initial_trials(cfg, s, base, sweep, own, headline)
    rates = list(s["grid"])
    side = list(pruning["rung_scores"]) if pruning else [None] * len(rates)
    steps = _extend(cfg, s, base, sweep, own, headline, rates, scores, paths, statuses, side)
    try:
        best_lr, best_i = choose(rates, scores)
    except RuntimeError as exc:
        log.error("study %s / %s: %s", cfg.task.name, s["method"], exc)
        return "failed"
    extended = s["trials"] > s["initial"]
    where = position(rates, scores, tuple(s["limits"]) if extended else None, extended)
    log.info("study %s / %s: selected lr %g, %s (selection %s %s; rates %s)", cfg.task.name, s["method"],
             best_lr, where["position"], headline.get("key"),
             " ".join("-" if v is None else f"{v:.4f}" for v in scores), " ".join(f"{g:g}" for g in rates))
    if pruning:
        log.info("study %s / %s: first rung of %d epoch(s): %s; pruned %s (scores %s)", cfg.task.name,
                 s["method"], pruning["rung_epochs"], pruning["cut"], pruning["pruned"],
                 " ".join("-" if v is None else f"{v:.4f}" for v in pruning["rung_scores"]))
    searched = {"lr_tried": rates, "search_steps": steps} if extended else {}
    common = dict(base, role="final", trial_scores=scores, **searched, **({"pruning": pruning} if pruning else {}))
    attempts = _stable_finals(cfg, s, sweep, own, common, rates, scores, paths, statuses, best_i, extended)
    chosen = min(attempts, key=lambda a: a["failed"])  # a tie keeps the earlier (higher-scoring) rate
    best_lr, best_i, where = rates[chosen["trial"]], chosen["trial"], chosen["position"]
    stability = _stability_summary(s, attempts, chosen)
    if len(attempts) > 1 or not stability["stable"]:
        log.warning("study %s / %s: reported lr %g with %d of %d seeds failed (%s); rates seeded: %s", cfg.task.name,
                    s["method"], best_lr, chosen["failed"], s["seeds"],
                    "stable" if stability["stable"] else "unstable: no lower rate that trained did better",
                    " ".join(f"{a['lr']:g} ({a['failed']} failed)" for a in attempts))
    why = {r["lr"]: r["why"] for r in stability["rejected"]}
    # a study whose first choice held: its records stay as they were (adding seeds rewrites nothing)
    for a in attempts if len(attempts) > 1 or not stability["stable"] else []:
        for p in a["paths"]:
            if a is chosen:
                _mark(p, role="final", stability=stability)
            else:  # kept on disk (resume finds them), out of every table (role trial)
                _mark(p, role="trial", rejected=why[a["lr"]], stability=stability)
    summary = Path(str(cfg.results_dir)) / sweep / "selected" / f"{cfg.model.name}__{cfg.task.name}__{s['method']}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"model": str(cfg.model.name), "task": str(cfg.task.name), "method": s["method"],
                                   "headline": headline.get("key"), "grid": s["grid"], "scores": scores,
                                   "rates": rates, "search_steps": steps, "position": where,
                                   "selected_lr": best_lr, "seeds": s["seeds"], "pruning": pruning,
                                   "stability": stability,
                                   "config": OmegaConf.to_container(cfg.study, resolve=True)}, indent=2))
    return "failed" if "failed" in statuses else "ok"
