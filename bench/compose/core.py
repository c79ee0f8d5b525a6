"""Sources, rebuilding, evaluation and records of composed models.

A *source* is an ok record whose delta was kept (`save_delta=true`): given as the record file
(`<sweep>/<run_id>.json`) or the kept delta folder (`<sweep>/deltas/<run_id>`). Both must exist; a
missing one is a ComposeError naming the file. A composed model is saved as an ordinary delta folder
(the method's own format + `bench_delta.json`, so `bench.predict.load_delta` loads it), then rebuilt
from that folder and evaluated like a cell: every eval split (dev) and a selection split, with
per-example predictions, written as a normal record plus `composed_from` and `composition`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench.config.schema import model_setting
from bench.data import sampling
from bench.data import tasks as T
from bench.data.loading import load_split
from bench.data.rows import cell_rows, eval_rows
from bench.errors import BenchError
from bench.records import build as envelope
from bench.records import schema as R
from bench.records.results import KeptSource, SourceError, delta_dir, resolve_kept


class ComposeError(BenchError):
    """A composition that cannot be made (missing source, incompatible deltas); exit status 2."""


#: A source of a composition: an ok record and its kept delta (one type for every reader of a source).
Source = KeptSource


def load_source(ref: str | Path) -> Source:
    """A source from a record file or a kept delta folder (bench.records.results.resolve_kept)."""
    try:
        kept = resolve_kept(ref)
    except SourceError as exc:
        raise ComposeError(str(exc)) from None
    kept.record["_path"] = str(kept.path)
    return kept


def method_settings(src: Source) -> dict:
    """The source's method settings (method.json) without the learning rate."""
    return {k: v for k, v in src.settings.items() if k != "lr"}


def check_same_base(sources: list[Source], what: str) -> None:
    """Same method and settings (lr aside), same base model; a random-weight backbone (pretrained
    false) differs per seed, so such sources must share the seed."""
    first = sources[0]
    m0, s0 = first.config["model"], method_settings(first)
    for src in sources[1:]:
        if method_settings(src) != s0:
            raise ComposeError(f"{what}: {src.path} has method settings {method_settings(src)}, {first.path} has "
                               f"{s0}; only deltas of one method with one set of settings combine")
        m = src.config["model"]
        for key in ("name", "source", "config_overrides", "head", "pooling"):
            if m.get(key) != m0.get(key):
                raise ComposeError(f"{what}: {src.path} has model.{key}={m.get(key)!r}, {first.path} "
                                   f"{m0.get(key)!r}; the deltas must sit on one base model")
        if not model_setting(m0, "pretrained") and int(src.record["seed"]) != int(first.record["seed"]):
            raise ComposeError(f"{what}: model {m0.get('name')} has random weights built from the seed (pretrained "
                               f"false), so seeds {first.record['seed']} and {src.record['seed']} sit on different "
                               "backbones; compose such deltas only within one seed")


def source_method(src: Source, settings: dict | None = None):
    """The method of `src` as its delta describes it (bench_delta.json, else the record's config), with its
    settings replaced by `settings` where given (a merged LoRA's rank): what compose asks what it can do."""
    from bench.models.delta import method_from_delta

    info_file = src.delta / "bench_delta.json"
    mcfg = dict(json.loads(info_file.read_text())["method"]) if info_file.is_file() else dict(src.config["method"])
    mcfg.update(settings or {})
    mcfg.setdefault("lr", src.record.get("train", {}).get("lr"))
    # a delta's description and a record are data: the method by registered name only (bench.predict.method_from_delta)
    try:
        return method_from_delta(mcfg, str(info_file if info_file.is_file() else src.record.get("_path")))
    except ValueError as exc:
        raise ComposeError(str(exc)) from None


def build(src: Source, settings: dict | None = None, num_labels: int | None = None):
    """A fresh cell (bench.models.build.build_cell) for `src`'s config and method (`source_method`). Returns
    the Cell."""
    from bench.models.build import build_cell

    method = source_method(src, settings)
    cfg = OmegaConf.create(src.config)
    spec = T.task_spec(cfg.task)
    return build_cell(cfg.model, method, int(num_labels or spec.num_labels), int(src.record["seed"]),
                      int(cfg.train.max_seq_len))


def rows_of(src: Source):
    """(selection ids, training ids, the train file's rows) of a source cell, chosen again by the one
    chooser the recipe uses (bench/data/rows.py) and checked against the record's fingerprints."""

    cfg = OmegaConf.create(src.config)
    rows = cell_rows(cfg, T.task_spec(cfg.task), int(src.record["seed"]), with_eval=False)
    data = src.record.get("data") or {}
    if data.get("train_fingerprint") and data["train_fingerprint"] != sampling.fingerprint(rows.train_ids):
        raise ComposeError(f"{src.path}: the training rows recomputed here differ from the record's "
                           "(train_fingerprint); was the train file changed?")
    return rows.sel_ids, rows.train_ids, rows.train_all


class Evaluator:
    """Evaluates a model on a task's eval splits (the same rows every cell scores) and on given
    selection rows, batched as bench.recipe.finetune does."""

    def __init__(self, src: Source, selection_ids: list[int], train_all=None):
        from bench.data.batching import encode

        cfg = OmegaConf.create(src.config)
        self.cfg, self.spec = cfg, T.task_spec(cfg.task)
        self.max_len = int(cfg.train.max_seq_len)
        self.batch = int(cfg.train.eval_batch_size)
        self.pad_multiple = int((src.record.get("train") or {}).get("pad_to_multiple_of") or 1)
        self.sel_ids = list(selection_ids)
        train_all = train_all if train_all is not None else load_split(self.spec, "train")
        self.sel_ex = [train_all[i] for i in self.sel_ids]
        self.eval_ids, self.eval_ex = eval_rows(cfg, self.spec)
        self._encode = encode
        self._cache: dict = {}

    def _data(self, tokenizer, which):
        key = (id(tokenizer), which)
        if key not in self._cache:
            ex = self.sel_ex if which == "selection" else self.eval_ex[which]
            self._cache[key] = self._encode(ex, tokenizer, self.max_len, self.spec.kind == "regression")
        return self._cache[key]

    def _predict(self, cell, data):
        from bench.training.forward import predict

        tok = cell.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        with torch.no_grad():
            return predict(cell.model.eval(), data, self.batch, pad, torch.device("cpu"), "fp32",
                           cell.method.uses_token_type_ids, self.pad_multiple)

    def selection_score(self, cell) -> float:
        data = self._data(cell.tokenizer, "selection")
        m = T.evaluate_predictions(self.spec, self.spec.eval_splits[0], self._predict(cell, data), data.labels)
        return float(m[self.spec.headline])

    def evaluate(self, cell) -> dict:
        """metrics, selection_metrics, predictions payload, eval seconds."""
        from bench.recipe.finetune import prediction_payload

        t0 = time.perf_counter()
        metrics, preds, datas = {}, {}, {}
        for s in self.eval_ex:
            datas[s] = self._data(cell.tokenizer, s)
            preds[s] = self._predict(cell, datas[s])
            metrics.update(T.evaluate_predictions(self.spec, s, preds[s], datas[s].labels))
        eval_s = time.perf_counter() - t0
        sel_metrics, sel_preds, sel_data = {}, None, None
        if self.sel_ids:
            sel_data = self._data(cell.tokenizer, "selection")
            sel_preds = self._predict(cell, sel_data)
            sel_metrics = T.evaluate_predictions(self.spec, self.spec.eval_splits[0], sel_preds, sel_data.labels)
        payload = prediction_payload(self.spec, self.eval_ids, datas, preds, self.sel_ids, sel_data, sel_preds)
        return {"metrics": {k: float(v) for k, v in metrics.items()},
                "selection_metrics": {k: float(v) for k, v in sel_metrics.items()},
                "predictions": payload, "eval_s": eval_s, "n_eval": sum(len(d) for d in datas.values())}


def save_composed(cell, src: Source, folder: Path, run_id: str, label: str) -> Path:
    """Save the composed model as a delta folder (method format + bench_delta.json)."""
    from bench.models.delta import task_info, write_delta_info

    cfg = OmegaConf.create(src.config)
    folder.mkdir(parents=True, exist_ok=True)
    cell.method.save_delta(cell.model, folder)
    write_delta_info(folder, model_cfg=OmegaConf.to_container(cfg.model, resolve=True), method=cell.method,
                     task=task_info(T.task_spec(cfg.task)), seed=int(src.record["seed"]),
                     max_seq_len=int(cfg.train.max_seq_len), eval_batch_size=int(cfg.train.eval_batch_size),
                     pad_to_multiple_of=int((src.record.get("train") or {}).get("pad_to_multiple_of") or 1),
                     run_id=run_id, headline=src.headline, method_label=label)
    return folder


def reload(src: Source, folder: Path, settings: dict | None = None):
    """A fresh cell with the saved composed delta loaded: what is evaluated is what was saved."""
    cell = build(src, settings)
    cell.method.load_delta(cell.model, folder)
    return cell


def write_composed_record(out: Path, src: Source, label: str, sources: list[Source], composition: dict,
                          cell, result: dict, folder: Path | None, started: str, t0: float) -> Path:
    """A normal record (schema as bench.records.schema) for a composed model; `composed_from` names the
    source records, each of which must exist when written."""
    from bench.measure.storage import measure_storage

    for s in sources:
        if not s.path.is_file():
            raise ComposeError(f"{s.path}: source record named in composed_from does not exist")
    config = json.loads(json.dumps(src.config, default=str))
    config["sweep_name"] = out.name
    config["compose"] = {k: v for k, v in composition.items() if k not in ("ingredients", "retention")}
    config["compose"]["sources"] = [s.run_id for s in sources]
    ident = envelope.identity(model=src.record["model"], task=src.record["task"], method=src.record["method"],
                           label=label, seed=int(src.record["seed"]), config=config, sweep=out.name)
    run_id = ident["run_id"]
    path = out / f"{run_id}.json"
    pred_name = envelope.write_predictions_beside(path, result["predictions"], run_id)
    storage = measure_storage(cell.method, cell.model, None)
    if folder is not None:
        storage["kept_at"] = str(folder)
    rec = {
        **ident, "status": "ok", "error": None, "created_at": started,
        "composed_from": [{"run_id": s.run_id, "record": str(s.path), "task": s.record["task"],
                           "seed": int(s.record["seed"]), "delta": str(s.delta)} for s in sources],
        "composition": composition,
        "inference": None, "headline_metric": src.headline,
        "metrics": result["metrics"], "selection_metrics": result["selection_metrics"], "predictions": pred_name,
        "metrics_per_epoch": [], "selection": "composed", "best_epoch": None,
        "data": {"train_examples": 0, "eval_examples": {k: len(v) for k, v in result["predictions"]["splits"].items()
                                                        if k != "selection"},
                 "selection": dict(composition.get("selection_split") or {}, examples=len(
                     (result["predictions"]["splits"].get("selection") or {}).get("ids", [])))},
        "train": {"epochs": 0, "steps": 0, "lr": None, "init_from": None, "composed": True},
        "params": dict(cell.params),
        "memory": {},
        "throughput": {"eval_samples_per_s": result["n_eval"] / result["eval_s"] if result["eval_s"] else None},
        "time": {"train_s": 0.0, "eval_s": result["eval_s"], "total_s": time.perf_counter() - t0},
        "storage": storage, "env": src.record.get("env"), "model_info": src.record.get("model_info"),
        "finished_at": envelope.now(),
    }
    if folder is not None:
        # the kept folder is named by the run_id, as a cell's kept delta is
        final = delta_dir(out, run_id)
        if final != folder:
            if final.exists():
                import shutil
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(final)
            info = json.loads((final / "bench_delta.json").read_text())
            info.update(run_id=run_id, metrics=result["metrics"])
            (final / "bench_delta.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
            rec["storage"]["kept_at"] = str(final)
    return R.write_record(path, rec)
