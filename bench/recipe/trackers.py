"""Results where researchers look for them: a cell also logs to the experiment trackers named by the
`logger/` config group: `none` (default), `csv`, `tensorboard`, `mlflow`, `wandb`, `many`
(csv + tensorboard + mlflow), or several at once (`logger=[csv,mlflow]`).

Each cell logs its resolved settings (flattened, dotted keys), tags (sweep, model, task, method,
method_label, seed, config_hash, run_id, status), per-step training loss and learning rate, the
per-epoch selection score (when train.eval_every_epoch), the final metrics, the selection split's
metrics and the cost figures (trainable parameters, peak memory, throughput, time, storage, FLOPs),
and the record as an artifact.

The JSON record stays the source of truth. A tracker is a copy for watching and browsing: every
call to one is guarded, a tracker that fails is switched off for the rest of the cell with a
warning, and the record's optional `trackers` field says per tracker `ok` (with where it logged)
or `failed` (with the error). A cell never fails because of a tracker.

Cost in the timed steps: none. Per-step values reach the trackers through the progress hook the
training loop calls after each step's timed region closes (bench/training/loop.py, bench/training/progress.py); they
are buffered and handed to the trackers at most every FLUSH_S seconds and at the end, so a slow
tracker (an SQLite write per call) is not paid per step either.

Where things go (defaults; each under `<results_dir>/tracking/`, a folder bench.records.schema skips when
it looks for records, because trackers keep copies of the record there):
csv: `csv/<sweep>/<run_id>/` (metrics.csv, params.json, tags.json, the record); tensorboard:
`tensorboard/<sweep>/<run_id>/`; mlflow: `sqlite:///<results_dir>/tracking/mlflow.db` (MLflow 3.7 made
SQLite its default, and 3.13 refuses a plain `mlruns/` file store) with artifacts in
`mlflow-artifacts/`, experiment = the sweep name; wandb: offline runs in `wandb/` unless `mode` is set.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

from bench.errors import ConfigError
from bench.records.schema import TRACKING_DIR

log = logging.getLogger("bench")

FLUSH_S = 30.0
#: backend -> (module that must be importable, the pyproject extra that installs it, accepted settings)
BACKENDS = {
    "csv": (None, None, ("dir",)),
    "tensorboard": ("tensorboard", "tensorboard", ("dir",)),
    "mlflow": ("mlflow", "mlflow", ("tracking_uri", "experiment", "artifact_location")),
    "wandb": ("wandb", "wandb", ("project", "entity", "mode", "dir")),
}


def check_logger(node) -> list[str]:
    """The `logger` node's backends, checked: known names, known settings, and the package of each
    installed (else a ConfigError naming the extra to install). Called by bench.recipe.validate.check."""
    node = node or {}
    if not isinstance(node, dict):
        raise ConfigError(f"logger={node!r}: expected a choice of the logger/ group (none, csv, tensorboard, "
                          "mlflow, wandb, many) or a list of them, e.g. logger=[csv,mlflow]")
    for name, settings in node.items():
        if name not in BACKENDS:
            raise ConfigError(f"logger.{name}: unknown tracker; expected one of {', '.join(BACKENDS)}")
        module, extra, accepted = BACKENDS[name]
        for key in settings or {}:
            if key not in accepted:
                raise ConfigError(f"logger.{name}.{key}: unknown setting (accepted: "
                                  f"{', '.join(f'logger.{name}.{k}' for k in accepted)})")
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(f"logger={name}: the {module} package is not installed; install peft-bench's "
                              f"extra: pip install 'peft-bench[{extra}]' (or [trackers] for every tracker)")
    return list(node)


def flatten(node, prefix: str = "") -> dict:
    """Nested settings as dotted keys (`train.lr`), lists as their JSON text."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    out[prefix[:-1]] = json.dumps(node) if isinstance(node, list) else node
    return out


def _number(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def final_values(record: dict) -> dict:
    """The numbers a tracker shows for a finished cell: metrics, selection metrics and cost figures."""
    out = {f"eval/{k}": v for k, v in (record.get("metrics") or {}).items() if _number(v)}
    out.update({f"selection/{k}": v for k, v in (record.get("selection_metrics") or {}).items() if _number(v)})
    picks = {"params": ("trainable", "total", "trainable_pct"),
             "memory": ("peak_rss_bytes", "cuda_peak_allocated_bytes"),
             "throughput": ("train_samples_per_s", "train_tokens_per_s", "eval_samples_per_s"),
             "time": ("train_s", "eval_s", "total_s"), "storage": ("bytes",), "flops": ("train_flops", "mfu")}
    for section, keys in picks.items():
        values = record.get(section) or {}
        out.update({f"cost/{section}.{k}": values[k] for k in keys if _number(values.get(k))})
    return out


class Trackers:
    """The trackers of one cell, every call guarded (see the module docstring)."""

    def __init__(self, backends: dict, ident: dict, results_dir: str):
        self.ident, self.root = ident, Path(str(results_dir)) / TRACKING_DIR
        self.status: dict[str, dict] = {}
        self.live: dict[str, object] = {}
        self._buffer: list[tuple[int, dict]] = []
        self._flushed = time.monotonic()
        self.steps = 0
        for name, settings in backends.items():
            self._guard(name, lambda n=name, s=settings: self.live.__setitem__(n, MAKERS[n](dict(s or {}), self)))

    @classmethod
    def from_config(cls, cfg, ident: dict) -> Trackers | None:
        from omegaconf import OmegaConf

        node = cfg.get("logger") if hasattr(cfg, "get") else None
        node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else (node or {})
        return cls(node, ident, str(cfg.results_dir)) if node else None

    def _guard(self, name: str, call) -> None:
        if name in self.status and self.status[name]["status"] == "failed":
            return
        try:
            call()
            self.status.setdefault(name, {"status": "ok"})
        except Exception as exc:  # noqa: BLE001 - a tracker never fails a cell
            self.live.pop(name, None)
            self.status[name] = {**self.status.get(name, {}), "status": "failed",
                                 "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            log.warning("tracker %s failed, switched off for this cell (the record is unaffected): %s: %s",
                        name, type(exc).__name__, exc)

    def _each(self, method: str, *args) -> None:
        for name, backend in list(self.live.items()):
            self._guard(name, lambda b=backend: getattr(b, method)(*args))

    @property
    def tags(self) -> dict:
        i = self.ident
        return {"sweep": i["sweep"], "model": i["model"], "task": i["task"], "method": i["method"],
                "method_label": i["method_label"], "seed": str(i["seed"]), "config_hash": i["config_hash"],
                "run_id": i["run_id"]}

    def start(self) -> None:
        self._each("start", self.tags, flatten(self.ident["config"]))

    def step(self, loss: float | None, lr: float | None) -> None:
        """After each optimizer step (outside the timed region): buffered, flushed every FLUSH_S."""
        self.steps += 1
        values = {k: v for k, v in (("train/loss", loss), ("train/lr", lr)) if _number(v)}
        self._buffer.append((self.steps, values))
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        rows, self._buffer, self._flushed = self._buffer, [], time.monotonic()
        if rows:
            self._each("log", rows)

    def epoch(self, epoch: int, metrics: dict) -> None:
        self.flush()
        self._each("log", [(self.steps, {f"selection_epoch/{k}": v for k, v in metrics.items() if _number(v)}
                            | {"epoch": epoch})])

    def finish(self, record: dict, record_path: Path) -> dict:
        """Final values, the record as an artifact, the run closed; returns the per-tracker status."""
        self.flush()
        final = final_values(record)
        if final:
            self._each("log", [(self.steps, final)])
        self._each("artifact", Path(record_path))
        self._each("close", str(record.get("status")))
        return dict(self.status)

    def where(self, name: str, **facts) -> None:
        self.status[name] = {"status": "ok", **facts}


class ProgressTee:
    """The training loop's progress hook, passed on to CellProgress and, per step, to the trackers."""

    def __init__(self, progress, trackers: Trackers):
        self.progress, self.trackers = progress, trackers

    def start(self, total_steps: int, epochs: int) -> None:
        self.progress.start(total_steps, epochs)

    def step(self, samples: int, loss, epoch: int, lr=None) -> None:
        self.progress.step(samples, loss, epoch, lr=lr)
        self.trackers.step(loss, lr)

    def close(self) -> None:
        self.progress.close()


# ------------------------------------------------------------------------------------------ backends

def _folder(setting, default: Path, ident: dict) -> Path:
    base = Path(str(setting)) if setting else default
    return base / ident["sweep"] / ident["run_id"]


class CsvTracker:
    def __init__(self, s: dict, t: Trackers):
        self.dir = _folder(s.get("dir"), t.root / "csv", t.ident)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.dir / "metrics.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115 - open for the cell
        self.out = csv.writer(self.fh)
        self.out.writerow(["step", "name", "value"])
        t.where("csv", dir=str(self.dir))

    def start(self, tags: dict, params: dict) -> None:
        (self.dir / "tags.json").write_text(json.dumps(tags, indent=1) + "\n")
        (self.dir / "params.json").write_text(json.dumps(params, indent=1, default=str) + "\n")

    def log(self, rows) -> None:
        for step, values in rows:
            self.out.writerows([step, k, v] for k, v in values.items())
        self.fh.flush()

    def artifact(self, path: Path) -> None:
        shutil.copyfile(path, self.dir / path.name)

    def close(self, status: str) -> None:
        self.fh.close()


class TensorBoardTracker:
    def __init__(self, s: dict, t: Trackers):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = _folder(s.get("dir"), t.root / "tensorboard", t.ident)
        self.writer = SummaryWriter(log_dir=str(self.dir))
        t.where("tensorboard", dir=str(self.dir))

    def start(self, tags: dict, params: dict) -> None:
        self.writer.add_text("tags", "\n".join(f"    {k}: {v}" for k, v in tags.items()))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()))

    def log(self, rows) -> None:
        for step, values in rows:
            for k, v in values.items():
                self.writer.add_scalar(k, v, global_step=step)

    def artifact(self, path: Path) -> None:
        self.writer.add_text("record", "    " + path.read_text(encoding="utf-8").replace("\n", "\n    "))

    def close(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()


class MlflowTracker:
    def __init__(self, s: dict, t: Trackers):
        from mlflow.tracking import MlflowClient

        t.root.mkdir(parents=True, exist_ok=True)
        self.uri = s.get("tracking_uri") or f"sqlite:///{(t.root / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        name = s.get("experiment") or t.ident["sweep"]
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = s.get("artifact_location") or (t.root / "mlflow-artifacts").resolve().as_uri()
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except Exception:  # created by a parallel cell meanwhile
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self.run = self.client.create_run(exp_id, run_name=t.ident["run_id"]).info.run_id
        t.where("mlflow", tracking_uri=self.uri, experiment=name, run=self.run)

    def start(self, tags: dict, params: dict) -> None:
        from mlflow.entities import Param, RunTag

        self.client.log_batch(self.run, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        items = [Param(k[:250], str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run, params=items[i:i + 100])

    def log(self, rows) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for step, values in rows for k, v in values.items()]
        for i in range(0, len(items), 1000):  # and at most 1000 metrics
            self.client.log_batch(self.run, metrics=items[i:i + 1000])

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run, str(path), artifact_path="record")

    def close(self, status: str) -> None:
        self.client.set_tag(self.run, "status", status)
        self.client.set_terminated(self.run, "FINISHED" if status == "ok" else "FAILED")


class WandbTracker:
    def __init__(self, s: dict, t: Trackers):
        import wandb

        folder = Path(str(s.get("dir"))) if s.get("dir") else t.root
        folder.mkdir(parents=True, exist_ok=True)
        mode = s.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(project=s.get("project") or "peft-bench", entity=s.get("entity"), mode=mode,
                              dir=str(folder), group=t.ident["sweep"], name=t.ident["run_id"],
                              config=t.ident["config"])
        t.where("wandb", mode=mode, dir=str(folder))

    def start(self, tags: dict, params: dict) -> None:
        self.run.tags = tuple(f"{k}={v}" for k, v in tags.items())

    def log(self, rows) -> None:
        for step, values in rows:
            self.run.log(values, step=step)

    def artifact(self, path: Path) -> None:
        import wandb

        art = wandb.Artifact(f"record-{path.stem[-8:]}", type="peft-bench-record")
        art.add_file(str(path))
        self.run.log_artifact(art)

    def close(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "ok" else 1)


MAKERS = {"csv": CsvTracker, "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}
