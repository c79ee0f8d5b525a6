"""The recipe: one (model, task, method, seed) cell from config to record, in reading order.

bench/recipe/finetune.py is the recipe (what a cell does); bench/sweep/execute.py is the isolation and record layer
around it (identity, resume, a forked process per cell, failure records). `run_cell` reads as its
steps (torchtune's recipe style), each a short method of `CellRecipe`:

    setup:    _setup_runtime (bench.recipe.validate.check, device, seed, method) -> _setup_data (splits)
              -> _setup_model (bench.models.build.build_cell, init_from, counts) -> _setup_encoding
    train     (timed, memory-tracked)
    evaluate  (the chosen epoch's weights, every eval split and the selection split)
    save      (storage of the method's delta, inference cost, the kept delta's description)
    retain    (what the cell cost the backbone: bench/retention, docs/retention.md)
    record    (the measured parts of the record)

Everything that can be rejected is rejected in setup, before training starts. The recipe never
names a method: what differs between methods is read from the method's declarations
(bench/methods/base.py).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bench.analysis.chance import collapse_section
from bench.config.schema import model_setting, settings
from bench.cores import load_1min
from bench.data import sampling
from bench.data import tasks as T
from bench.data.batching import encode_cached
from bench.data.rows import cell_rows
from bench.device import sync
from bench.measure.flops import cell_flops
from bench.measure.memory import PeakMemory
from bench.measure.storage import measure_storage
from bench.models.build import build_cell, method_from_config
from bench.models.levers import enable_checkpointing, resolve_precision, weights_dtype
from bench.models.levers import record_section as levers_section
from bench.recipe.init_from import apply_init_from
from bench.recipe.runtime import (
    Phase,
    length_rule,
    pick_device,
    pick_pad_multiple,
    pick_precision,
    resolve_threads,
    seed_everything,
)
from bench.recipe.validate import check
from bench.records.environment import environment, parallel_cells
from bench.records.results import delta_dir, sweep_dir_of
from bench.records.schema import config_hash
from bench.retention import Retention, wanted
from bench.training.checkpoint import SUFFIX as CHECKPOINT_SUFFIX
from bench.training.checkpoint import CellCheckpoint
from bench.training.faults import send_test_signal
from bench.training.forward import predict
from bench.training.loop import grad_accum_steps, throughput, train_model
from bench.training.progress import CellProgress
from bench.training.progress import settings_from as progress_settings

log = logging.getLogger(__name__)


def prediction_payload(spec, eval_ids, eval_data, eval_preds, sel_ids, sel_data, sel_preds) -> dict:
    """Per-example predictions of every eval split and the selection split, with row ids, so that
    intervals and paired tests never need a rerun (written beside the record by bench.sweep.execute)."""
    splits = {}
    for split, data in eval_data.items():
        splits[split] = {"role": "eval", "metric_suffix": T.metric_suffix(spec, split),
                         "ids": eval_ids[split], "predictions": eval_preds[split], "references": list(data.labels)}
    if sel_data is not None:
        splits["selection"] = {"role": "selection", "metric_suffix": "", "ids": sel_ids,
                               "predictions": sel_preds, "references": list(sel_data.labels)}
    return {"format": "peft-bench-predictions", "version": 1, "task": spec.name, "kind": spec.kind,
            "num_labels": spec.num_labels, "splits": splits}


def run_cell(cfg: DictConfig, phase: Phase | None = None, partial: dict | None = None, trackers=None) -> dict:
    """Run one cell and return the measured parts of its record (identity fields are added by
    `bench.sweep.execute`). `partial` is filled as measurements arrive so a failure keeps them.
    `trackers` (bench.recipe.trackers.Trackers) hear of each step and epoch."""
    recipe = CellRecipe(cfg, phase or Phase(), partial if partial is not None else {}, trackers)
    recipe.setup()
    recipe.train()
    recipe.evaluate()
    recipe.save()
    recipe.retain()
    return recipe.record()


class CellRecipe:
    """One cell's steps; state passes between them on `self`. `phase.name` says which step runs."""

    def __init__(self, cfg: DictConfig, phase: Phase, partial: dict, trackers=None):
        self.cfg, self.t, self.phase, self.partial, self.trackers = cfg, cfg.train, phase, partial, trackers
        self.t_cell, self.cpu_cell, self.load_start = time.perf_counter(), time.process_time(), _load_1min()

    # -- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        self._setup_runtime()
        self._setup_data()
        self._setup_model()
        self._setup_encoding()

    def _setup_runtime(self) -> None:
        """Validate everything before any data or weights are loaded (bench.recipe.validate.check: the CLI
        checked already, but a cell can be run without it); device, precision, seed, method."""
        self.phase.name = "validate"
        check(self.cfg, whole_job=False)
        self.t = t = settings(self.cfg, "train")  # typed, built once: every later read is a field
        self.device = pick_device(str(t.device))
        self.precision = resolve_precision(weights_dtype(t), pick_precision(str(t.precision), self.device))
        self.pad_multiple = pick_pad_multiple(t.pad_to_multiple_of, self.device)
        torch.set_num_threads(resolve_threads(t.threads, parallel_cells()))
        self.seed = t.seed
        seed_everything(self.seed, t.deterministic)
        self.partial["env"] = environment(self.device)
        self.spec = T.task_spec(self.cfg.task)
        self.method = method_from_config(self.cfg)

    def _setup_data(self) -> None:
        """The selection split, the training subsample (both seeded) and the eval rows (not seeded)."""
        self.phase.name = "data"
        spec, seed = self.spec, self.seed
        rows = cell_rows(self.cfg, spec, seed)
        self.sel_cfg = sel_cfg = rows.selection
        self.sel_ids, pool, train_ids, strat = rows.sel_ids, rows.pool, rows.train_ids, rows.stratified
        self.train_ex, self.sel_ex = rows.train_ex, rows.sel_ex
        self.eval_ids, self.eval_ex = rows.eval_ids, rows.eval_ex
        self.partial["data"] = {
            "train_examples": len(self.train_ex),
            "train_pool_examples": len(pool),
            "train_fingerprint": sampling.fingerprint(train_ids),
            "train_subsample": "nested, stratified by label" if strat else "nested",
            "eval_examples": {s: len(v) for s, v in self.eval_ex.items()},
            "selection": dict(sel_cfg, examples=len(self.sel_ids), seed=seed,
                              fingerprint=sampling.fingerprint(self.sel_ids)),
            "subsample_seed": seed,
            # What train.seed varies (Bouthillier et al. 2021 ask every source to vary); the eval rows do not.
            "seeded_by_train_seed": ["selection split", "training subsample", "batch composition and order",
                                     "head and method initialisation", "dropout"],
            "source": f"local:{spec.root}" if spec.root else f"hub:{spec.hub.get('path') if spec.hub else None}",
        }

    def _setup_model(self) -> None:
        """Model + method through the one cell builder, then train.init_from, then the device."""
        self.phase.name = "build"
        self.cell = build_cell(self.cfg.model, self.method, self.spec.num_labels, self.seed, self.t.max_seq_len,
                               weights_dtype=weights_dtype(self.t))
        self.model = self.cell.model
        self.retention = None
        if wanted(self.cfg):  # the adapted matrices as pretrained, before init_from and training
            self.retention = Retention(self.cfg, self.model, self.cell.tokenizer, self.cell.backbone_config,
                                       self.seed, self.device, self.precision)
            self.retention.snapshot()
        self.init_from = apply_init_from(self.cfg, self.spec, self.method, self.model)  # a saved delta of another cell
        if self.t.gradient_checkpointing:
            enable_checkpointing(self.model, self.method)  # bench/models/levers.py
        self.model.to(self.device)
        self.partial["params"] = self.cell.params

    def _setup_encoding(self) -> None:
        """Tokenised splits (cached on disk under cache_dir)."""
        self.phase.name = "encode"
        tok, t, cache = self.cell.tokenizer, self.t, self.cfg.get("cache_dir")
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        is_reg, n = self.spec.kind == "regression", t.max_seq_len
        self.train_data, hit = encode_cached(self.train_ex, tok, n, is_reg, cache)
        self.eval_data = {s: encode_cached(v, tok, n, is_reg, cache)[0] for s, v in self.eval_ex.items()}
        self.sel_data = encode_cached(self.sel_ex, tok, n, is_reg, cache)[0] if self.sel_ex else None
        self.partial["data"]["tokenized_cache_hit"] = hit
        self.length_rule = self._apply_min_steps()

    @property
    def faults(self) -> dict:
        """`debug.*` fault injection; the test stop signals only for a cell's first launch (no record yet:
        its relaunch resumes instead of being stopped again)."""
        faults = dict(self.cfg.get("debug") or {})
        if not self.partial.get("first_launch", True):
            faults.pop("signal_at_step", None)
            faults.pop("signal_at_phase", None)
        return faults

    def _apply_min_steps(self) -> dict | None:
        """train.min_steps (bench.recipe.finetune.length_rule); the effective epochs replace train.epochs."""
        t = self.t
        rule = length_rule(t.epochs, t.min_steps, len(self.train_data), t.batch_size * grad_accum_steps(t))
        if rule and rule["epochs"] != t.epochs:
            self.t = dataclasses.replace(t, epochs=rule["epochs"])
        return rule

    # -- train ----------------------------------------------------------------------------------
    def train(self) -> None:
        self.phase.name = "train"
        t = self.t
        shown = progress_settings(self.cfg)
        progress = CellProgress(f"{self.spec.name} {self.method.name} s{self.seed}", shown.mode, shown.interval_s,
                                parallel=parallel_cells())
        if self.trackers is not None:
            from bench.recipe.trackers import ProgressTee

            progress = ProgressTee(progress, self.trackers)  # per-step loss and rate, after each timed step
        # a pruned study's rung trial saves its state; the promoted trial continues from it (bench/sweep/study.py)
        study_cell = self.cfg.get("study_cell") or {}
        state_out = study_cell.get("rung_state") if t.stop_after_epochs else None
        state_in = study_cell.get("continue_from")
        state_in = state_in if state_in and Path(str(state_in)).is_file() else None
        self.checkpoint = self._checkpoint()
        try:
            with PeakMemory(self.device) as mem:
                self.result, self.timer = train_model(
                    self.model, self.method, self.train_data, t, self.device, self.pad_id,
                    evaluate_epoch=self._evaluate_epoch if t.eval_every_epoch else None, precision=self.precision,
                    faults=self.faults, pad_multiple=self.pad_multiple, progress=progress,
                    state_in=state_in, state_out=state_out, checkpoint=self.checkpoint,
                )
        finally:
            progress.close()
            if self.checkpoint is not None:
                self.partial["checkpoint"] = self.checkpoint.section()
        self.partial["memory"] = mem.as_dict()
        self.throughput = throughput(self.result, self.timer, self.train_data, t.epochs)

    def _checkpoint(self) -> CellCheckpoint | None:
        """The cell's checkpoint beside its record (bench/training/checkpoint.py); None for a cell run
        without a record (no run id: a script's own call of run_cell)."""
        run_id = self.partial.get("run_id")
        if not run_id:
            return None
        chash = config_hash(OmegaConf.to_container(self.cfg, resolve=True))
        path = sweep_dir_of(self.cfg) / f"{run_id}{CHECKPOINT_SUFFIX}"
        return CellCheckpoint(path, run_id, chash, self.t.checkpoint_every,
                              last_seen=self.partial.pop("last_seen", None))

    def _predict(self, data):
        return predict(self.model, data, self.t.eval_batch_size, self.pad_id, self.device, self.precision,
                       self.method.uses_token_type_ids, self.pad_multiple)

    def _evaluate_selection(self):
        """Metrics on the selection split, under the main split's metric names (no suffix)."""
        preds = self._predict(self.sel_data)
        return T.evaluate_predictions(self.spec, self.spec.eval_splits[0], preds, self.sel_data.labels), preds

    def _evaluate_epoch(self, epoch):
        # The epoch is chosen on the selection split only: the reported split is never looked at here.
        # Scored on the task's selection score (select_metric; MRPC: mean of F1 and accuracy), which a
        # run collapsed onto one class cannot win the way it wins the F1 of that class.
        send_test_signal(self.faults, "epoch_eval")
        m, preds = self._evaluate_selection()
        if self.t.select == "best_epoch":  # the best epoch's selection scores are the final ones (evaluate)
            self.epoch_selection = getattr(self, "epoch_selection", {})
            self.epoch_selection[epoch] = (m, preds)
        if self.trackers is not None:
            self.trackers.epoch(epoch, m)  # inside the evaluation time, which train_s leaves out
        return m, T.selection_score(self.spec, m)

    # -- evaluate -------------------------------------------------------------------------------
    def evaluate(self) -> None:
        self.phase.name = "eval"
        send_test_signal(self.faults, "eval")
        result = self.result
        if self.t.select == "best_epoch" and result.best_state is not None:
            with torch.no_grad():
                named = dict(self.model.named_parameters())
                for n, v in result.best_state.items():
                    named[n].copy_(v)
        self.metrics, n_eval, self.eval_s, preds = {}, 0, 0.0, {}
        if (self.cfg.get("study_cell") or {}).get("score_reported") is False:
            # a study's first-rung trial: only its selection score is ever read (the cut), and it can
            # never become a reported run (bench/sweep/study.py), so the reported splits are not scored
            self.eval_data = {}
        for split, data in self.eval_data.items():
            sync(self.device)
            t0 = time.perf_counter()
            preds[split] = self._predict(data)
            sync(self.device)
            self.eval_s += time.perf_counter() - t0
            n_eval += len(data)
            self.metrics.update(T.evaluate_predictions(self.spec, split, preds[split], data.labels))
        self.throughput["eval_samples_per_s"] = n_eval / self.eval_s if self.eval_s > 0 else None
        # Under best_epoch the restored weights are the ones that epoch's evaluation scored, so its
        # selection metrics and predictions are reused rather than computed again (equal in every one of
        # the 816 catalogue records that recomputed them; docs/protocol.md, "What a cell's time buys").
        kept = getattr(self, "epoch_selection", {}).get(result.best_epoch) if result.best_state is not None else None
        if kept is not None:
            self.sel_metrics, sel_preds = kept
        else:
            self.sel_metrics, sel_preds = self._evaluate_selection() if self.sel_data is not None else ({}, None)
        self.predictions = prediction_payload(self.spec, self.eval_ids, self.eval_data, preds, self.sel_ids,
                                              self.sel_data, sel_preds)

    # -- save -----------------------------------------------------------------------------------
    def save(self) -> None:
        """Storage of the method's delta; inference cost and a usable delta (bench/inference/cost.py,
        bench/predict.py) when asked."""
        cfg, t = self.cfg, self.t
        self.phase.name = "save"
        keep = None
        if cfg.get("save_delta"):
            keep = str(delta_dir(sweep_dir_of(cfg), self.partial.get("run_id", "delta")))
        self.storage = measure_storage(self.method, self.model, keep)
        self.inference = None
        if (cfg.get("inference") or {}).get("enabled", False):
            self.phase.name = "inference"
            send_test_signal(self.faults, "inference")
            from bench.inference.cost import measure_cell
            self.inference = measure_cell(cfg, self.model, self.spec.num_labels, self.seed, self.device, self.precision,
                                          run_id=self.partial.get("run_id"))
        if keep:
            from bench.models.delta import task_info, write_delta_info
            write_delta_info(keep, model_cfg=OmegaConf.to_container(cfg.model, resolve=True), method=self.method,
                             task=task_info(self.spec), seed=self.seed, max_seq_len=t.max_seq_len,
                             eval_batch_size=t.eval_batch_size, pad_to_multiple_of=self.pad_multiple,
                             run_id=self.partial.get("run_id"), metrics={k: float(v) for k, v in self.metrics.items()},
                             headline=self.spec.headline, method_label=self.partial.get("method_label"),
                             inference=self.inference)

    def retain(self) -> None:
        """The retention section (bench/retention) on the chosen weights; a failure there is logged and
        recorded, never the cause of a failed cell whose training and evaluation succeeded."""
        self.retention_section = None
        if self.retention is None:
            return
        self.phase.name = "retention"
        try:
            self.retention_section = self.retention.measure(run_id=self.partial.get("run_id"))
        except Exception as exc:  # noqa: BLE001 - an extra measurement must not cost a finished cell
            log.warning("retention: not measured (%s: %s)", type(exc).__name__, exc)
            self.retention_section = {"error": f"{type(exc).__name__}: {exc}"}
        self.retention.before_weights = {}

    def _flops(self) -> dict:
        """Model FLOPs and MFU (bench/measure/flops.py); a failure there is logged and recorded, never the
        cause of a failed cell whose training and evaluation succeeded."""
        try:
            return cell_flops(self.model, self.result.feature_s is not None, self.timer, self.train_data,
                              self.eval_data, self.t, self.result.train_s, self.eval_s, self.device, self.precision,
                              self.pad_multiple)
        except Exception as exc:  # noqa: BLE001 - an extra measurement must not cost a finished cell
            log.warning("flops: not counted (%s: %s)", type(exc).__name__, exc)
            return {"train_flops": None, "mfu": None, "error": f"{type(exc).__name__}: {exc}"}

    # -- record ---------------------------------------------------------------------------------
    def record(self) -> dict:
        t, result, cell = self.t, self.result, self.cell
        best = t.select == "best_epoch"
        self.phase.name = "flops"
        flops = self._flops()
        self.phase.name = "record"
        composed = self.method.composition_record() or {}  # (optional) composed_from, composition
        return {
            **composed,
            "inference": self.inference,
            "retention": self.retention_section,  # (optional) forgetting, drift, intruder dimensions
            "headline_metric": self.spec.headline,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "selection_metrics": {k: float(v) for k, v in self.sel_metrics.items()},
            "_predictions": self.predictions,
            # (optional) eval/selection predictions (nearly) all one class or (nearly) constant
            "collapse": collapse_section(self.predictions),
            "metrics_per_epoch": result.metrics_per_epoch,
            "selection": "best_epoch" if best else "last",
            "best_epoch": result.best_epoch if best else None,
            "data": self.partial["data"],
            "train": {
                "epochs": t.epochs, "steps": result.steps, "batch_size": t.batch_size, "lr": self.method.lr,
                "warmup_steps": result.warmup_steps, "final_loss": result.final_loss,
                "deterministic": t.deterministic, "precision": self.precision,
                "pad_to_multiple_of": self.pad_multiple,
                "feature_cache": result.feature_s is not None, "feature_s": result.feature_s,
                **({"data_pass_s": result.data_pass_s} if result.data_pass_s is not None else {}),
                "grad_accum_steps": grad_accum_steps(t), "effective_batch_size": t.batch_size * grad_accum_steps(t),
                "init_from": self.init_from, "length_rule": self.length_rule,
                "stop_after_epochs": t.stop_after_epochs, "optimizer": result.optimizer,
                "continued_from_epoch": result.continued_from_epoch,
                "memory_levers": levers_section(t, cell.weights),  # (optional)
            },
            "params": self.partial["params"],
            "memory": self.partial["memory"],
            "throughput": self.throughput,
            "flops": flops,
            "time": {"train_s": result.train_s, "eval_s": self.eval_s, "total_s": time.perf_counter() - self.t_cell,
                     "phases_s": self.phase.durations(),
                     # (schema 5) CPU time of the cell's process, and the machine's load when it started and
                     # ended: a cell timed on a busy machine says so, and cpu_s / threads is its quiet wall time
                     "cpu_s": time.process_time() - self.cpu_cell, "load_avg": [self.load_start, _load_1min()]},
            "storage": self.storage,
            "checkpoint": self.partial.get("checkpoint"),  # (schema 4) saves, resumes, what a stop lost
            "capabilities": dict(self.method.capabilities(), optimizer=result.optimizer,
                                 mergeable=mergeable(self.inference)),
            **({"method_file": note} if (note := getattr(self.method, "file_record", lambda: None)()) else {}),
            "env": self.partial["env"],
            "model_info": {"source": cell.source, "tokenizer": cell.tokenizer_source,
                           "pretrained": bool(model_setting(self.cfg.model, "pretrained")),
                           "pooling": self.model.pooling},
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def _load_1min() -> float | None:
    """bench.cores.load_1min to two decimals, as records keep it."""
    load = load_1min()
    return None if load is None else round(load, 2)


def mergeable(inference: dict | None):
    """From the inference section's measured merge: True (merged, logits checked), False (not
    applicable, with peft's or the harness's reason in the section), None (not measured)."""
    merge = (inference or {}).get("merge") or {}
    status = merge.get("status")
    return None if status is None else status in ("merged", "native")
