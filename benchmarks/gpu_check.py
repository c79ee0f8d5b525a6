#!/usr/bin/env python3
"""Check, on a CUDA machine, that the harness's CUDA figures are right. Not a test: CI has no GPU.

What it checks, each against an independent reading taken in the same process:

1. known allocation: `bench.measure.memory.PeakMemory` around a 1 GiB CUDA tensor must report
   exactly 1 GiB above what was allocated before (torch.cuda.max_memory_allocated is exact).
2. timer synchronisation: `bench.measure.timing.StepTimer` around GPU work of known length
   (torch.cuda._sleep) must agree with CUDA events; a timer without synchronisation would read
   only the launch time (shown next to it, so the check can fail).
3. harness vs minimal loop on the GPU (bf16 autocast), same model/weights/batches: peak CUDA
   memory ratio (expect 1.00) and per-step time ratio (the harness's overhead on a GPU).
4. real cells through the CLI (`python -m bench -m ...`, forked cells): every record must say
   device cuda, precision bf16, carry a CUDA peak and a throughput; metrics are printed so they can
   be compared with the CPU (fp32) records of the same cells.
5. if time is left before --deadline: the default sweep (`experiment=default_sweep`) wall time.

Usage (on the GPU machine, from the repo root):
  python -m benchmarks.gpu_check --out DIR [--deadline SECONDS]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch
import torch.nn.functional as F

from bench.measure.memory import PeakMemory
from bench.measure.timing import StepTimer

T0 = time.perf_counter()
MiB = 1024 ** 2
RESULT: dict = {}


def say(*a):
    print(f"[{time.perf_counter() - T0:6.1f}s]", *a, flush=True)


def check_known_allocation(dev):
    before = torch.cuda.memory_allocated(dev)
    with PeakMemory(dev) as pm:
        x = torch.empty(1024 ** 3, dtype=torch.uint8, device=dev)
        x.fill_(1)
        del x
    got = pm.cuda_allocated - before
    ok = got == 1024 ** 3
    say(f"1. known 1 GiB CUDA allocation: PeakMemory reads {got / MiB:.1f} MiB above baseline "
        f"(expected 1024.0) -> {'OK' if ok else 'WRONG'}; reserved peak {pm.cuda_reserved / MiB:.1f} MiB")
    RESULT["known_allocation"] = {"measured_bytes": got, "expected_bytes": 1024 ** 3, "ok": ok}


def check_timer(dev):
    cycles = 20_000_000  # ~10 ms at ~2 GHz
    timer = StepTimer(dev, skip=2)
    ev = []
    naive = 0.0
    for i in range(12):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with timer.step(1, 1, 1):
            s.record()
            torch.cuda._sleep(cycles)
            e.record()
        if i >= 2:
            ev.append((s, e))
    torch.cuda.synchronize(dev)
    event_s = sum(s.elapsed_time(e) for s, e in ev) / 1e3
    for _ in range(10):  # what an unsynchronised timer would have read
        t = time.perf_counter()
        torch.cuda._sleep(cycles)
        naive += time.perf_counter() - t
    torch.cuda.synchronize(dev)
    ratio = timer.seconds / event_s
    ok = 0.95 < ratio < 1.15
    say(f"2. StepTimer over 10 timed GPU steps: {timer.seconds * 1e3:.2f} ms; CUDA events {event_s * 1e3:.2f} ms; "
        f"ratio {ratio:.3f} -> {'OK' if ok else 'WRONG'}; an unsynchronised timer would read {naive * 1e3:.2f} ms")
    RESULT["timer"] = {"steptimer_s": timer.seconds, "events_s": event_s, "naive_s": naive, "ratio": ratio, "ok": ok}


def minimal_loop(model, batches, data, pad_id, lr, wd, warmup_ratio, clip, dev, warmup):
    """Hand-written bf16-autocast loop: own padding, no per-step sync, CUDA events for timing."""
    from benchmarks.bench_overhead import minimal_optimizer, minimal_pad

    total = len(batches)
    opt, sched, params = minimal_optimizer(model, lr, wd, warmup_ratio, total)
    labels_all = torch.tensor(data.labels, dtype=torch.long)
    model.train()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    samples = 0
    for step, ids in enumerate(batches):
        if step == warmup:
            start.record()
        x, mask, _ = minimal_pad([data.input_ids[i] for i in ids], None, pad_id)
        x, mask, y = x.to(dev, non_blocking=True), mask.to(dev, non_blocking=True), labels_all[ids].to(dev, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x, mask)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            samples += len(ids)
    end.record()
    torch.cuda.synchronize(dev)
    secs = start.elapsed_time(end) / 1e3
    return {"step_s": secs / (total - warmup), "samples_per_s": samples / secs,
            "peak_alloc": torch.cuda.max_memory_allocated(dev)}


def harness_vs_minimal(dev, model_overrides: list[str], label: str, methods=("full", "lora"), n=3200, warmup=5):
    from bench.training.loop import train_model
    from benchmarks.bench_overhead import Setup

    for meth in methods:
        setup = Setup(meth, n, 32, warmup, [*model_overrides, "train.precision=bf16"])
        rows = {"harness": [], "minimal": []}
        # An untimed pass first: on a GPU each new padded length builds attention/matmul plans, so
        # the first run in a process is several times slower (H200 run 1: full 164 ms/step cold
        # vs 17 warm); whichever side ran first would otherwise carry that cost.
        built, method = setup.harness_model()
        train_model(built.model.to(dev), method, setup.data, setup.cfg.train, dev, setup.pad_id, precision="bf16")
        del built, method
        torch.cuda.empty_cache()
        for rep in range(2):
            for side in (("harness", "minimal") if rep == 0 else ("minimal", "harness")):
                built, method = setup.harness_model()
                if side == "harness":
                    model = built.model.to(dev)
                    torch.cuda.synchronize(dev)
                    torch.cuda.empty_cache()
                    with PeakMemory(dev) as pm:
                        _, timer = train_model(model, method, setup.data, setup.cfg.train, dev, setup.pad_id,
                                                 precision="bf16")
                    rows[side].append({"step_s": timer.seconds / timer.timed_steps,
                                       "samples_per_s": timer.as_dict()["train_samples_per_s"],
                                       "peak_alloc": pm.cuda_allocated})
                    # free it: left alive, its weights would count in the other side's peak (run 1
                    # did that: the minimal loop's peak carried 87 MiB of leftover MiniLM weights)
                    del model, built
                else:
                    mm = setup.minimal_model({k: v.clone() for k, v in built.model.state_dict().items()}, method)
                    del built
                    mm = mm.to(dev)
                    torch.cuda.synchronize(dev)
                    torch.cuda.empty_cache()
                    t = setup.cfg.train
                    rows[side].append(minimal_loop(mm, setup.batches, setup.data, setup.pad_id, method.lr,
                                                   float(t.weight_decay), float(t.warmup_ratio), float(t.max_grad_norm),
                                                   dev, warmup))
                    del mm
                torch.cuda.empty_cache()
        h = {k: statistics.median(r[k] for r in rows["harness"]) for k in ("step_s", "samples_per_s", "peak_alloc")}
        m_ = {k: statistics.median(r[k] for r in rows["minimal"]) for k in ("step_s", "samples_per_s", "peak_alloc")}
        mem_r, step_r = h["peak_alloc"] / m_["peak_alloc"], h["step_s"] / m_["step_s"]
        say(f"3. {label} {meth:5s} bf16: harness {h['step_s'] * 1e3:6.2f} ms/step {h['samples_per_s']:8.0f} samples/s "
            f"peak {h['peak_alloc'] / MiB:7.1f} MiB | minimal {m_['step_s'] * 1e3:6.2f} ms/step {m_['samples_per_s']:8.0f} "
            f"samples/s peak {m_['peak_alloc'] / MiB:7.1f} MiB | ratios: step {step_r:.3f}, peak memory {mem_r:.3f}")
        RESULT.setdefault("harness_vs_minimal", []).append(
            {"model": label, "method": meth, "harness": h, "minimal": m_, "step_ratio": step_r, "mem_ratio": mem_r})


def cli_cells(out: Path, name: str, overrides: list[str], timeout: float):
    res = out / "records"
    cmd = [sys.executable, "-m", "bench", "-m", *overrides, f"results_dir={res}", f"sweep_name={name}",
           f"hydra.sweep.dir={out / 'hydra' / name}"]
    say("4. " + " ".join(cmd[1:]))
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        rc = p.returncode
        tail = (p.stdout + p.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", str(e.stdout)[-1500:] if e.stdout else ""
    wall = time.perf_counter() - t
    recs = [json.loads(f.read_text()) for f in sorted((res / name).rglob("*.json"))]
    say(f"   rc {rc}, wall {wall:.1f} s, {len(recs)} records")
    if rc != 0:
        print(tail)
    rows = []
    for r in recs:
        mem, thr, tm = r.get("memory", {}), r.get("throughput", {}), r.get("time", {})
        row = {"cell": r.get("run_id"), "status": r.get("status"), "device": r["env"].get("device"),
               "gpu": r["env"].get("cuda_device_name"), "precision": r.get("train", {}).get("precision"),
               "cuda_peak_alloc_mib": (mem.get("cuda_peak_allocated_bytes") or 0) / MiB,
               "cuda_peak_reserved_mib": (mem.get("cuda_peak_reserved_bytes") or 0) / MiB,
               "samples_per_s": thr.get("train_samples_per_s"), "train_s": tm.get("train_s"), "eval_s": tm.get("eval_s"),
               "total_s": tm.get("total_s"), "headline": r.get("headline_metric"),
               "metric": (r.get("metrics") or {}).get(r.get("headline_metric"))}
        rows.append(row)
        print("   ", json.dumps(row, default=str))
    RESULT.setdefault("cli", []).append({"name": name, "rc": rc, "wall_s": wall, "rows": rows})
    return recs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=480, help="seconds from start; later sections are skipped")
    ap.add_argument("--skip", default="", help="comma list of section numbers to skip")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(","))
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    dev = torch.device("cuda")
    say(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(dev)}, "
        f"bf16 {torch.cuda.is_bf16_supported()}, cpus {os.cpu_count()}")
    RESULT["env"] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(dev)}
    sections = [
        ("1", lambda: check_known_allocation(dev)),
        ("2", lambda: check_timer(dev)),
        ("3", lambda: harness_vs_minimal(dev, [], "minilm")),
        ("3", lambda: harness_vs_minimal(dev, ["model=bert_base_uncased", "model.pretrained=false", "model.pooling=mean"],
                                        "bert-base(random)")),
        ("4", lambda: cli_cells(out, "gpu_sst2", ["task=sst2", "method=full,lora,head_only"], 240)),
        ("4", lambda: cli_cells(out, "gpu_bert_base", ["model=bert_base_uncased", "model.pretrained=false", "task=sst2",
                                                       "method=full,lora", "train.epochs=1"], 150)),
    ]
    for num, fn in sections:
        if num in skip:
            continue
        if time.perf_counter() - T0 > args.deadline:
            say(f"section {num} skipped: past the deadline")
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - keep going: one failed check must not hide the others
            import traceback

            traceback.print_exc()
            RESULT.setdefault("errors", []).append(f"section {num}: {exc!r}")
        (out / "gpu_check.json").write_text(json.dumps(RESULT, indent=1, default=str))
    left = args.deadline - (time.perf_counter() - T0)
    if "5" not in skip and left > 60:
        cli_cells(out, "default_sweep_gpu", ["experiment=default_sweep"], left)
    (out / "gpu_check.json").write_text(json.dumps(RESULT, indent=1, default=str))
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
