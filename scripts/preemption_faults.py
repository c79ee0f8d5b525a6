"""Run the preemption faults for real (docs/faults.md, "Preemption, requeue and stops"): a sweep whose
cell checkpoints every few steps is stopped in one of several ways, `ps` is read for processes left
behind, the same command is launched again and its record read. Prints one Markdown row per fault and
the details (commands, records, ps) after the table.

    PYTHONPATH=. .venv/bin/python -m scripts.preemption_faults [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLUE = Path(os.environ.get("BENCH_GLUE_DIR", REPO.parent / "shared" / "data" / "glue"))
CELL = [
    "model=tiny_bert",
    "train=quick",
    "task=sst2",
    "method=lora",
    "sweep_name=s",
    "inference.enabled=false",
    "progress.mode=log",
    "progress.interval_s=1",
    "train.max_train_samples=320",
    "train.epochs=2",
    "train.checkpoint_every=5",
]


def env(extra=None):
    e = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        BENCH_GLUE_DIR=str(GLUE),
        PYTHONUNBUFFERED="1",
    )
    e.pop("BENCH_INVOCATION", None)
    e.update(extra or {})
    return e


def cmd(out, extra=()):
    return [sys.executable, "-m", "bench", *CELL, *extra, f"results_dir={out}", f"hydra.run.dir={out}/_h"]


def start(out, extra_env=None):
    return subprocess.Popen(
        cmd(out),
        cwd=REPO,
        env=env(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ps(out) -> list[str]:
    """`ps` lines of every process whose command line names this results folder."""
    lines = subprocess.run(
        ["ps", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return [ln[:160] for ln in lines if str(out) in ln and "ps -eo" not in ln]


def wait_gone(out, timeout=90) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ps(out):
        time.sleep(0.3)
    return ps(out)


def folder(out) -> dict:
    s = Path(out) / "s"
    recs = [json.loads(p.read_text()) for p in s.glob("*.json")]
    return {
        "records": [(r["status"], (r.get("error") or {}).get("message", "")[:110]) for r in recs],
        "claims": len(list(s.glob("*.claim"))),
        "ckpt": len(list(s.glob("*.ckpt"))),
        "tmp": len(list(s.glob(".*.tmp"))),
    }


def wait_ckpt(out, proc, n=1, timeout=400) -> None:
    """Until the cell has written its n-th interval checkpoint (its log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list((Path(out) / "s").glob("*.log"))
        if logs and logs[0].read_text().count("(interval") >= n:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ended early: {proc.communicate()[0][-2000:]}")
        time.sleep(0.2)
    raise RuntimeError("no checkpoint")


def cell_pid(out) -> int:
    claim = next((Path(out) / "s").glob("*.claim"))
    return json.loads(claim.read_text())["cell_pid"]


def relaunch(out, extra_env=None) -> dict:
    done = subprocess.run(
        cmd(out), cwd=REPO, env=env(extra_env), capture_output=True, text=True, timeout=1200, check=False
    )
    s = Path(out) / "s"
    rec = next(json.loads(p.read_text()) for p in s.glob("*.json"))
    return {
        "rc": done.returncode,
        "status": rec["status"],
        "checkpoint": rec.get("checkpoint"),
        "steps": (rec.get("train") or {}).get("steps"),
        "after": folder(out),
        "ps": wait_gone(out),
        "tail": [ln for ln in (done.stdout + done.stderr).splitlines() if "checkpoint" in ln or "ok:" in ln][
            :4
        ],
    }


def scenario(name: str, out: Path) -> dict:
    extra_env = None
    if name == "requeue (SIGUSR1, SLURM simulated)":
        fake = out / "bin"
        fake.mkdir(parents=True)
        (fake / "scontrol").write_text(f'#!/bin/sh\necho "scontrol $@" >> {out}/scontrol.calls\n')
        (fake / "scontrol").chmod(0o755)
        extra_env = {"PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    proc = start(out, extra_env)
    wait_ckpt(out, proc)
    time.sleep(2.0)  # a few steps past the checkpoint: what a kill without a signal loses
    detail = {}
    if name == "SIGTERM to the sweep (kill PID)":
        os.kill(proc.pid, signal.SIGTERM)
    elif name == "SIGINT to the process group (Ctrl-C)":
        os.killpg(proc.pid, signal.SIGINT)
    elif name == "SIGKILL of the sweep (kill -9 PID)":
        os.kill(proc.pid, signal.SIGKILL)
    elif name == "SIGKILL of the cell":
        os.kill(cell_pid(out), signal.SIGKILL)
    elif name == "requeue (SIGUSR1, SLURM simulated)":
        os.kill(proc.pid, signal.SIGUSR1)
    elif name == "SIGKILL of the cell during a checkpoint write":
        pid, s = cell_pid(out), Path(out) / "s"
        deadline = time.monotonic() + 300
        while not list(s.glob(".*.ckpt.*.tmp")):
            assert time.monotonic() < deadline, "no write caught"
        os.kill(pid, signal.SIGKILL)
        detail["caught"] = [p.name for p in s.glob(".*.tmp")]
    elif name == "two relaunches racing for the checkpoint":
        os.kill(proc.pid, signal.SIGTERM)
    text = proc.communicate(timeout=300)[0]
    stopped = {
        "rc": proc.returncode,
        "terminal": [
            ln[:170] for ln in text.splitlines() if "stopped" in ln or "interrupted" in ln or "FAILED" in ln
        ][:3],
        "after": folder(out),
        "ps": wait_gone(out),
    }
    if name == "requeue (SIGUSR1, SLURM simulated)":
        stopped["scontrol"] = (
            (out / "scontrol.calls").read_text().strip() if (out / "scontrol.calls").exists() else None
        )
    if name == "two relaunches racing for the checkpoint":
        a, b = (
            subprocess.Popen(
                cmd(out), cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        )
        outs = [p.communicate(timeout=1200)[0] for p in (a, b)]
        detail["race"] = [
            next((ln[:150] for ln in o.splitlines() if "skip (running" in ln or "resuming at" in ln), "")
            for o in outs
        ]
        rec = next(json.loads(p.read_text()) for p in (Path(out) / "s").glob("*.json"))
        again = {
            "rc": [a.returncode, b.returncode],
            "status": rec["status"],
            "checkpoint": rec.get("checkpoint"),
            "steps": rec["train"]["steps"],
            "after": folder(out),
            "ps": wait_gone(out),
        }
    else:
        again = relaunch(out, extra_env)
    return {"name": name, "stopped": stopped, "relaunch": again, **detail}


NAMES = [
    "SIGTERM to the sweep (kill PID)",
    "SIGINT to the process group (Ctrl-C)",
    "SIGKILL of the sweep (kill -9 PID)",
    "SIGKILL of the cell",
    "requeue (SIGUSR1, SLURM simulated)",
    "SIGKILL of the cell during a checkpoint write",
    "two relaunches racing for the checkpoint",
]


def row(r: dict) -> str:
    st, ag = r["stopped"], r["relaunch"]
    res = (ag.get("checkpoint") or {}).get("resumes") or [{}]
    last = res[-1]
    kept = f"resumed from step {last.get('from_step')} ({last.get('reason')})" if last else "no checkpoint"
    lost = f"~{last.get('lost_s')} s" if last.get("lost_s") is not None else "?"
    after = st["after"]
    return (
        f"| {r['name']} | {st['rc']} | {', '.join(s for s, _ in after['records']) or 'none'} | "
        f"{after['claims']} | {len(st['ps'])} | {kept} | {lost} | {ag['status']} ({ag['steps']} steps), "
        f"claims {ag['after']['claims']}, checkpoints {ag['after']['ckpt']}, orphans {len(ag['ps'])} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    results = []
    for name in NAMES:
        if args.only and not any(o in name for o in args.only):
            continue
        out = Path(tempfile.mkdtemp(prefix="preempt-"))
        results.append(scenario(name, out))
        print(json.dumps(results[-1], indent=1), flush=True)
    print(
        "\n| fault | exit | record left | claims left | processes left | the relaunch kept | "
        "training lost | relaunch: final record |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))


if __name__ == "__main__":
    main()
