"""The training loop and evaluation: a lean loop rather than the HF Trainer, so every timed region
is ours to define (docs/performance.md compares it with a Trainer script).

AdamW (no weight decay on biases and LayerNorm), linear warm-up then linear decay, gradient
clipping, dynamic padding, evaluation only outside timed steps, and a check that stops a run at
the first non-finite loss instead of training on NaN for hours.

Gradient accumulation (`train.grad_accum_steps = k`, `train.batch_size = b`) recovers a published
effective batch (per-device batch x GPUs) on one device: each optimizer step sees the same k*b
examples that `batch_size=k*b` would give it (the epoch's batches are drawn at size k*b and split
into k micro-batches of at most b), each micro-batch loss is scaled by its share of the step's
examples (so the summed gradient is the gradient of the mean loss over all k*b examples, whatever
the last batch's size), clipping happens once after accumulation, and the learning-rate schedule,
`steps`, warm-up and the step timer count optimizer steps (a timed step includes all k forward and
backward passes; samples/s counts examples, so it is comparable across k).
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field

import torch

from bench.data.batching import Encoded, batch_order, collate, padded_width, representative_batches
from bench.device import autocast_for, sync
from bench.measure.timing import StepTimer
from bench.training.checkpoint import rng_state, set_rng_state
from bench.training.data_parallel import data_parallel
from bench.training.faults import inject_fault, send_test_signal
from bench.training.forward import TrainingBatches, loss_fn, model_inputs, pooled_features, to_device
from bench.training.optimizer import linear_schedule, method_optimizer, optional_setting
from bench.training.stop import STOP, Stopped, signal_name


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the message names the step and what to change."""


@dataclass
class TrainResult:
    steps: int = 0
    final_loss: float | None = None
    train_s: float = 0.0
    warmup_steps: int = 0
    metrics_per_epoch: list = field(default_factory=list)
    best_epoch: int | None = None
    best_metrics: dict | None = None
    best_state: dict | None = None
    feature_s: float | None = None
    data_pass_s: float | None = None  # a data-pass initialisation's seconds (EVA), outside train_s
    optimizer: str = ""
    continued_from_epoch: int | None = None  # bench/training/rung_state.py: epochs restored, not trained here


def grad_accum_steps(tcfg) -> int:
    """`train.grad_accum_steps` (default 1), checked: micro-batches per optimizer step."""
    k = optional_setting(tcfg, "grad_accum_steps", 1)
    from bench.config.schema import check_value

    return 1 if check_value("train.grad_accum_steps", k) is None else k


def micro_batches(ids: list[int], micro: int) -> list[list[int]]:
    """An optimizer step's examples split into consecutive micro-batches of at most `micro`."""
    return [ids[i:i + micro] for i in range(0, len(ids), micro)]


def step_shapes(ids: list[int], lengths, micro: int, pad_multiple: int) -> tuple[int, int, int]:
    """(real tokens, padded tokens, sum of batch x width^2) of one optimizer step: each micro-batch
    pads to its own longest row; the squared widths are for attention's FLOPs."""
    shapes = [(len(part), padded_width(max(lengths[i] for i in part), pad_multiple))
              for part in micro_batches(ids, micro)]
    return sum(lengths[i] for i in ids), sum(b * w for b, w in shapes), sum(b * w * w for b, w in shapes)


def epoch_order(lengths, bs: int, tcfg, epoch: int, max_steps) -> list[list[int]]:
    """The epoch's batches; for a timing run (`train.max_steps`, the cost pass) batches whose sizes
    represent the epoch, not its first ones."""
    order = batch_order(lengths, bs, int(tcfg.seed), epoch, bool(tcfg.group_by_length),
                        mega_batches=optional_setting(tcfg, "group_mega_batches"))
    if max_steps:
        order = representative_batches(order, lengths, int(max_steps), int(tcfg.warmup_steps_excluded))
    return order


@dataclass
class _StepInputs:
    """What one micro-batch's forward and backward need; `feats`/`labels` are set for a method that
    trains on cached features (the head alone on pooled features computed once)."""

    model: object
    method: object
    data: Encoded
    device: torch.device
    pad_id: int
    pad_multiple: int
    precision: str
    use_tt: bool
    faults: dict | None
    feats: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    forward: object = None  # data parallel: the DDP wrapper to call instead of the model (or head)

    def pool_once(self, batch_size: int) -> float:
        """Compute the frozen backbone's pooled features of every training row once; returns seconds."""
        t0 = time.perf_counter()
        self.feats = pooled_features(self.model, self.data, batch_size, self.pad_id, self.device, self.precision,
                                     self.use_tt, self.pad_multiple)
        sync(self.device)
        elapsed = time.perf_counter() - t0
        self.labels = torch.tensor(self.data.labels, device=self.device,
                                   dtype=torch.float32 if self.data.is_regression else torch.long)
        return elapsed

    def backward(self, part: list[int], step_rows: int, step: int, epoch: int) -> float:
        """Forward and backward of one micro-batch, its loss scaled by its share of the step's rows
        (the summed gradient is that of the step's mean loss); returns the scaled loss."""
        if self.feats is not None:
            idx = torch.tensor(part, device=self.device)
            logits, labels = (self.forward or self.model.head)(self.feats[idx]), self.labels[idx]
        else:
            batch = to_device(collate(self.data, part, self.pad_id, self.pad_multiple), self.device)
            labels = batch["labels"]
            with autocast_for(self.device, self.precision):
                logits = (self.forward or self.model)(**model_inputs(batch, self.use_tt))
        loss = loss_fn(logits, labels, self.data.is_regression)
        extra = self.method.regularization(self.model)
        if extra is not None:
            loss = loss + extra
        if self.faults:
            loss = inject_fault(self.faults, step, loss)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"loss became {loss.item()} at step {step} (epoch {epoch}); "
                f"lower the learning rate (method.lr / train.lr = {self.method.lr}) or check the data"
            )
        loss = loss * (len(part) / step_rows)  # this micro-batch's share of the step's mean loss
        loss.backward()
        return float(loss.detach())


def accumulate(inputs: _StepInputs, dp, ids: list[int], mine: list[int], micro: int, step: int, epoch: int) -> float:
    """One optimizer step's forward and backward passes over this process's rows `mine` of the step's
    `ids`, in micro-batches of at most `micro`; returns the sum of the scaled micro-batch losses. Data
    parallel: each loss is scaled by N x its share, so DDP's mean of the ranks' gradients is the
    gradient of the step's mean loss; gradients are reduced once, in the last backward; an empty
    share runs one zero-weight pass so every rank joins the reduction."""
    if dp is None:
        return sum(inputs.backward(part, len(ids), step, epoch) for part in micro_batches(ids, micro))
    parts = micro_batches(mine, micro) or [ids[:1]]
    rows = len(ids) / dp.size if mine else float("inf")  # inf: weight 0
    total = 0.0
    for i, part in enumerate(parts):
        with dp.no_sync(last=i == len(parts) - 1):
            total += inputs.backward(part, rows, step, epoch)
    return total


def _evaluate_and_keep_best(res: TrainResult, evaluate_epoch, epoch: int, named, device) -> float:
    """Evaluate after `epoch` (outside the training time), keep the best epoch's metrics and weights
    by selection score; returns the seconds it took."""
    sync(device)
    t0 = time.perf_counter()
    metrics, score = evaluate_epoch(epoch)
    sync(device)
    elapsed = time.perf_counter() - t0
    res.metrics_per_epoch.append({"epoch": epoch, "metrics": metrics})
    if res.best_metrics is None or score > res.best_metrics["_headline"]:
        res.best_epoch = epoch
        res.best_metrics = dict(metrics, _headline=score)
        res.best_state = {n: p.detach().clone() for n, p in named}
    return elapsed


def _optimizer_step(opt, sched, method, model, params, max_grad_norm: float, step: int) -> None:
    """After the step's backward passes, inside its timed region: clip once, step the optimizer and the
    schedule, the method's per-step hook (AdaLoRA's allocation), clear the gradients."""
    if max_grad_norm > 0:
        # foreach: one multi-tensor norm/scale instead of a kernel per tensor (same result)
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    opt.step()
    sched.step()
    method.after_optimizer_step(model, step)
    opt.zero_grad(set_to_none=True)


def _epoch_evaluation(res: TrainResult, evaluate_epoch, epoch: int, named, device, dp) -> float:
    """The per-epoch evaluation, once per cell (rank 0's; the other ranks wait for it); returns its
    seconds, which training time leaves out."""
    seconds = 0.0
    if dp is None or dp.rank == 0:
        seconds += _evaluate_and_keep_best(res, evaluate_epoch, epoch, named, device)
    if dp is not None:
        t_wait = time.perf_counter()
        dp.barrier()
        seconds += time.perf_counter() - t_wait
    return seconds


def train_model(model, method, train_data: Encoded, tcfg, device, pad_id: int, evaluate_epoch=None,
                precision: str = "fp32", faults: dict | None = None, pad_multiple: int = 1,
                progress=None, state_in=None, state_out=None,
                checkpoint=None) -> tuple[TrainResult, StepTimer]:
    """Train the parameters that require grad. `evaluate_epoch(epoch) -> (metrics, score)` is
    called after each epoch when per-epoch evaluation is on (score: the task's selection score on the
    selection split; the best epoch maximises it); its time is not training time.
    `progress` (bench.training.progress.CellProgress) hears of each step after the timed region closes.

    `train.stop_after_epochs = k` (a tuning study's first rung, bench/sweep/study.py) stops after epoch k
    of a schedule laid out for all `train.epochs`: the k epochs it trains are exactly the first k
    epochs of the full-length run; with `state_out` it then saves its state there, and a later run of
    the full length given that file as `state_in` continues from it (bench/training/rung_state.py) instead of
    training those epochs again.

    `checkpoint` (bench.training.checkpoint.CellCheckpoint): continued from when it exists, saved on its
    interval and on a stop signal (bench/training/stop.py), at a step's end, before `Stopped` is raised."""
    if not method.trainable_named_parameters(model):
        raise RuntimeError(f"method {method.name} left no trainable parameter")
    micro = int(tcfg.batch_size)
    bs = micro * grad_accum_steps(tcfg)  # examples per optimizer step (the effective batch)
    steps_per_epoch = math.ceil(len(train_data) / bs)
    total = steps_per_epoch * int(tcfg.epochs)
    data_pass_s = _data_pass(model, method, train_data, micro, pad_id, pad_multiple, device)
    method.before_training(model, total)
    opt, optimizer_name = method_optimizer(model, method, method.trainable_named_parameters(model), tcfg)
    named = method.trainable_named_parameters(model)  # an optimizer factory may freeze some (LoRA-FA's A)
    params = [p for _, p in named]
    sched = linear_schedule(opt, warmup := round(float(tcfg.warmup_ratio) * total), total)
    timer = StepTimer(device, skip=int(tcfg.warmup_steps_excluded))
    res = TrainResult(warmup_steps=warmup, optimizer=optimizer_name, data_pass_s=data_pass_s)
    cached = bool(method.trains_on_cached_features)  # the method's declaration (validate: frozen backbone)
    stop = optional_setting(tcfg, "stop_after_epochs")
    run_epochs = min(int(tcfg.epochs), int(stop)) if stop else int(tcfg.epochs)
    max_steps = optional_setting(tcfg, "max_steps")  # set by the cost pass only (bench/sweep/cost_pass.py): few steps
    saver = _Saver(None if max_steps else checkpoint, model, method, named, opt, sched, res, timer, device)
    first_epoch, skip = saver.restore(total) if saver.on else (0, 0)
    first_epoch = first_epoch if saver.resumed else _restore(state_in, total, named, opt, sched, res, device)
    if progress is not None:
        progress.start(steps_per_epoch * (run_epochs - first_epoch) - skip, run_epochs)
    saver.start_clock()
    dp = data_parallel(model, cached, int(tcfg.seed))  # None on one process (bench/training/data_parallel.py)
    saver.set_parallel(dp)  # the restored RNG streams: after DDP's reseeding of ranks > 0
    inputs = _StepInputs(model, method, train_data, device, pad_id, pad_multiple, precision,
                         method.uses_token_type_ids, faults, forward=dp.module if dp else None)
    if cached:
        res.feature_s = inputs.pool_once(int(tcfg.eval_batch_size))
    lengths = train_data.lengths
    with STOP.deferring():  # a stop signal waits for the step's end: the state saved is a step's
        for epoch in range(first_epoch, run_epochs):
            if max_steps and res.steps >= int(max_steps):
                break
            model.train()
            if method.frozen_backbone:
                model.backbone.eval()
            done = skip if epoch == first_epoch else 0  # steps of this epoch a checkpoint already holds
            for k, ids in enumerate(epoch_order(lengths, bs, tcfg, epoch, max_steps)[done:], done):
                if max_steps and res.steps >= int(max_steps):
                    break
                mine = dp.shard(ids) if dp else ids  # this process's share of the step (all of it on one)
                n_tok, padded, squares = step_shapes(mine, lengths, micro, pad_multiple)
                step_lr = opt.param_groups[0]["lr"]  # this step's rate (trackers), read before the timer
                with timer.step(len(mine), n_tok, padded, squares):
                    step_loss = accumulate(inputs, dp, ids, mine, micro, res.steps + 1, epoch + 1)
                    _optimizer_step(opt, sched, method, model, params, float(tcfg.max_grad_norm),
                                    res.steps + 1)
                res.steps += 1
                send_test_signal(faults, "step", res.steps)
                res.final_loss = saver.after_step(step_loss, epoch, k + 1)
                if progress is not None:
                    progress.step(len(ids), res.final_loss, epoch + 1, lr=step_lr)
            if evaluate_epoch is not None:
                saver.eval_s += _epoch_evaluation(res, evaluate_epoch, epoch + 1, named, device, dp)
            saver.after_epoch(epoch + 1)
        saver.finish(run_epochs)
    if STOP.requested:  # asked during the last moments of training: stop before the evaluation
        raise Stopped(STOP.signum, str(checkpoint.path) if saver.on else None)
    if state_out is not None and run_epochs < int(tcfg.epochs) and (dp is None or dp.rank == 0):
        _save_rung(state_out, run_epochs, total, named, opt, sched, res, device)
    return res, timer


def _save_rung(state_out, epoch: int, total: int, named, opt, sched, res: TrainResult, device) -> None:
    """A first rung's state at its last epoch (bench/training/rung_state.py)."""
    from bench.training.rung_state import save_state

    save_state(state_out, epoch=epoch, total_steps=total, named=named, opt=opt, sched=sched, res=res, device=device)


class _Saver:
    """The loop's side of a cell checkpoint (bench/training/checkpoint.py): restore at the start, save
    at step boundaries when due or asked to stop (every rank agrees on when, so ranks save one state),
    and the training seconds, checkpoint writes and per-epoch evaluations left out."""

    def __init__(self, checkpoint, model, method, named, opt, sched, res, timer, device):
        self.ck, self.model, self.method, self.named = checkpoint, model, method, named
        self.opt, self.sched, self.res, self.timer, self.device = opt, sched, res, timer, device
        self.on, self.resumed, self.rng, self.dp = checkpoint is not None, False, None, None
        self.eval_s = self.save_s = self.prior_s = 0.0
        self.saved = 0  # checkpoints this launch saved (on every rank, so the ranks decide alike)

    def restore(self, total: int) -> tuple[int, int]:
        """(first epoch, optimizer steps of it already done); restores everything but the RNG streams."""
        self.total = total
        state = self.ck.load(total, [n for n, _ in self.named])
        if state is None:
            return 0, 0
        with torch.no_grad():
            for n, p in self.named:
                p.copy_(state["params"][n].to(p.device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if state.get("method_state") is not None:
            self.method.load_loop_state(self.model, state["method_state"])
        r, res = state["result"], self.res
        res.steps, res.final_loss = r["steps"], r["final_loss"]
        res.metrics_per_epoch = list(r["metrics_per_epoch"])
        res.best_epoch, res.best_metrics = r["best_epoch"], r["best_metrics"]
        best = r["best_state"] or {}
        res.best_state = {n: v.to(self.device) for n, v in best.items()} or None
        self.timer.restore(state["timer"])
        self.ck.interval.mark_saved(res.steps, time.monotonic(), 0.0)  # the next interval counts from here
        self.prior_s, self.rng, self.resumed = float(r["train_s"]), state["rng"], True
        return int(state["epoch"]), int(state["step_in_epoch"])

    def start_clock(self) -> None:
        sync(self.device)
        self.t_start = time.perf_counter()

    def set_parallel(self, dp) -> None:
        self.dp = dp
        if self.rng is not None:
            set_rng_state(self.rng[dp.rank if dp else 0])

    def after_step(self, step_loss: float, epoch: int, done_in_epoch: int) -> float:
        """The step's loss (the mean over ranks); saves and stops when due or asked to."""
        due = self.on and self.ck.interval.due(self.res.steps, time.monotonic())
        if self.dp is None:
            loss, stop = step_loss, STOP.requested
        else:
            loss, stop, due = self.dp.step_sync(step_loss, STOP.requested, due)
        if self.on and (stop or due):
            self.res.final_loss = loss
            self._save(epoch, done_in_epoch, _reason(stop))
        if stop:
            self._stop()
        return loss

    def after_epoch(self, epochs_done: int) -> None:
        """A stop during the epoch's evaluation: save with the evaluation kept."""
        stop = STOP.requested
        if self.dp is not None:
            stop = self.dp.step_sync(0.0, stop)[1]
        if stop:
            if self.on:
                self._save(epochs_done, 0, _reason(True))
            self._stop()

    def _stop(self):
        """Stopped, with where the state was saved; a rank that did not get the signal itself stops too."""
        raise Stopped(STOP.signum or signal.SIGTERM, str(self.ck.path) if self.on else None)

    def finish(self, run_epochs: int) -> None:
        """The training seconds; the trained state kept when this cell checkpoints at all (a long cell)."""
        sync(self.device)
        self.res.train_s = self.train_s()
        if not self.on:
            return
        keep = bool(self.saved or self.resumed or STOP.requested)
        if self.dp is not None:
            keep = self.dp.step_sync(0.0, keep)[1]
        if keep:
            self._save(run_epochs, 0, "end of training")

    def train_s(self) -> float:
        return self.prior_s + time.perf_counter() - self.t_start - self.eval_s - self.save_s

    def _save(self, epoch: int, step_in_epoch: int, reason: str) -> None:
        t0 = time.perf_counter()
        rng = rng_state()
        rngs = self.dp.gather(rng) if self.dp is not None else [rng]
        if self.dp is None or self.dp.rank == 0:
            res = self.res
            best = {n: v.cpu() for n, v in (res.best_state or {}).items()} or None
            state = {"epoch": epoch, "step_in_epoch": step_in_epoch, "steps": res.steps,
                     "total_steps": self.total,
                     "params": {n: p.detach().cpu().clone() for n, p in self.named},
                     "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "method_state": self.method.loop_state(self.model), "rng": rngs,
                     "timer": self.timer.state(),
                     "result": {"steps": res.steps, "final_loss": res.final_loss, "train_s": self.train_s(),
                                "metrics_per_epoch": res.metrics_per_epoch, "best_epoch": res.best_epoch,
                                "best_metrics": res.best_metrics, "best_state": best}}
            self.ck.save(state, reason)
        if self.dp is not None:
            self.dp.barrier()
        took = time.perf_counter() - t0
        self.save_s += took
        self.saved += 1
        self.ck.interval.mark_saved(self.res.steps, time.monotonic(), took)


def _reason(stop: bool) -> str:
    return f"stop signal {signal_name(STOP.signum)}" if stop and STOP.signum else "interval"


def _data_pass(model, method, train_data: Encoded, batch_size: int, pad_id: int, pad_multiple: int,
               device) -> float | None:
    """The method's data-pass initialisation over the training rows (this cell's `train_data`, which
    holds no selection or dev row), in file order, without labels; its seconds, or None when the
    method has none. It runs before a continued rung's state is restored too: the same rows in the
    same order give the same initialisation (and EVA's ranks, so the saved tensors' shapes), and the
    restored weights then replace what it initialised."""
    if not method.has_hook("initialize_from_data"):
        return None
    was_training = model.training
    model.eval()  # the activations the method reads, without dropout's noise
    sync(device)
    t0 = time.perf_counter()
    method.initialize_from_data(model, TrainingBatches(train_data, batch_size, pad_id, pad_multiple, device,
                                                       method.uses_token_type_ids))
    sync(device)
    model.train(was_training)
    return time.perf_counter() - t0


def _restore(state_in, total: int, named, opt, sched, res: TrainResult, device) -> int:
    """The first epoch to train: 0, or the epoch after a first rung's saved state (bench/training/rung_state.py)."""
    if state_in is None:
        return 0
    from bench.training.rung_state import load_state

    return load_state(state_in, total_steps=total, named=named, opt=opt, sched=sched, res=res, device=device)


def throughput(result: TrainResult, timer: StepTimer, train_data: Encoded, epochs: int) -> dict:
    """The record's training throughput: the step timer's rates; with cached features the honest
    rate is everything the head's training needed, the feature pass included."""
    out = timer.as_dict()
    if result.feature_s is not None:
        n_done = len(train_data) * int(epochs)
        out.update({
            "train_samples_per_s": n_done / result.train_s,
            "train_tokens_per_s": sum(train_data.lengths) * int(epochs) / result.train_s,
            "train_padded_tokens_per_s": None, "warmup_steps_excluded": 0,
            "mode": "cached features: one frozen-backbone pass over the train set + head steps",
        })
    return out
