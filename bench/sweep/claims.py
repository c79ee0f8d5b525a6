"""One cell, one run, whoever launches it: a claim file beside the record.

Why: on a cluster the results folder is shared, and the same cell gets launched twice (a sweep
started again while the first still runs, a requeued SLURM job, two people). Measured before this:
both launches trained the cell fully, the last writer's record won and the cell's log mixed both
runs. Resume (an `ok` record with the same config hash) only helps once a run has finished.

The claim is `<sweep>/<run_id>.claim`, created with O_CREAT|O_EXCL (atomic on a local filesystem
and on NFSv3+: exactly one of two launches creates it). It holds the owner's host, pid (and the
pid's start time, so a reused pid is not mistaken for the owner), the forked cell's pid, the
invocation and a random token; its mtime is the heartbeat, touched every `claim.heartbeat_s`
while the cell runs (bench/sweep/execute.py). A second launch that finds a live claim skips the cell
(`claim.on_busy=skip`, the default) or waits for it to go (`wait`; then it skips when the other run
finished ok, else runs it). A claim is stale, and is taken over, when its owner's processes are gone
(same host) or its heartbeat is older than `claim.stale_after_s` (any host: a killed node never
cleans up). The owner removes its claim when the cell ends, whatever the outcome.

Taking over is a rename of the stale file to a unique name (one of several contenders succeeds),
checked to be the claim judged stale, then the usual exclusive create, so two launches that both
found the claim stale still end with one owner.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("bench")

SUFFIX = ".claim"


def settings_from(cfg):
    """`claim.*`, typed (bench.config.schema.ClaimSettings: its rules and its defaults, written there only)."""
    from bench.config.schema import settings

    return settings(cfg, "claim")


def claim_path(record_path: Path) -> Path:
    return Path(record_path).with_suffix(SUFFIX)


def _pid_started(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(proc.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _alive(pid, started) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    now_started = _pid_started(pid)
    return now_started is not None and (started is None or abs(now_started - float(started)) < 1.0)


@dataclass
class Claim:
    """A claim this process holds."""

    path: Path
    info: dict

    def _ours(self) -> bool:
        held = read_claim(self.path)
        return bool(held) and held.get("token") == self.info["token"]

    def heartbeat(self) -> None:
        """Touch the claim (its mtime is the heartbeat); a claim someone took over is left alone."""
        try:
            if self._ours():
                os.utime(self.path)
            else:
                log.warning("claim %s is no longer this run's (taken over after a missed heartbeat?)", self.path)
        except OSError as exc:
            log.debug("claim heartbeat %s: %s", self.path, exc)

    def add_cell_pid(self, pid: int) -> None:
        """Record the forked cell's pid, so the claim stays live while the cell runs even if its parent dies."""
        from bench.records.schema import atomic_write

        self.info.update(cell_pid=int(pid), cell_pid_started=_pid_started(int(pid)))
        try:
            if self._ours():
                atomic_write(self.path, "w", lambda fh: json.dump(self.info, fh))
        except OSError as exc:
            log.debug("claim %s: %s", self.path, exc)

    def release(self) -> None:
        try:
            if self._ours():
                self.path.unlink()
        except OSError as exc:
            log.debug("claim release %s: %s", self.path, exc)


def read_claim(path: Path) -> dict | None:
    """The claim's content; None when there is no claim, {} when it cannot be read (being written)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def _age(path: Path) -> float | None:
    try:
        return max(0.0, time.time() - Path(path).stat().st_mtime)
    except FileNotFoundError:
        return None


def stale_reason(info: dict, age: float, stale_after_s: float) -> str | None:
    """Why a claim is stale (to be taken over), or None when its owner may still be running."""
    if info and info.get("host") == socket.gethostname():
        pids = [(info.get("pid"), info.get("pid_started")), (info.get("cell_pid"), info.get("cell_pid_started"))]
        if not any(_alive(p, s) for p, s in pids):
            return f"its process {info.get('pid')} on this host ({info.get('host')}) is gone"
        return None
    if age > stale_after_s:
        return f"its heartbeat is {age:.0f} s old (claim.stale_after_s={stale_after_s:g})"
    return None


def describe(info: dict, age: float | None) -> str:
    if not info:
        return "a claim being written"
    beat = f", heartbeat {age:.0f} s ago" if age is not None else ""
    return f"{info.get('host')} pid {info.get('pid')} since {info.get('started_at')}{beat}"


def _create(path: Path) -> Claim | None:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _pid_started(os.getpid()),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "invocation": os.environ.get("BENCH_INVOCATION"), "token": uuid.uuid4().hex}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # less the umask, as a plain open()
    except FileExistsError:
        return None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # an empty claim would read as "being written" to others
        raise
    return Claim(path, info)


def _take_over(path: Path, judged: dict) -> None:
    """Move a stale claim out of the way, unless it changed since it was judged (then put it back)."""
    aside = path.with_name(f".{path.name}.stale.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another launch took it over first
    moved = read_claim(aside)
    if judged and moved and moved.get("token") != judged.get("token"):
        try:
            os.link(aside, path)  # a fresh claim was moved by mistake: restore it (fails if one exists)
        except OSError:
            pass
    try:
        os.unlink(aside)
    except OSError:
        pass


def acquire(path: Path, stale_after_s: float) -> tuple[Claim | None, str]:
    """(the claim, "") when this process now owns it, else (None, who holds it)."""
    for _ in range(20):  # a bounded number of create / take-over races
        claim = _create(path)
        if claim is not None:
            return claim, ""
        info, age = read_claim(path), _age(path)
        if info is None or age is None:
            continue  # released meanwhile
        if not info and age < max(5.0, stale_after_s):
            return None, describe(info, age)  # being written right now
        why = stale_reason(info, age, stale_after_s) if info else "it is empty or unreadable"
        if why is None:
            return None, describe(info, age)
        log.warning("claim %s: taking over a stale claim (%s; was %s)", path.name, why, describe(info, age))
        _take_over(path, info)
    return None, f"{path} (contended)"


class Heartbeat:
    """Touches a claim every `every_s` from a thread (a cell run in this process, isolate=false)."""

    def __init__(self, claim: Claim, every_s: float):
        self.claim, self.every_s, self._stop = claim, float(every_s), threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.claim.heartbeat()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
