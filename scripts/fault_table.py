"""Run every fault scenario for real and write docs/faults.md: what the user sees, the exit status,
and how many finished records were lost (must be 0). Tiny model; a few minutes on 2 cores.

    .venv/bin/python -m scripts.fault_table [--out docs/faults.md]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLUE = Path(os.environ.get("BENCH_GLUE_DIR", REPO.parent / "shared" / "data" / "glue"))
TINY = ["model=tiny_bert", "train=quick", "task=sst2"]
SWEEP = ["-m", *TINY, "method=lora,bitfit,adapter", "sweep_name=s"]


def env():
    e = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             BENCH_GLUE_DIR=str(GLUE))
    e.pop("BENCH_INVOCATION", None)
    return e


def cmd(args, out):
    return [sys.executable, "-m", "bench", *args, f"results_dir={out}", f"hydra.sweep.dir={out}/_h/s",
            f"hydra.run.dir={out}/_h/r"]


def ok_records(out):
    res = {}
    for p in Path(out).rglob("*.json"):
        if "_h" in p.parts:
            continue
        try:
            r = json.loads(p.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if r.get("status") == "ok":
            res[str(p)] = r["finished_at"]
    return res


def run(args, out):
    return subprocess.run(cmd(args, out), cwd=REPO, env=env(), capture_output=True, text=True, timeout=600, check=False)


def key_line(text: str) -> str:
    for pat in ("FAILED", "interrupted", "Error", "Could not", "error"):
        for line in text.splitlines():
            if pat in line:
                return line.split("] - ", 1)[-1].strip()[:220]
    return text.strip().splitlines()[-1][:220] if text.strip() else ""


def lost(before: dict, out) -> int:
    after = ok_records(out)
    return sum(1 for p, f in before.items() if after.get(p) != f)


def kill_mid_sweep(out, sig):
    p = subprocess.Popen(cmd(SWEEP, out), cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    while not ok_records(out):
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(p.pid, sig)
    o, e = p.communicate()
    return p.returncode, o + e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs" / "faults.md"))
    a = ap.parse_args()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))

    def scenario(name, fn):
        out = tmp / f"c{len(rows)}"
        out.mkdir()
        # a finished record from an earlier sweep in the same folder must survive every fault
        base = run([*TINY, "method=head_only", "sweep_name=s"], out)
        assert base.returncode == 0, base.stderr[-2000:]
        before = ok_records(out)
        rc, seen, extra = fn(out)
        tb = "Traceback" in seen
        rows.append((name, rc, key_line(seen), "yes" if tb else "no", lost(before, out), extra))
        print(f"{name}: rc={rc} lost={rows[-1][4]} traceback={tb}", flush=True)

    def sigkill(out):
        rc, seen = kill_mid_sweep(out, signal.SIGKILL)
        again = run(SWEEP, out)
        return rc, seen, f"rerun: {again.stdout.strip().splitlines()[-1]}" if again.stdout.strip() else ""

    def sigint(out):
        rc, seen = kill_mid_sweep(out, signal.SIGINT)
        again = run(SWEEP, out)
        return rc, seen, f"rerun: {again.stdout.strip().splitlines()[-1]}"

    def simple(args, note=""):
        def fn(out):
            p = run(args, out)
            return p.returncode, p.stdout + p.stderr, note
        return fn

    def truncated(out):
        run([*TINY, "method=bitfit", "sweep_name=s"], out)
        rec = next(Path(x) for x in ok_records(out) if "bitfit" in x)
        rec.write_text(rec.read_text()[:200])
        rep = subprocess.run([sys.executable, "-m", "bench.report", str(out / "s"), "--out", str(out / "rep")],
                             cwd=REPO, env=env(), capture_output=True, text=True, check=False)
        p2 = run([*TINY, "method=bitfit", "sweep_name=s"], out)
        return rep.returncode, rep.stdout + rep.stderr, f"report exit {rep.returncode}; rerun: {p2.stdout.strip().splitlines()[-1]}"

    def bad_data(out):
        data = out / "glue"
        shutil.copytree(GLUE / "STS-B", data / "STS-B")
        f = data / "STS-B" / "train.tsv"
        lines = f.read_text(encoding="utf-8").split("\n")
        cols = lines[5].split("\t")
        cols[-1] = "high"
        lines[5] = "\t".join(cols)
        f.write_text("\n".join(lines), encoding="utf-8")
        p = run(["model=tiny_bert", "train=quick", "task=stsb", "method=lora", f"data.glue_dir={data}", "sweep_name=s"], out)
        return p.returncode, p.stdout + p.stderr, ""

    def missing_glue(out):
        p = run([*TINY, "method=lora", f"data.glue_dir={out}/nowhere", "sweep_name=s"], out)
        return p.returncode, p.stdout + p.stderr, ""

    scenario("SIGKILL mid-sweep, then the same command again", sigkill)
    scenario("Ctrl-C (SIGINT) mid-sweep, then the same command again", sigint)
    scenario("NaN loss at step 2 in one of two cells",
             simple(["-m", *TINY, "method=lora", "debug.inject_nan_at_step=null,2", "sweep_name=s"]))
    scenario("out-of-memory error (torch.OutOfMemoryError) in one of two cells",
             simple(["-m", *TINY, "method=lora", "debug.inject_oom_at_step=null,2", "sweep_name=s"]))
    scenario("cell process killed (as by the OOM killer) in one of two cells",
             simple(["-m", *TINY, "method=bitfit", "debug.inject_kill_at_step=2,null", "sweep_name=s"]))
    scenario("truncated record (hand-edited), then report and rerun", truncated)
    scenario("learning rate <= 0 (train.lr=-1)", simple([*TINY, "method=lora", "train.lr=-1", "sweep_name=s"]))
    scenario("LoRA r <= 0 (method.r=0)", simple([*TINY, "method=lora", "method.r=0", "sweep_name=s"]))
    scenario("adapter size <= 0", simple([*TINY, "method=adapter", "method.size=0", "sweep_name=s"]))
    scenario("prompt length + max length > positions",
             simple([*TINY, "method=prompt_tuning", "method.num_virtual_tokens=100", "train.max_seq_len=450", "sweep_name=s"]))
    scenario("LoRA target module the model lacks", simple([*TINY, "method=lora", "method.target_modules=[nope]", "sweep_name=s"]))
    scenario("batch size 0", simple([*TINY, "method=lora", "train.batch_size=0", "sweep_name=s"]))
    scenario("task without a local train split (qnli)", simple(["model=tiny_bert", "train=quick", "task=qnli", "method=lora", "sweep_name=s"]))
    scenario("unknown method name", simple([*TINY, "method=nosuch", "sweep_name=s"]))
    scenario("unknown method setting (method.rank=8)", simple([*TINY, "method=lora", "+method.rank=8", "sweep_name=s"]))
    scenario("non-numeric STS-B score in train.tsv", bad_data)
    scenario("GLUE folder missing", missing_glue)

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Faults tried and what the user sees",
        "",
        f"Generated by `scripts/fault_table.py` on {when} (tiny BERT, `train=quick`). Each scenario runs in a",
        "results folder that already holds one finished record from an earlier run; *lost* counts finished",
        "records that were missing or changed afterwards. Tests with the same faults: `tests/test_faults.py`.",
        "",
        "| fault | exit | what the terminal says | traceback on terminal | finished records lost | afterwards |",
        "|---|---|---|---|---|---|",
    ]
    for name, rc, line, tb, n_lost, extra in rows:
        cell = line.replace("|", "\\|")
        lines.append(f"| {name} | {rc} | `{cell}` | {tb} | {n_lost} | {extra.replace('|', '/')} |")
    lines += ["", f"Total finished records lost: **{sum(r[4] for r in rows)}**.", ""]
    Path(a.out).write_text("\n".join(lines))
    print(f"wrote {a.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
