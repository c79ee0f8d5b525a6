"""Run a cell safely: identity, resume, failure isolation, atomic records, the sweep ledger.

A cell that fails writes a `failed` record (error type, message, phase, innermost frame) and a log
with the traceback, then the sweep goes on; the terminal gets one clear line, not a traceback.
Ctrl-C writes an `interrupted` record and stops; resume reruns every cell without an `ok` record
whose config hash matches. A claim beside the record (bench/sweep/claims.py) keeps two launches sharing a
results folder from running one cell twice; the experiment trackers (bench/recipe/trackers.py) get the
cell's steps and its record, and never decide its status.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.config.method_labels import method_label
from bench.errors import BenchError
from bench.records import build
from bench.records import schema as R
from bench.records.results import sweep_dir_of
from bench.sweep import claims as C
from bench.sweep.requeue import ForwardStops, after_stop, cell_signals
from bench.training import checkpoint as CK
from bench.training.progress import cell_finished
from bench.training.stop import (
    STOP,
    STOP_SIGNALS,
    Stopped,
    die_with_parent,
    install_cell_handlers,
    signal_name,
)

log = logging.getLogger("bench")

LEDGER_DIR = ".ledger"  # per-invocation outcome lines, read by the end-of-sweep summary


def identity(cfg: DictConfig, overrides: list[str] | None) -> dict:
    ident = build.identity(model=str(cfg.model.name), task=str(cfg.task.name),
                           method=str(cfg.method.get("name") or "method"), label=method_label(cfg, overrides),
                           seed=int(cfg.train.seed), config=OmegaConf.to_container(cfg, resolve=True),
                           sweep=str(cfg.sweep_name))
    if cfg.get("study_cell"):
        ident["study"] = OmegaConf.to_container(cfg.study_cell, resolve=True)
    return ident


def record_path(cfg: DictConfig, ident: dict) -> Path:
    return sweep_dir_of(cfg) / f"{ident['run_id']}.json"


def existing_ok(path: Path, chash: str) -> bool:
    try:
        rec = R.read_record(path)
    except ValueError:
        return False
    return rec.get("status") == "ok" and rec.get("config_hash") == chash


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    f = tb[-1]
    return f"{os.path.relpath(f.filename) if not f.filename.startswith('<') else f.filename}:{f.lineno} in {f.name}"


def _ledger(cfg: DictConfig, line: dict) -> None:
    inv = os.environ.get("BENCH_INVOCATION")
    if not inv:
        return
    folder = sweep_dir_of(cfg) / LEDGER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{inv}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def execute(cfg: DictConfig, overrides: list[str] | None = None) -> tuple[str, Path]:
    """Run (or skip) one cell; returns (status, record path). Never raises except on Ctrl-C."""
    import bench.recipe.finetune  # heavy imports once, before forking, so every cell inherits them
    import bench.recipe.runtime

    bench.recipe.runtime.preload_libraries()

    try:
        ident = identity(cfg, overrides)
    except Exception as exc:  # noqa: BLE001 - e.g. an interpolation that does not resolve
        log.error("FAILED before the cell could start: %s: %s", type(exc).__name__, exc)
        return "failed", Path(str(cfg.get("results_dir", ".")))
    path = record_path(cfg, ident)
    cell = f"{ident['model']} / {ident['task']} / {ident['method_label']} / seed {ident['seed']}"
    if _done(cfg, path, ident, cell):
        return "skipped", path
    claim = _claim(cfg, path, ident, cell)
    if claim is False:
        return "skipped", path
    try:
        if claim is not None and _done(cfg, path, ident, cell):  # finished by another run since the first look
            return "skipped", path
        log.info("run: %s", cell)
        t0 = time.monotonic()
        if not cfg.get("isolate", True):
            with C.Heartbeat(claim, C.settings_from(cfg).heartbeat_s) if claim else nullcontext(), \
                    cell_signals():
                status = _run_and_record(cfg, ident, path, cell)
            if status == "interrupted":
                raise Stopped(STOP.signum or signal.SIGINT)
        else:
            status = _run_isolated(cfg, ident, path, cell, claim)
    except Stopped as stop:
        if claim:
            claim.release()
            claim = None
        log.error("stopped by %s: %s; finished records and the training state saved so far are kept: run the "
                  "same command again to resume", signal_name(stop.signum), cell)
        after_stop(stop)  # a batch system's warning signal: requeue the job (bench/sweep/requeue.py)
        raise
    finally:
        if claim:
            claim.release()
    cell_finished(cfg, status, time.monotonic() - t0, cell)  # the sweep line (bench/training/progress.py)
    return status, path


def _done(cfg: DictConfig, path: Path, ident: dict, cell: str) -> bool:
    """Resume: an ok record with this config hash exists, so the cell is skipped (and said so)."""
    if not (cfg.get("resume", True) and existing_ok(path, ident["config_hash"])):
        return False
    log.info("skip (done): %s -> %s", cell, path)
    _ledger(cfg, {"status": "skipped", "path": str(path), "cell": cell})
    cell_finished(cfg, "skipped", 0.0, cell)
    return True


def _claim(cfg: DictConfig, path: Path, ident: dict, cell: str):
    """This launch's claim on the cell (bench/sweep/claims.py): a Claim, None when claims cannot be made
    here (the cell runs unclaimed, as before), or False when another live run holds the cell and
    `claim.on_busy=skip` (or, waiting, that run finished it ok)."""
    st = C.settings_from(cfg)
    where = C.claim_path(path)
    waited = False
    while True:
        try:
            claim, holder = C.acquire(where, st.stale_after_s)
        except OSError as exc:
            log.warning("claim %s: cannot be made (%s); running the cell unclaimed", where, exc)
            return None
        if claim is not None:
            return claim
        if st.on_busy != "wait":
            log.info("skip (running elsewhere): %s, claimed by %s (%s)", cell, holder, where.name)
            _ledger(cfg, {"status": "skipped", "why": "running elsewhere", "path": str(path), "cell": cell})
            cell_finished(cfg, "skipped", 0.0, cell)
            return False
        if not waited:
            log.info("wait (running elsewhere): %s, claimed by %s; looking again every %g s", cell, holder,
                     st.poll_s)
            waited = True
        time.sleep(st.poll_s)
        if _done(cfg, path, ident, cell):
            return False


EXIT_CODES = {0: "ok", 1: "failed", **{128 + int(sig): "interrupted" for sig in STOP_SIGNALS}}
STOP_GRACE_S = 60.0  # how long a stopped cell may take to checkpoint and write its record before it is killed


def _run_isolated(cfg: DictConfig, ident: dict, path: Path, cell: str, claim=None) -> str:
    """Run the cell in a forked child process.

    Each cell then starts from the same memory state (the imported libraries, nothing of earlier
    cells), so its peak memory is what a user running that cell alone would see; and a cell that
    dies hard (the out-of-memory killer, a segfault in native code) fails alone: the parent writes
    its `failed` record and the sweep goes on. Fork is safe here because the parent never runs a
    torch operation or touches CUDA (bench/__main__.py makes torch.cuda.is_available() ask NVML,
    which does not start CUDA); if something did start CUDA in the parent (a plugin at import),
    a forked child could not use the GPU, so the cell is started with spawn instead.
    """
    import multiprocessing as mp

    import torch

    ctx = mp.get_context("spawn" if torch.cuda.is_initialized() else "fork")
    token = claim.info["token"] if claim else None
    child = ctx.Process(target=_child_main, args=(cfg, ident, path, cell, os.getpid(), token),
                        name=f"cell:{ident['run_id']}")
    every = float(C.settings_from(cfg).heartbeat_s)
    with ForwardStops(child) as stops:  # SIGTERM / SIGINT / SIGUSR1 / SIGUSR2 of the sweep reach the cell
        child.start()
        if claim:
            claim.add_cell_pid(child.pid)
        while child.is_alive():  # the parent only waits: it keeps the claim's heartbeat (bench/sweep/claims.py)
            child.join(min(every, 1.0) if stops.signum else every)
            if stops.signum and child.is_alive() and time.monotonic() - stops.at > STOP_GRACE_S:
                log.error("the cell did not stop within %g s of %s: killing it", STOP_GRACE_S,
                          signal_name(stops.signum))
                child.kill()
            if claim and child.is_alive():
                claim.heartbeat()
    code = child.exitcode
    if stops.signum and EXIT_CODES.get(code) != "ok":
        if EXIT_CODES.get(code) != "interrupted":  # killed before it could write its own record
            _died(cfg, ident, path, cell, code, status="interrupted", stop=stops.signum)
        raise Stopped(stops.signum, previous=stops.previous.get(stops.signum))
    if code in EXIT_CODES:
        status = EXIT_CODES[code]
        if status == "interrupted":  # the cell was signalled itself (batch system, by hand): the sweep stops
            raise Stopped(code - 128)
        return status
    return _died(cfg, ident, path, cell, code)


def _died(cfg, ident: dict, path: Path, cell: str, code, status: str = "failed",
          stop: int | None = None) -> str:
    """The record of a cell whose process ended without writing one (killed, crashed)."""
    sig = -code if code is not None and code < 0 else None
    name = _signal_name(sig) if sig else f"exit code {code}"
    hint = " (SIGKILL usually means the out-of-memory killer: lower train.batch_size or train.max_seq_len)" \
        if sig == 9 else ""
    message = f"the cell's process died: {name}{hint}"
    if stop:
        message = f"stopped by {signal_name(stop)}; the cell did not stop by itself and was killed ({name})"
    record = dict(ident, status=status, error=None, created_at=build.now())
    logfile = path.with_suffix(".log")
    _write_failure(record, {}, path, status, "CellProcessDied", message, "unknown", "?", logfile)
    log.error("%s: %s %s  (log: %s)", "FAILED" if status == "failed" else status, cell, message, logfile)
    _ledger(cfg, {"status": status, "path": str(path), "cell": cell})
    return status


def _signal_name(sig: int) -> str:
    import signal

    try:
        return f"signal {sig} ({signal.Signals(sig).name})"
    except ValueError:
        return f"signal {sig}"


def _child_main(cfg, ident, path, cell, parent_pid: int, claim_token: str | None) -> None:
    """The forked cell: it stops when its parent dies (any signal, SIGKILL included) as on `kill`:
    checkpoint, `interrupted` record, and the claim its dead parent can no longer remove."""
    die_with_parent(parent_pid)
    install_cell_handlers()
    status = _run_and_record(cfg, ident, path, cell)
    orphaned = os.getppid() != parent_pid
    if orphaned and claim_token:
        C.Claim(C.claim_path(path), {"token": claim_token}).release()
    logging.shutdown()
    os._exit(128 + (STOP.signum or signal.SIGINT) if status == "interrupted"
             else {"ok": 0, "failed": 1}[status])


def _run_and_record(cfg: DictConfig, ident: dict, path: Path, cell: str) -> str:
    """Run one cell in this process and write its record; returns ok / failed / interrupted."""
    from bench.recipe.finetune import run_cell
    from bench.recipe.runtime import Phase
    from bench.sweep.distributed import run_distributed
    from bench.training.data_parallel import nproc

    logfile = path.with_suffix(".log")
    path.parent.mkdir(parents=True, exist_ok=True)
    resuming = CK.path_for(path).is_file()
    last_seen = _last_seen(path, logfile) if resuming else None
    if not resuming:  # a resumed cell's log goes on after the stopped run's lines
        logfile.write_text("", encoding="utf-8")
    handler = logging.FileHandler(logfile, mode="a", encoding="utf-8")  # append: the traceback lands after
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    started = build.now()
    phase = Phase()
    partial: dict = {"run_id": ident["run_id"], "last_seen": last_seen, "first_launch": not path.exists()}
    record = dict(ident, status="ok", error=None, created_at=started)
    trackers = _start_trackers(cfg, ident)
    if trackers is not None:
        record["trackers"] = trackers.status
    try:
        if nproc(cfg) > 1:  # data parallel: the cell's N processes, this process writes the one record
            phase.name = "data parallel"  # the ranks' own phase is in a failure's message
            facts = {k: partial[k] for k in ("last_seen", "first_launch")}
            measured = run_distributed(cfg, ident["run_id"], facts)
        else:
            measured = run_cell(cfg, phase, partial, trackers)
        preds = measured.pop("_predictions", None)
        if preds is not None:
            measured["predictions"] = build.write_predictions_beside(path, preds, ident["run_id"])
        record.update(measured)
        R.write_record(path, record)
        CK.remove(path)  # the record holds what the checkpoint was for
        status = "ok"
        head = measured["headline_metric"]
        value = measured["metrics"].get(head)  # absent where the reported split was not scored (a first rung)
        log.info("ok: %s  %s=%s  (%s)", cell, head, "-" if value is None else f"{value:.4f}", path.name)
        for warning in (measured.get("collapse") or {}).get("warnings") or []:  # a run that learned nothing
            log.warning("%s: %s", cell, warning)
    except KeyboardInterrupt as exc:
        _write_interrupted(record, partial, path, exc, phase.name, logfile)
        log.error("interrupted: %s (phase %s); finished records are kept; rerun to resume", cell, phase.name)
        status = "interrupted"
    except Exception as exc:  # noqa: BLE001 - isolation is the point: one bad cell must not end the sweep
        with open(logfile, "a", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)))
        _drop_internal(partial)
        _write_failure(record, partial, path, "failed", type(exc).__name__, str(exc), phase.name, _where(exc), logfile)
        CK.remove(path)  # a failed cell reruns from the start (its checkpoint would fail the same way)
        kind = "" if isinstance(exc, BenchError) or type(exc).__name__ == "DataError" else f"{type(exc).__name__}: "
        log.error("FAILED: %s [%s] %s%s  (traceback: %s)", cell, phase.name, kind, exc, logfile)
        status = "failed"
    finally:
        if trackers is not None:
            _finish_trackers(trackers, record, path)
        logging.getLogger().removeHandler(handler)
        handler.close()
    _ledger(cfg, {"status": status, "path": str(path), "cell": cell})
    return status


def _start_trackers(cfg: DictConfig, ident: dict):
    """The cell's experiment trackers (bench/recipe/trackers.py, `logger=`), started; None without any."""
    from bench.recipe.trackers import Trackers

    try:
        trackers = Trackers.from_config(cfg, ident)
        if trackers is not None:
            trackers.start()
        return trackers
    except Exception as exc:  # noqa: BLE001 - a tracker never fails a cell
        log.warning("trackers: not started (%s: %s); the record is unaffected", type(exc).__name__, exc)
        return None


def _finish_trackers(trackers, record: dict, path: Path) -> None:
    """Final values and the record to the trackers; the record's `trackers` field is rewritten when
    a tracker failed on the way (the record on disk stays the source of truth either way)."""
    before = json.dumps(record.get("trackers"), sort_keys=True, default=str)
    try:
        status = trackers.finish(record, path) if path.exists() else trackers.status
    except Exception as exc:  # noqa: BLE001 - as above
        log.warning("trackers: not finished (%s: %s)", type(exc).__name__, exc)
        return
    if json.dumps(status, sort_keys=True, default=str) != before and path.exists():
        try:
            R.write_record(path, dict(record, trackers=status))
        except OSError as exc:
            log.warning("trackers: status not written to %s (%s)", path, exc)


def _write_failure(record, partial, path, status, etype, message, phase, where, logfile) -> None:
    R.write_record(path, build.failed(record, partial, status=status, etype=etype, message=message, phase=phase,
                                      where=where, log_name=logfile.name))


def _drop_internal(partial: dict) -> None:
    """What the recipe was told, not what it measured: kept out of a failure record."""
    partial.pop("last_seen", None)
    partial.pop("first_launch", None)


def _last_seen(path: Path, logfile: Path) -> float | None:
    """When the stopped run of this cell last wrote anything (its log, its record): the end of the
    training a relaunch loses after the checkpoint (the record's `checkpoint.resumes[].lost_s`)."""
    times = [p.stat().st_mtime for p in (logfile, path) if p.is_file()]
    return max(times) if times else None


def _write_interrupted(record, partial, path, exc: KeyboardInterrupt, phase: str, logfile) -> None:
    """The `interrupted` record: which signal, where the training state was saved (resume: not done)."""
    _drop_internal(partial)
    signum = getattr(exc, "signum", None) or STOP.signum or signal.SIGINT
    STOP.signum = STOP.signum or signum  # this process's stop (a data-parallel agent's: its workers')
    on_disk = CK.path_for(path)
    saved = getattr(exc, "checkpoint", None) or (str(on_disk) if on_disk.is_file() else None)
    how = "interrupted by the user (Ctrl-C)" if signum == signal.SIGINT else \
        f"stopped by {signal_name(signum)}"
    kept = f"training state kept in {Path(saved).name}" if saved else "no training state kept"
    rec = build.failed(record, partial, status="interrupted", etype=type(exc).__name__,
                       message=f"{how}; {kept}; rerun the same command to resume", phase=phase, where="?",
                       log_name=logfile.name)
    rec["error"].update(signal=signal_name(signum), checkpoint=Path(saved).name if saved else None)
    R.write_record(path, rec)
