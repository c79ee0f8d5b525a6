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
from bench.env import environment
from bench.errors import ConfigError
from bench.measure import PeakMemory, count_params, measure_storage, sync
from bench.methods import build_method
from bench.models import build_model
from bench.train import predict, train_model

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


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS is only deterministic with a fixed workspace; it reads this when it first starts,
        # which in a cell is after this line (the cell runs in its own process).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)


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
    torch.set_num_threads(resolve_threads(t.get("threads"), cfg.get("_parallel_cells")))
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
    train_ex = T.subsample(T.load_split(spec, "train"), t.max_train_samples, seed)
    eval_ex = {s: T.subsample(T.load_split(spec, s), t.max_eval_samples, seed) for s in spec.eval_splits}
    partial["data"] = {
        "train_examples": len(train_ex),
        "eval_examples": {s: len(v) for s, v in eval_ex.items()},
        "subsample_seed": seed,
        "source": f"local:{spec.root}" if spec.root else f"hub:{spec.hub.get('path') if spec.hub else None}",
    }
    # -- model + method -------------------------------------------------------------------------
    phase.name = "build"
    built = build_model(cfg.model, spec.num_labels, seed)
    model, tok = built.model, built.tokenizer
    method.validate(built.backbone_config, int(t.max_seq_len))
    method.apply(model)
    method.finalize(model)
    model.pass_token_type_ids = method.uses_token_type_ids
    model.to(device)
    partial["params"] = count_params(model)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    is_reg = spec.kind == "regression"
    cache = cfg.get("cache_dir")
    train_data, hit = encode_cached(train_ex, tok, int(t.max_seq_len), is_reg, cache)
    eval_data = {s: encode_cached(v, tok, int(t.max_seq_len), is_reg, cache)[0] for s, v in eval_ex.items()}
    partial["data"]["tokenized_cache_hit"] = hit

    def evaluate_all():
        metrics, n, secs = {}, 0, 0.0
        for split, data in eval_data.items():
            sync(device)
            t0 = time.perf_counter()
            preds = predict(model, data, int(t.eval_batch_size), pad_id, device, precision, method.uses_token_type_ids,
                            pad_multiple)
            sync(device)
            secs += time.perf_counter() - t0
            n += len(data)
            metrics.update(T.evaluate_predictions(spec, split, preds, data.labels))
        return metrics, n, secs

    def evaluate_epoch(epoch):
        m, _, _ = evaluate_all()
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
    metrics, n_eval, eval_s = evaluate_all()
    throughput["eval_samples_per_s"] = n_eval / eval_s if eval_s > 0 else None
    # -- storage --------------------------------------------------------------------------------
    phase.name = "save"
    keep = None
    if cfg.get("save_delta"):
        keep = os.path.join(str(cfg.results_dir), str(cfg.sweep_name), "deltas", partial.get("run_id", "delta"))
    storage = measure_storage(method, model, keep)
    return {
        "headline_metric": spec.headline,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "metrics_per_epoch": result.metrics_per_epoch,
        "selection": "best_epoch" if t.select == "best_epoch" else "last",
        "best_epoch": result.best_epoch if t.select == "best_epoch" else None,
        "data": partial["data"],
        "train": {
            "epochs": int(t.epochs), "steps": result.steps, "batch_size": int(t.batch_size), "lr": method.lr,
            "warmup_steps": result.warmup_steps, "final_loss": result.final_loss,
            "deterministic": bool(t.deterministic), "precision": precision, "pad_to_multiple_of": pad_multiple,
            "feature_cache": result.feature_s is not None, "feature_s": result.feature_s,
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
