"""The recipe: one (model, task, method, seed) cell from config to record, in reading order.

validate -> data -> model + method -> measure params -> train (timed, memory-tracked) -> evaluate
-> measure storage -> record. Everything that can be rejected is rejected before training starts.
"""
from __future__ import annotations

import logging
import os
import random
import time
from datetime import UTC, datetime

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import tasks as T
from bench.batching import encode_cached
from bench.env import environment, parallel_cells
from bench.errors import ConfigError
from bench.init_from import apply_init_from
from bench.measure import PeakMemory, count_params, measure_storage, sync
from bench.methods import build_method
from bench.models import build_model, head_counting
from bench.train import grad_accum_steps, predict, train_model

log = logging.getLogger(__name__)


class Phase:
    """Tracks which phase a cell is in, so a failure record can say where it happened."""

    def __init__(self):
        self.name = "validate"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r}: CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if name not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision={name!r}: expected auto, fp32, bf16 or fp16")
    return name


def pick_pad_multiple(setting, device: torch.device) -> int:
    """`auto`: 8 on CUDA, 1 (no rounding) on CPU. On a GPU every new padded length costs a new
    attention/matmul plan; measured on an H200 (docs/gpu.md), the first epoch of a cell ran several
    times slower than later ones while those plans were built. On CPU extra padding is only cost."""
    if setting in (None, "auto"):
        return 8 if device.type == "cuda" else 1
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"train.pad_to_multiple_of={setting!r}: expected auto or an integer >= 1")
    return setting


def resolve_threads(setting, parallel_cells) -> int:
    """`auto`: split the cores between cells that run at the same time (joblib n_jobs), so parallel
    cells never oversubscribe the CPU; an integer is taken as given."""
    cores = os.cpu_count() or 1
    if setting in (None, "auto"):
        return max(1, cores // max(1, int(parallel_cells or 1)))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"train.threads={setting!r}: expected auto or an integer >= 1")
    return setting


def validate_train(t) -> None:
    checks = [
        ("train.epochs", t.epochs, 1), ("train.batch_size", t.batch_size, 1),
        ("train.eval_batch_size", t.eval_batch_size, 1), ("train.max_seq_len", t.max_seq_len, 8),
    ]
    for opt, val, lo in checks:
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ConfigError(f"{opt}={val!r}: expected an integer >= {lo}")
    for opt in ("max_train_samples", "max_eval_samples"):
        v = t.get(opt)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"train.{opt}={v!r}: expected null (all) or an integer >= 1")
    if t.lr is not None and not (isinstance(t.lr, (int, float)) and t.lr > 0):
        raise ConfigError(f"train.lr={t.lr!r}: the learning rate must be a number > 0 (or null for the method's default)")
    if not 0 <= float(t.warmup_ratio) < 1:
        raise ConfigError(f"train.warmup_ratio={t.warmup_ratio!r}: expected a number in [0, 1)")
    if t.select not in ("last", "best_epoch"):
        raise ConfigError(f"train.select={t.select!r}: expected last or best_epoch")
    if t.select == "best_epoch" and not t.eval_every_epoch:
        raise ConfigError("train.select=best_epoch needs train.eval_every_epoch=true")


def selection_settings(cfg) -> dict:
    """data.selection, checked; the epoch choice needs it (never the reported split)."""
    sel = dict((cfg.get("data") or {}).get("selection") or {})
    fraction = sel.get("fraction", 0.0) or 0.0
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ConfigError(f"data.selection.fraction={fraction!r}: expected a number in [0, 1) (0 = no selection split)")
    cap = sel.get("max_examples")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError(f"data.selection.max_examples={cap!r}: expected null or an integer >= 1")
    if cfg.train.select == "best_epoch" and fraction == 0:
        raise ConfigError("train.select=best_epoch needs a selection split (data.selection.fraction > 0): the "
                          "epoch is chosen on held-out train examples, never on the reported split")
    # train.max_eval_samples bounds every evaluated split, the selection split included (quick runs).
    limit = cfg.train.get("max_eval_samples")
    if limit is not None:
        cap = int(limit) if cap is None else min(int(cap), int(limit))
    return {"fraction": float(fraction), "max_examples": cap, "stratify": bool(sel.get("stratify", True))}


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS is only deterministic with a fixed workspace; it reads this when it first starts,
        # which in a cell is after this line (the cell runs in its own process).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)


def prediction_payload(spec, eval_ids, eval_data, eval_preds, sel_ids, sel_data, sel_preds) -> dict:
    """Per-example predictions of every eval split and the selection split, with row ids, so that
    intervals and paired tests never need a rerun (written beside the record by bench.execute)."""
    splits = {}
    for split, data in eval_data.items():
        splits[split] = {"role": "eval", "metric_suffix": T.metric_suffix(spec, split),
                         "ids": eval_ids[split], "predictions": eval_preds[split], "references": list(data.labels)}
    if sel_data is not None:
        splits["selection"] = {"role": "selection", "metric_suffix": "", "ids": sel_ids,
                               "predictions": sel_preds, "references": list(sel_data.labels)}
    return {"format": "peft-bench-predictions", "version": 1, "task": spec.name, "kind": spec.kind,
            "num_labels": spec.num_labels, "splits": splits}


def run_cell(cfg: DictConfig, phase: Phase | None = None, partial: dict | None = None) -> dict:
    """Run one cell and return the measured parts of its record (identity fields are added by
    `bench.execute`). `partial` is filled as measurements arrive so a failure keeps them."""
    phase = phase or Phase()
    partial = partial if partial is not None else {}
    t_cell = time.perf_counter()
    t = cfg.train
    # -- validate everything before any data or weights are loaded -----------------------------
    phase.name = "validate"
    validate_train(t)
    device = pick_device(str(t.device))
    precision = pick_precision(str(t.precision), device)
    pad_multiple = pick_pad_multiple(t.get("pad_to_multiple_of", "auto"), device)
    torch.set_num_threads(resolve_threads(t.get("threads"), parallel_cells()))
    seed = int(t.seed)
    seed_everything(seed, bool(t.deterministic))
    partial["env"] = environment(device)
    spec = T.task_spec(cfg.task)
    method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
    if t.lr is not None:
        method_cfg["lr"] = float(t.lr)
    method = build_method(method_cfg)
    # -- data -----------------------------------------------------------------------------------
    phase.name = "data"
    sel_cfg = selection_settings(cfg)
    train_all = T.load_split(spec, "train")
    sel_ids, pool = T.carve_selection(train_all, spec.kind, sel_cfg["fraction"], sel_cfg["max_examples"], seed,
                                      sel_cfg["stratify"])
    train_ids = T.nested_subsample(pool, t.max_train_samples, seed)
    train_ex = [train_all[i] for i in train_ids]
    sel_ex = [train_all[i] for i in sel_ids]
    eval_ids, eval_ex = {}, {}
    for s in spec.eval_splits:
        rows = T.load_split(spec, s)
        # Not seeded by train.seed: every run scores the same eval rows, so runs pair example by example.
        eval_ids[s] = T.eval_subsample(len(rows), t.max_eval_samples, 0)
        eval_ex[s] = [rows[i] for i in eval_ids[s]]
    partial["data"] = {
        "train_examples": len(train_ex),
        "train_pool_examples": len(pool),
        "train_fingerprint": T.fingerprint(train_ids),
        "eval_examples": {s: len(v) for s, v in eval_ex.items()},
        "selection": dict(sel_cfg, examples=len(sel_ids), seed=seed, fingerprint=T.fingerprint(sel_ids)),
        "subsample_seed": seed,
        # What train.seed varies (Bouthillier et al. 2021 ask every source to vary); the eval rows do not.
        "seeded_by_train_seed": ["selection split", "training subsample", "batch composition and order",
                                 "head and method initialisation", "dropout"],
        "source": f"local:{spec.root}" if spec.root else f"hub:{spec.hub.get('path') if spec.hub else None}",
    }
    # -- model + method -------------------------------------------------------------------------
    phase.name = "build"
    built = build_model(cfg.model, spec.num_labels, seed)
    model, tok = built.model, built.tokenizer
    method.validate(built.backbone_config, int(t.max_seq_len))
    method.apply(model)
    method.finalize(model)
    init_from = apply_init_from(cfg, spec, method, model)  # train.init_from: a saved delta of another cell
    model.pass_token_type_ids = method.uses_token_type_ids
    model.to(device)
    partial["params"] = dict(count_params(model), head_kind=model.head_kind, counting=head_counting(model))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    is_reg = spec.kind == "regression"
    cache = cfg.get("cache_dir")
    train_data, hit = encode_cached(train_ex, tok, int(t.max_seq_len), is_reg, cache)
    eval_data = {s: encode_cached(v, tok, int(t.max_seq_len), is_reg, cache)[0] for s, v in eval_ex.items()}
    sel_data = encode_cached(sel_ex, tok, int(t.max_seq_len), is_reg, cache)[0] if sel_ex else None
    partial["data"]["tokenized_cache_hit"] = hit

    def predict_split(data):
        return predict(model, data, int(t.eval_batch_size), pad_id, device, precision, method.uses_token_type_ids,
                       pad_multiple)

    def evaluate_all():
        metrics, n, secs, preds_by_split = {}, 0, 0.0, {}
        for split, data in eval_data.items():
            sync(device)
            t0 = time.perf_counter()
            preds = predict_split(data)
            sync(device)
            secs += time.perf_counter() - t0
            n += len(data)
            preds_by_split[split] = preds
            metrics.update(T.evaluate_predictions(spec, split, preds, data.labels))
        return metrics, n, secs, preds_by_split

    def evaluate_selection():
        """Metrics on the selection split, under the main split's metric names (no suffix)."""
        preds = predict_split(sel_data)
        return T.evaluate_predictions(spec, spec.eval_splits[0], preds, sel_data.labels), preds

    def evaluate_epoch(epoch):
        # The epoch is chosen on the selection split only: the reported split is never looked at here.
        m, _ = evaluate_selection()
        return m, m[spec.headline]

    # -- train ----------------------------------------------------------------------------------
    phase.name = "train"
    with PeakMemory(device) as mem:
        result, timer = train_model(
            model, method, train_data, t, device, pad_id,
            evaluate_epoch=evaluate_epoch if t.eval_every_epoch else None, precision=precision,
            faults=dict(cfg.get("debug") or {}), pad_multiple=pad_multiple,
        )
    partial["memory"] = mem.as_dict()
    throughput = timer.as_dict()
    if result.feature_s is not None:
        # Cached features: the honest rate is everything the head's training needed, feature pass included.
        n_done = len(train_data) * int(t.epochs)
        throughput.update({
            "train_samples_per_s": n_done / result.train_s,
            "train_tokens_per_s": sum(train_data.lengths) * int(t.epochs) / result.train_s,
            "train_padded_tokens_per_s": None, "warmup_steps_excluded": 0,
            "mode": "cached features: one frozen-backbone pass over the train set + head steps",
        })
    # -- evaluate -------------------------------------------------------------------------------
    phase.name = "eval"
    if t.select == "best_epoch" and result.best_state is not None:
        with torch.no_grad():
            named = dict(model.named_parameters())
            for n, v in result.best_state.items():
                named[n].copy_(v)
    metrics, n_eval, eval_s, eval_preds = evaluate_all()
    throughput["eval_samples_per_s"] = n_eval / eval_s if eval_s > 0 else None
    sel_metrics, sel_preds = evaluate_selection() if sel_data is not None else ({}, None)
    predictions = prediction_payload(spec, eval_ids, eval_data, eval_preds, sel_ids, sel_data, sel_preds)
    # -- storage --------------------------------------------------------------------------------
    phase.name = "save"
    keep = None
    if cfg.get("save_delta"):
        keep = os.path.join(str(cfg.results_dir), str(cfg.sweep_name), "deltas", partial.get("run_id", "delta"))
    storage = measure_storage(method, model, keep)
    # -- inference cost + a usable delta (issue #14: bench/inference.py, bench/predict.py) ---------
    inference = None
    if (cfg.get("inference") or {}).get("enabled", False):
        phase.name = "inference"
        from bench.inference import measure_cell
        inference = measure_cell(cfg, model, spec.num_labels, seed, device, precision)
    if keep:
        from bench.predict import task_info, write_delta_info
        write_delta_info(keep, model_cfg=OmegaConf.to_container(cfg.model, resolve=True), method=method,
                         task=task_info(spec), seed=seed, max_seq_len=int(t.max_seq_len),
                         eval_batch_size=int(t.eval_batch_size), pad_to_multiple_of=pad_multiple,
                         run_id=partial.get("run_id"), metrics={k: float(v) for k, v in metrics.items()},
                         headline=spec.headline, method_label=partial.get("method_label"), inference=inference)
    # -- end of the issue #14 block -----------------------------------------------------------------
    return {
        "inference": inference,
        "headline_metric": spec.headline,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "selection_metrics": {k: float(v) for k, v in sel_metrics.items()},
        "_predictions": predictions,
        "metrics_per_epoch": result.metrics_per_epoch,
        "selection": "best_epoch" if t.select == "best_epoch" else "last",
        "best_epoch": result.best_epoch if t.select == "best_epoch" else None,
        "data": partial["data"],
        "train": {
            "epochs": int(t.epochs), "steps": result.steps, "batch_size": int(t.batch_size), "lr": method.lr,
            "warmup_steps": result.warmup_steps, "final_loss": result.final_loss,
            "deterministic": bool(t.deterministic), "precision": precision, "pad_to_multiple_of": pad_multiple,
            "feature_cache": result.feature_s is not None, "feature_s": result.feature_s,
            "grad_accum_steps": grad_accum_steps(t), "effective_batch_size": int(t.batch_size) * grad_accum_steps(t),
            "init_from": init_from,
        },
        "params": partial["params"],
        "memory": partial["memory"],
        "throughput": throughput,
        "time": {"train_s": result.train_s, "eval_s": eval_s, "total_s": time.perf_counter() - t_cell},
        "storage": storage,
        "env": partial["env"],
        "model_info": {"source": built.source, "tokenizer": built.tokenizer_source,
                       "pretrained": bool(cfg.model.get("pretrained", True)), "pooling": model.pooling},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
