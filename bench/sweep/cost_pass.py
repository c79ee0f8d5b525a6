"""The cost pass: speed figures of finished cells, measured again with each cell's work running alone.

Why: cells that run side by side (`hydra/launcher=parallel`, a cluster node shared by jobs) get
their metrics right but not their speed: a cell's samples/s then depends on what ran beside it. So a
sweep can run its cells in parallel for the metrics, and this pass, run afterwards with nothing else
on the machine, rebuilds each cell from its record's config and times what the record's speed
figures are about: `warmup + steps` optimizer steps of the cell's own training (the first `warmup`
excluded, as in a run) on batches picked across the first epoch so that their sizes represent the
whole run (bench.data.batching.representative_batches; the first steps of a length-grouped epoch do not),
one pass over its eval splits, and (when the cell's `inference.enabled`) the
inference measurement. It replaces the record's `throughput`, `flops` (MFU) and `inference`, keeps
what it replaced under `cost_pass.replaced`, and says how it measured (threads, steps, environment).

What it leaves alone: the metrics and predictions (the metric pass's), and `memory`. Peak resident
memory is a per-process figure that cells beside it do not change, and a short pass would miss the
peak of the run's longest batch, so the metric pass's reading is the better one.

    python -m bench.sweep.cost_pass results/default_sweep [--steps 20] [--warmup 5] [--threads N] [--force]
    python -m bench.sweep.cost_pass results/catalogue --inference-only --one-per-method   # the catalogue's served cost

`--inference-only` measures the inference section alone (and the mergeability it implies) and leaves
throughput and MFU as the run measured them; the model still trains `warmup + steps` steps first, so
the merged-logit check compares a merge of weights that moved away from their initialisation (a
LoRA at init merges trivially). `--one-per-method`: one record per (model, task, method label), the
lowest seed's final cell: latency, throughput and mergeability are properties of the structure
(bench/inference/cache.py), the same for every seed, so a 48-method catalogue costs 96 measurements,
not 288.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from omegaconf import OmegaConf, open_dict

from bench.records import schema as R

log = logging.getLogger("bench")


def measure_record(rec: dict, steps: int, warmup: int, threads: int | None, inference: bool = False,
                   inference_only: bool = False, folder: Path | None = None) -> dict:
    """Rebuild the record's cell, time its steps, eval and inference alone; return the updated record.
    Training and evaluation go through the run's own recipe steps (bench.recipe.finetune.CellRecipe), so what is
    timed is what a run times; only the number of steps is cut."""
    from bench.inference.cost import measure_cell
    from bench.recipe.finetune import CellRecipe
    from bench.recipe.runtime import Phase

    cfg = OmegaConf.create(rec["config"])
    with open_dict(cfg):
        cfg.train.threads = threads or "auto"
        cfg.train.eval_every_epoch = False  # nothing is selected here; per-epoch evaluation is not timed work
        cfg.train.select = "last"  # (a best_epoch cell's choice was the metric pass's; it needs per-epoch evaluation)
        cfg.progress = {"mode": "off"}
        if folder is not None:
            # the sweep is where its records are now (a moved or copied results folder), not where the
            # config says it ran: the pass's shared measurements go beside the records it measures
            cfg.results_dir, cfg.sweep_name = str(folder.resolve().parent), folder.resolve().name
        if cfg.get("inference") is not None:
            # measured alone, in this pass: never a measurement another (parallel, loaded) run left in
            # the results folder's cache (bench/inference/cache.py); cells of this pass still share
            cfg.inference.cache = False
    recipe = CellRecipe(cfg, Phase(), {})
    recipe.setup()
    # cached features (head_only): the feature pass is paid once for all epochs, so a few steps would
    # misstate the rate; that training is seconds long, so it runs whole
    few = {} if recipe.method.trains_on_cached_features else {"max_steps": warmup + steps}
    recipe.t = dataclasses.replace(recipe.t, warmup_steps_excluded=warmup, **few)
    recipe.train()
    if inference_only:
        return _with_inference(rec, cfg, recipe, warmup)
    recipe.evaluate()  # times the eval splits as a run does (throughput.eval_samples_per_s, recipe.eval_s)
    timer, tp = recipe.timer, recipe.throughput
    flops = recipe._flops()
    whole = rec.get("flops") or {}
    if whole.get("train_flops") is not None:  # the whole run's work stays the metric pass's count
        flops["train_flops"] = whole["train_flops"]
        flops["timed_over"] = f"the cost pass's {timer.timed_steps} timed steps, alone ({flops.get('timed_over')})"
    inf_section = rec.get("inference")
    if inference or (cfg.get("inference") or {}).get("enabled", False):
        inf_section = measure_cell(cfg, recipe.model, recipe.spec.num_labels, recipe.seed, recipe.device,
                                   recipe.precision)
    out = _measured_again(rec, recipe, warmup, ("throughput", "flops", "inference"),
                          "throughput, flops and inference measured again with this cell's work alone "
                          "(bench/sweep/cost_pass.py); metrics, predictions and memory are the metric pass's",
                          eval_examples=sum(len(d) for d in recipe.eval_data.values()))
    out.update(throughput=tp, flops=flops, inference=inf_section)
    return out


def _measured_again(rec: dict, recipe, warmup: int, replaced: tuple[str, ...], what: str, **extra) -> dict:
    """A copy of the record with its `cost_pass` section: what was measured, how, and what it replaced."""
    from bench.records.environment import environment

    out = dict(rec)
    out.pop("_path", None)
    out["cost_pass"] = {"what": what, "train_steps_timed": recipe.timer.timed_steps, "warmup_steps_excluded": warmup,
                        "threads": torch.get_num_threads(), **extra,
                        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "env": environment(recipe.device), "replaced": {k: rec.get(k) for k in replaced}}
    return out


def _with_inference(rec: dict, cfg, recipe, warmup: int) -> dict:
    """The record with only its inference section (and the capability it implies) measured again."""
    from bench.inference.cost import measure_cell
    from bench.recipe.finetune import mergeable

    section = measure_cell(cfg, recipe.model, recipe.spec.num_labels, recipe.seed, recipe.device, recipe.precision)
    out = _measured_again(rec, recipe, warmup, ("inference",),
                          "inference only, measured with this cell's work alone (bench/sweep/cost_pass.py "
                          f"--inference-only) on the cell's model after {recipe.timer.timed_steps + warmup} training "
                          "steps; throughput, flops, metrics, predictions and memory are the metric pass's")
    out["inference"] = section
    if isinstance(out.get("capabilities"), dict):
        out["capabilities"] = dict(out["capabilities"], mergeable=mergeable(section))
    return out


def one_per_method(recs: list[dict]) -> list[dict]:
    """The lowest seed's final (not trial) record of each (model, task, method label)."""
    best: dict[tuple, dict] = {}
    for r in recs:
        if (r.get("study") or {}).get("role") == "trial":
            continue
        key = (r.get("model"), r.get("task"), r.get("method_label") or r.get("method"))
        if key not in best or (r.get("seed") or 0) < (best[key].get("seed") or 0):
            best[key] = r
    return list(best.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sweep.cost_pass", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a sweep's results folder (records are found below it)")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per cell")
    ap.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--force", action="store_true", help="measure again records that already had a cost pass")
    ap.add_argument("--inference", action="store_true",
                    help="measure inference cost also for cells that ran with inference.enabled=false")
    ap.add_argument("--inference-only", action="store_true",
                    help="measure only the inference section (and mergeability); keep the run's throughput and MFU")
    ap.add_argument("--one-per-method", action="store_true",
                    help="one record per (model, task, method): the lowest seed's final cell (structure properties)")
    args = ap.parse_args(argv)
    from bench.logs import quiet_libraries

    quiet_libraries()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.folder.is_dir():
        print(f"cost pass: {args.folder}: no such folder (expected a sweep's results folder)", file=sys.stderr)
        return 2
    recs, _ = R.load_records(args.folder)
    todo = [r for r in recs if r.get("status") == "ok"]
    if args.one_per_method:
        todo = one_per_method(todo)
    todo = [r for r in todo if args.force or not r.get("cost_pass")]
    if not todo:
        print(f"cost pass: nothing to measure in {args.folder} ({len(recs)} records; --force measures again)")
        return 0
    failed = 0
    for i, rec in enumerate(todo, 1):
        path = Path(rec["_path"])
        t0 = time.perf_counter()
        try:
            updated = measure_record(rec, args.steps, args.warmup, args.threads, args.inference, args.inference_only,
                                     args.folder)
        except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the pass; its record is untouched
            failed += 1
            print(f"cost pass {i}/{len(todo)}: {path.name}: not measured ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
            continue
        R.write_record(path, updated)
        if args.inference_only:
            over = ((updated["inference"] or {}).get("overhead") or {}).get("method") or {}
            print(f"cost pass {i}/{len(todo)}: {rec.get('task')} / {rec.get('method_label') or rec.get('method')} "
                  f"/ seed {rec.get('seed')}: inference batch-1 x{over.get('batch1_mean') or float('nan'):.3f}, "
                  f"merge {(updated['inference'].get('merge') or {}).get('status')}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            continue
        tp = updated["throughput"]
        print(f"cost pass {i}/{len(todo)}: {rec.get('task')} / {rec.get('method_label') or rec.get('method')} / seed "
              f"{rec.get('seed')}: {tp.get('train_samples_per_s') or 0:.1f} train samples/s alone (was "
              f"{(rec.get('throughput') or {}).get('train_samples_per_s') or 0:.1f}), {time.perf_counter() - t0:.0f} s",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
