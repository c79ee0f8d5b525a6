"""Fixture result records with known values, written with bench.records.schema.write_record.

Tests recompute every expected number from the files written here (not from these formulas), so
a bug in the report cannot hide behind a bug shared with the fixture. The layout deliberately
contains every awkward case a real results folder has:

* two models whose numbers are far apart (any mixing between models shows at once);
* several seeds per cell (std defined), and a single-seed cell (std blank);
* a failed seed (error type/message), and a cell that failed on every seed;
* a missing seed (never run) and a method that never ran one task (no average for it);
* two records of one seed cell with different config_hash (the newer must win, conflict listed);
* an unreadable record file, and a non-record JSON file (ignored silently).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.records.schema import config_hash, record_stem, write_record

MODELS = {"tiny-bert": 0.80, "tiny-roberta": 0.30}  # base score: models differ a lot
METHODS = {"full": (4_400_000, 0.0), "lora[r=8]": (150_000, -0.02), "bitfit": (30_000, -0.05)}
TASKS = {"cola": ("matthews_correlation", 0.0), "sst2": ("accuracy", 0.1),
         "stsb": ("pearson", 0.05), "mrpc": ("f1", 0.08)}
SEEDS = (1, 2, 3)
T0 = datetime(2025, 1, 1, tzinfo=UTC)

# Cells that deviate from the full grid (model, method_label, task, seed).
FAILED = {("tiny-bert", "lora[r=8]", "cola", 2): ("torch.OutOfMemoryError", "CUDA out of memory. Tried 2 GiB")}
ALL_FAILED = ("tiny-roberta", "bitfit", "stsb")  # every seed failed
NEVER_RUN = {("tiny-bert", "bitfit", "sst2", 3)}  # one seed missing: partial cell
MISSING_TASK = ("tiny-roberta", "lora[r=8]", "mrpc")  # no record at all: method has no average
SINGLE_SEED = ("tiny-bert", "full", "stsb")  # only seed 1 exists ... but other seeds are in the grid
CONFLICT = ("tiny-bert", "full", "cola", 1)  # two configs; newer wins


def metric_value(model: str, method: str, task: str, seed: int) -> float:
    return round(MODELS[model] + METHODS[method][1] + TASKS.get(task, ("", 0.0))[1] + 0.01 * seed * seed, 6)


def make_record(model: str, method_label: str, task: str, seed: int, *, status: str = "ok",
                value: float | None = None, extra_cfg: dict | None = None, finished: datetime | None = None,
                error: tuple[str, str] | None = None, device: str = "cpu") -> dict:
    """A complete schema-1 record with deterministic measurements."""
    method = method_label.split("[")[0]
    headline, _ = TASKS.get(task, ("accuracy", 0.0))
    trainable = METHODS[method_label][0] + (1 if task == "stsb" else 2) * 129
    total = 4_400_000 + (METHODS[method_label][0] if method != "full" else 0) + 258
    cfg = {"model": model, "task": task, "method": method_label, "train": {"seed": seed, "lr": 1e-3},
           "results_dir": "/tmp/ignored"} | (extra_cfg or {})
    chash = config_hash(cfg)
    finished = finished or T0 + timedelta(minutes=seed)
    rec = {
        "schema_version": 1, "status": status, "error": None,
        "run_id": record_stem(model, task, method_label, seed, chash), "sweep": "fixture",
        "created_at": (finished - timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
        "finished_at": finished.isoformat().replace("+00:00", "Z"),
        "model": model, "task": task, "method": method, "method_label": method_label, "seed": seed,
        "config": cfg, "config_hash": chash, "headline_metric": headline, "metrics": {},
        "metrics_per_epoch": [], "selection": "last",
        "data": {"train_examples": 512, "eval_examples": {"validation": 128}, "subsample_seed": 0,
                 "source": "local:fixture"},
        "env": {"python": "3.11.7", "torch": "2.13.0", "transformers": "4.50.0", "peft": "0.14.0",
                "datasets": "3.2.0", "evaluate": "0.4.3", "hydra": "1.3.2", "platform": "Linux-x86_64",
                "cpu_model": "Fixture CPU", "device": device, "cuda_device_name": None, "torch_threads": 2,
                "hostname": "fixture-host", "git_commit": "0123456789abcdef0123456789abcdef01234567",
                "git_dirty": False},
    }
    if status != "ok":
        etype, msg = error or ("RuntimeError", "boom")
        rec["error"] = {"type": etype, "message": msg, "phase": "train", "where": "train.py:10 in step",
                        "log": rec["run_id"] + ".log"}
        return rec
    v = metric_value(model, method_label, task, seed) if value is None else value
    metrics = {headline: v}
    if headline == "f1":
        metrics["accuracy"] = round(v - 0.03, 6)
    if headline == "pearson":
        metrics["spearmanr"] = round(v - 0.01, 6)
    if headline == "matthews_correlation":
        metrics["accuracy"] = round(v + 0.1, 6)
    rec["metrics"] = metrics
    scale = {"full": 1.0, "lora": 0.6, "bitfit": 0.5}[method]
    rec["params"] = {"trainable": trainable, "total": total, "head": 258, "trainable_excl_head": trainable - 258,
                     "trainable_pct": 100.0 * trainable / total, "counting": "head counted as trainable"}
    rec["memory"] = {"peak_rss_bytes": int((900 + 100 * scale + seed) * 2**20),
                     "baseline_rss_bytes": 700 * 2**20, "rss_method": "psutil",
                     "cuda_peak_allocated_bytes": int((300 * scale + seed) * 2**20) if device == "cuda" else None,
                     "cuda_peak_reserved_bytes": None}
    rec["throughput"] = {"train_samples_per_s": round(100 / scale + seed, 3), "train_tokens_per_s": 5000.0 + seed,
                         "train_padded_tokens_per_s": 6000.0, "eval_samples_per_s": 400.0,
                         "warmup_steps_excluded": 2, "timed_steps": 30}
    rec["time"] = {"train_s": round(20 * scale + seed, 3), "eval_s": 1.5, "total_s": 40.0 + seed}
    rec["storage"] = {"bytes": trainable * 4 + 1000 * seed, "what": "safetensors delta"}
    rec["train"] = {"epochs": 1, "steps": 32, "batch_size": 16, "lr": 1e-3, "warmup_steps": 2,
                    "final_loss": round(0.5 - 0.01 * seed, 4), "deterministic": True}
    return rec


def _write(root: Path, rec: dict) -> Path:
    return write_record(root / rec["sweep"] / f"{rec['run_id']}.json", rec)


def write_fixture_results(root: str | Path) -> dict:
    """Write the fixture results folder under `root`; returns a description of the awkward cases."""
    root = Path(root)
    paths = []
    for model in MODELS:
        for label in METHODS:
            for task in TASKS:
                if (model, label, task) == MISSING_TASK:
                    continue
                for seed in SEEDS:
                    key = (model, label, task, seed)
                    if key in NEVER_RUN or ((model, label, task) == SINGLE_SEED and seed != 1):
                        continue
                    if key in FAILED:
                        rec = make_record(model, label, task, seed, status="failed", error=FAILED[key])
                        log = root / rec["sweep"] / rec["error"]["log"]
                        log.parent.mkdir(parents=True, exist_ok=True)
                        log.write_text("Traceback (most recent call last):\n  ...\nOutOfMemoryError\n")
                    elif (model, label, task) == ALL_FAILED:
                        rec = make_record(model, label, task, seed, status="failed",
                                          error=("ValueError", f"bad shape on seed {seed}"))
                    else:
                        rec = make_record(model, label, task, seed,
                                          device="cuda" if model == "tiny-roberta" else "cpu")
                    paths.append(_write(root, rec))
    # Conflict: an older record of the same seed cell with another config (and a silly value).
    old = make_record(*CONFLICT, value=0.0123, extra_cfg={"note": "old config"},
                      finished=T0 - timedelta(days=1))
    paths.append(_write(root, old))
    bad = root / "fixture" / "broken__record.json"
    bad.write_text('{"schema_version": 1, "status": "ok", "model": ', encoding="utf-8")
    (root / "fixture" / "not_a_record.json").write_text(json.dumps({"hello": "world"}), encoding="utf-8")
    return {"paths": paths, "bad": bad, "conflict_old": old}


# ------------------------------------------------------------------ schema-2 records with predictions
#
# A second, separate results folder for the statistics: methods whose per-example predictions are
# known exactly, so that the verdicts have known answers (an oracle beats chance; an exact copy
# ties), next to a schema-1 method without predictions and learning-rate trial records.

PRED_N = 400  # eval examples of the verdict fixture
PRED_TASKS = {"sst2": ("accuracy", ["accuracy"]), "stsb": ("pearson", ["pearson", "spearmanr"])}
TRIAL_SCORES = (0.5, 0.7, 0.6, 0.9)  # selection scores of the oracle's four learning-rate trials


def pred_references(task: str, n: int = PRED_N):
    import numpy as np

    rng = np.random.default_rng(123)
    return rng.integers(0, 2, n).astype(float) if task == "sst2" else np.round(rng.uniform(0, 5, n), 2)


def pred_predictions(method: str, task: str, seed: int, n: int = PRED_N):
    """oracle: the labels; chance/chance_copy: the same seeded noise; single: 80% right (sst2)."""
    import numpy as np

    ref = pred_references(task, n)
    rng = np.random.default_rng(1000 * seed + (7 if task == "stsb" else 0))
    if method == "oracle":
        return ref.copy()
    if method == "single":
        return np.where(rng.random(n) < 0.8, ref, 1 - ref)
    return rng.integers(0, 2, n).astype(float) if task == "sst2" else rng.uniform(0, 5, n)


def write_prediction_record(root: Path, model: str, label: str, task: str, seed: int, preds, refs, *,
                            ids=None, study: dict | None = None, finished: datetime | None = None) -> Path:
    """A schema-2 record whose metrics are computed from `preds` by bench.data.metrics (the real metric
    code), with its gzip predictions file beside it (bench.records.schema.write_predictions)."""
    from bench.data.metrics import compute_metrics
    from bench.records.schema import write_predictions

    headline, names = PRED_TASKS[task]
    rec = make_record(model, "full", task, seed, finished=finished, value=0.0,
                      extra_cfg={"label": label, "study": study or {}})
    rec.update(schema_version=2, method=label.split("[")[0], method_label=label, headline_metric=headline)
    rec["run_id"] = record_stem(model, task, label, seed, rec["config_hash"]) + (
        f"__t{study['trial_index']}" if study and study.get("role") == "trial" else "")
    rec["metrics"] = compute_metrics(names, preds, refs)
    ids = list(range(len(refs))) if ids is None else list(ids)
    name = rec["run_id"] + ".predictions.json.gz"
    write_predictions(root / "verdicts" / name, {
        "format": "peft-bench-predictions", "version": 1, "run_id": rec["run_id"], "task": task,
        "kind": "classification" if task == "sst2" else "regression", "num_labels": 2 if task == "sst2" else 1,
        "splits": {"validation": {"role": "eval", "metric_suffix": "", "ids": ids,
                                  "predictions": [float(x) for x in preds], "references": [float(x) for x in refs]}}})
    rec["predictions"] = name
    if study:
        rec["study"] = study
    return write_record(root / "verdicts" / f"{rec['run_id']}.json", rec)


def write_prediction_results(root: str | Path) -> dict:
    """oracle, chance, chance_copy: 3 seeds on sst2 and stsb; single: 1 seed on sst2; legacy: a
    schema-1 method (no predictions) on sst2; plus 4 learning-rate trials and the final record of
    an oracle study on sst2 (trials must stay out of the tables)."""
    root = Path(root)
    model = "tiny-bert"
    for task in PRED_TASKS:
        refs = pred_references(task)
        for label in ("oracle", "chance", "chance_copy"):
            for seed in SEEDS:
                src = "chance" if label == "chance_copy" else label
                final = {"name": "lr", "role": "final", "selected_lr": 3e-3, "lr_grid": [1e-4, 3e-4, 1e-3, 3e-3]}
                write_prediction_record(root, model, label, task, seed, pred_predictions(src, task, seed), refs,
                                        study=final if (label, task) == ("oracle", "sst2") else None)
    write_prediction_record(root, model, "single", "sst2", 1, pred_predictions("single", "sst2", 1),
                            pred_references("sst2"))
    for seed in SEEDS:
        legacy = make_record(model, "full", "sst2", seed, value=0.6 + 0.01 * seed)
        legacy["method_label"] = legacy["method"] = "legacy"
        legacy["run_id"] += "__legacy"
        write_record(root / "verdicts" / f"{legacy['run_id']}.json", legacy)
    refs = pred_references("sst2")
    grid = [1e-4, 3e-4, 1e-3, 3e-3]
    for i, score in enumerate(TRIAL_SCORES):
        study = {"name": "lr", "role": "trial", "trial_index": i, "n_trials": len(grid), "lr": grid[i],
                 "lr_grid": grid, "selection_score": score, "trial_seed": 0}
        # A trial's dev predictions are wrong on purpose: if trials leaked into the tables, the
        # oracle's cell would no longer be exactly 1.0.
        write_prediction_record(root, model, "oracle", "sst2", 1, 1 - refs, refs, study=study,
                                finished=T0 + timedelta(hours=1 + i))
    return {"model": model, "trial_scores": TRIAL_SCORES}
