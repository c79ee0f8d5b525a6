"""One cell, one run, whoever launches it (issue #28, bench/sweep/claims.py): two identical launches at once
train the cell once; a launch that waits takes over the claim of a killed run and finishes the cell."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from clitools import TINY, kill_leftovers, records_in, start_bench

from bench.sweep import claims as C

# The inference settings are outside the config hash: a cell held in an endless inference warm-up
# (after training) is the same cell as the normal one, so a test controls when the holder ends.
HELD = ["inference.warmup=1000000000"]
CELL = [*TINY, "task=sst2", "method=bitfit", "sweep_name=c", "progress.mode=log", "claim.heartbeat_s=1"]


@pytest.fixture(autouse=True)
def _no_held_cell_outlives_its_test(tmp_path):
    yield
    kill_leftovers(str(tmp_path))


class _Lines:
    """A process's stdout and stderr read in threads, so a test can look at them while it runs."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert time.monotonic() < deadline, f"never saw {needle!r}:\n{self.text()[-3000:]}"
            time.sleep(0.1)


@pytest.mark.slow  # three launches and a SIGKILL, 34 s; the staleness rules are tested below (docs/decisions.md)
def test_two_identical_launches_train_once_and_a_waiter_takes_over_a_killed_claim(tmp_path, glue_dir):
    a, b = (_Lines(start_bench([*CELL, *HELD], glue_dir, tmp_path)) for _ in range(2))  # launched together
    deadline = time.monotonic() + 240
    while a.proc.poll() is None and b.proc.poll() is None:  # the one that skips ends; the trainer is held
        assert time.monotonic() < deadline, a.text()[-2000:] + b.text()[-2000:]
        time.sleep(0.2)
    skipper, trainer = (a, b) if a.proc.poll() is not None else (b, a)
    time.sleep(1.0)
    assert trainer.proc.poll() is None, trainer.text()[-3000:]  # still running: held in inference
    skipper.proc.wait(30)
    assert skipper.proc.returncode == 0, skipper.text()[-3000:]
    assert "skip (running elsewhere): tiny-bert / sst2 / bitfit / seed 0, claimed by " + socket.gethostname() \
        in skipper.text()
    assert "run: tiny-bert" not in skipper.text() and "trained" not in skipper.text()
    trainer.wait_for("trained 4/4 steps")  # progress.mode=log: training finished, then held
    assert "run: tiny-bert / sst2 / bitfit / seed 0" in trainer.text() and "skip" not in trainer.text()
    (claim,) = (tmp_path / "c").glob("*.claim")
    info = json.loads(claim.read_text())
    assert info["host"] == socket.gethostname() and info["pid"] == trainer.proc.pid
    assert info["cell_pid"] != info["pid"]  # the forked cell, recorded so the claim stays live with it
    time.sleep(2.5)
    assert time.time() - claim.stat().st_mtime < 2.0  # the heartbeat (every second) keeps it fresh

    waiter = _Lines(start_bench([*CELL, "claim.on_busy=wait", "claim.poll_s=1"], glue_dir, tmp_path))
    waiter.wait_for("wait (running elsewhere): tiny-bert / sst2 / bitfit / seed 0")
    os.killpg(trainer.proc.pid, signal.SIGKILL)  # as a node dying: nobody cleans the claim up
    trainer.proc.wait(30)
    assert claim.exists()
    assert waiter.proc.wait(240) == 0, waiter.text()[-3000:]
    assert "taking over a stale claim" in waiter.text() and "is gone" in waiter.text()
    assert "ok: tiny-bert / sst2 / bitfit / seed 0" in waiter.text()
    assert [r["status"] for r in records_in(tmp_path / "c")] == ["ok"]
    assert not list((tmp_path / "c").glob("*.claim*"))  # released at the end, nothing left aside


def test_claim_staleness_rules(tmp_path):
    path = tmp_path / "cell.claim"
    mine, holder = C.acquire(path, 300)
    assert mine is not None and holder == ""
    again, holder = C.acquire(path, 300)  # this process is alive: busy
    assert again is None and f"pid {os.getpid()}" in holder
    mine.release()
    assert not path.exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    path.write_text(json.dumps({"host": host, "pid": dead.pid, "pid_started": 1.0, "token": "x"}))
    taken, _ = C.acquire(path, 300)  # same host, process gone: taken over at once
    assert taken is not None and json.loads(path.read_text())["pid"] == os.getpid()
    taken.release()
    path.write_text(json.dumps({"host": "another-node", "pid": os.getpid(), "token": "y"}))
    assert C.acquire(path, 300)[0] is None  # another host, fresh heartbeat: busy
    old = time.time() - 400
    os.utime(path, (old, old))
    taken, _ = C.acquire(path, 300)  # another host, heartbeat older than stale_after_s: taken over
    assert taken is not None
    taken.release()
