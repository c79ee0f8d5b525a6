"""`python -m bench [overrides]` runs one cell; `python -m bench -m ...` runs a Hydra multirun;
`python -m bench ls [methods|tasks|models|experiments]` lists what the config groups hold.

Resume, failure isolation and the summary live here and in bench.sweep.execute, because Hydra has none.
Exit status: 0 when every cell is ok or skipped, 1 when any failed, 2 on a configuration error,
130 on Ctrl-C. Settings are checked (bench.recipe.validate.check) before any cell runs: in a multirun,
every job's config before the first job starts.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# As in bench/__main__.py, for the `peft-bench` console script, which imports this module directly:
# torch.cuda.is_available() asks NVML, so cells forked from this process can still use the GPU.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.config.confdir import PACKAGED, conf_dir, find_conf_dir, group_files
from bench.cores import usable_cores
from bench.logs import quiet_libraries

log = logging.getLogger("bench")
# The repo's conf/ in a clone, bench/conf/ in an installed wheel (bench/config/confdir.py); when neither
# exists, main() stops with a ConfigError before Hydra reports a less helpful "not found".
CONF_DIR = str(find_conf_dir() or PACKAGED)
_STATE = {"exit": 0}


class SummaryCallback(Callback):
    """Prints the table of this invocation's cells and sets the exit status."""

    def _summarise(self, config: DictConfig) -> None:
        from bench.records.results import sweep_dir_of
        from bench.sweep.summary import read_ledger, summary_table

        inv = os.environ.get("BENCH_INVOCATION")
        sweep_dir = sweep_dir_of(config)
        entries = read_ledger(sweep_dir, inv) if inv else []
        if not entries:
            return
        table, counts = summary_table(entries)
        print("\n" + table)
        busy = counts.get("running elsewhere", 0)
        print(f"\n{counts['ok']} ok, {counts['failed']} failed, {counts['skipped'] - busy} skipped (already done)"
              + (f", {busy} skipped (running elsewhere)" if busy else "")
              + (f", {counts['interrupted']} interrupted" if counts.get("interrupted") else "")
              + (f", {counts['refused']} refused (method and architecture named above)"
                 if counts.get("refused") else "")
              + f"; records in {sweep_dir}")
        if counts["failed"] or counts.get("interrupted"):
            _STATE["exit"] = max(_STATE["exit"], 1)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Every job of the sweep checked (bench.recipe.validate.check) before the first one starts, in
        this process whatever the launcher: a bad option exits 2 with no record and no folder. The
        cells the jobs will run are counted on the way, for the sweep line (bench/training/progress.py);
        jobs inherit the count through the environment, whichever process runs them."""
        from bench.training.progress import TOTAL_ENV

        errors, cells = plan_sweep(config)
        if errors:
            for line in errors:
                print(f"configuration error: {line}", file=sys.stderr)
            sys.exit(2)
        if cells:
            os.environ[TOTAL_ENV] = str(cells)
        else:
            os.environ.pop(TOTAL_ENV, None)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        self._summarise(config)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self._summarise(config)


def plan_sweep(config: DictConfig) -> tuple[list[str], int | None]:
    """The configuration errors of a multirun's jobs, one line each (identical ones once), composed
    as the basic sweeper will compose them, and the number of cells they will run (None when not
    known). Nothing for another sweeper, or when a job does not compose (Hydra reports that itself
    when the job starts)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bench.errors import ConfigError, UnsupportedError
    from bench.recipe.validate import check
    from bench.sweep.study import planned_cells

    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return [], None
    try:
        loader = GlobalHydra.instance().config_loader()
        args = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
        args += list(config.hydra.overrides.task)
        batches = BasicSweeper.split_arguments(OverridesParser.create(config_loader=loader).parse_overrides(args), None)
        jobs = [job for batch in batches for job in batch]
    except Exception:  # noqa: BLE001 - the sweeper reports a bad sweep in its own words
        return [], None
    errors: dict[str, str] = {}
    cells = 0
    for job in jobs:
        try:
            job_cfg = loader.load_sweep_config(config, list(job))
            check(job_cfg)
            cells += planned_cells(job_cfg)
        except UnsupportedError:  # a method refused on this architecture: that job says so, the others run
            continue
        except ConfigError as exc:
            errors.setdefault(str(exc), f"{exc} [job: {' '.join(job) or 'no overrides'}]")
        except Exception:  # noqa: BLE001 - a job that does not compose fails when it starts, with its own error
            return list(errors.values()), None
    return list(errors.values()), cells or None


def refused(cfg: DictConfig, overrides: list[str], exc) -> None:
    """A cell whose method cannot run on its architecture (bench/methods/support.py): said in the log and in
    this invocation's ledger, so the sweep's summary lists it; no record, no work."""
    from bench.config.method_labels import method_label
    from bench.sweep.execute import _ledger

    cell = f"{cfg.model.name} / {cfg.task.name} / {method_label(cfg, overrides)} / seed {cfg.train.seed}"
    log.error("refused: %s: %s", cell, exc)
    _ledger(cfg, {"status": "refused", "path": "", "cell": cell, "why": str(exc)})


def _parallel_cells(hc) -> int:
    """How many cells share this machine's cores: joblib's n_jobs; for submitit, cores divided by
    the job's `cpus_per_task` (so train.threads=auto gives each job its allocation); else 1."""
    launcher = hc.launcher or {}
    target = str(launcher.get("_target_", ""))
    if str(hc.mode) != "RunMode.MULTIRUN":
        return 1
    cores = usable_cores()
    if "joblib" in target:
        n = int(launcher.get("n_jobs") or 1)
        return cores if n < 0 else n
    if "submitit" in target and launcher.get("cpus_per_task"):
        return max(1, cores // int(launcher.get("cpus_per_task")))
    return 1


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> str:
    from bench.records.environment import PARALLEL_CELLS_ENV
    from bench.sweep.execute import execute

    quiet_libraries()
    try:
        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        parallel = _parallel_cells(hc)
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
    except ValueError:
        overrides, parallel, multirun = [], 1, False
    # Set on every job (a joblib worker runs several), never inherited from an earlier invocation.
    os.environ[PARALLEL_CELLS_ENV] = str(parallel)
    from bench.errors import ConfigError, UnsupportedError
    from bench.recipe.validate import check

    try:
        check(cfg)  # before any work: a bad option writes no record and no folder
    except UnsupportedError as exc:
        refused(cfg, overrides, exc)
        _STATE["exit"] = 2
        return "refused"
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        _STATE["exit"] = 2
        return "failed"
    if not multirun:  # a run alone: its own cells (1, or a study's); a multirun's count is on_multirun_start's
        from bench.sweep.study import planned_cells
        from bench.training.progress import TOTAL_ENV

        os.environ[TOTAL_ENV] = str(planned_cells(cfg))
    if (cfg.get("study") or {}).get("enabled"):
        from bench.sweep.study import run_study

        try:
            return run_study(cfg, overrides)
        except ConfigError as exc:
            log.error("configuration error: %s", exc)
            _STATE["exit"] = 2
            return "failed"
    status, _ = execute(cfg, overrides)
    return status


def unknown_group_choice(argv: list[str], root) -> str | None:
    """The first `group=choice` on the command line whose config file does not exist, as a message.

    Why here: Hydra reports a missing group choice itself and exits 1, while every other
    configuration error exits 2 before any work (docs/faults.md). Only plain overrides of a group that
    is a folder of the config directory are checked, each comma-separated sweep value; anything this
    cannot judge (search paths added on the command line, glob/range sweeps, interpolations) is left
    to Hydra."""
    from pathlib import Path

    from bench.config.schema import nearest

    if any(a.startswith(("--config-dir", "-cd", "hydra.searchpath", "--config-path", "-cp")) for a in argv):
        return None
    root = Path(root)
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        if not key or key.startswith("~") or "." in key or "/" in key or not (root / key).is_dir():
            continue
        if any(ch in value for ch in "()${}[]*?") or not value:
            continue
        choices = sorted(group_files(key, [root]))
        for choice in value.split(","):
            if not (root / key / f"{choice}.yaml").is_file():
                hint = nearest(choice, choices)
                return f"{key}={choice}: no {key}/{choice}.yaml{hint}; expected one of: {', '.join(choices)}"
    return None


def _stop_on_sigterm() -> None:
    """SIGTERM between cells stops the sweep as Ctrl-C does (the message, exit 143); while a cell runs,
    bench/sweep/requeue.py passes it on to the cell first."""
    import signal

    from bench.training.stop import Stopped

    def stop(signum, frame):
        raise Stopped(signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    os.environ.setdefault("BENCH_INVOCATION", uuid.uuid4().hex[:12])
    from bench.errors import ConfigError

    try:
        root = conf_dir()
        if sys.argv[1:2] == ["ls"]:
            from bench.config.listing import main as ls

            sys.exit(ls(sys.argv[2:]))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    bad = unknown_group_choice(sys.argv[1:], root)
    if bad:
        print(f"configuration error: {bad}", file=sys.stderr)
        sys.exit(2)
    _stop_on_sigterm()
    try:
        _hydra_main()
    except KeyboardInterrupt as exc:  # Ctrl-C, or bench.training.stop.Stopped (SIGTERM ...): 128 + signal
        print("\ninterrupted: finished records are kept; run the same command again to resume", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 130))
    sys.exit(_STATE["exit"])


if __name__ == "__main__":
    main()
