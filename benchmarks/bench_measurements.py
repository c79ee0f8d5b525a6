#!/usr/bin/env python3
"""Benchmark: how accurate are the harness's own measurements, and what do its optimisations buy?

Sections (`--sections`, default all):

  memory      (a) the record's memory.peak_rss_bytes versus independent readings of the same cell:
              `/usr/bin/time -v` ("Maximum resident set size") and an outside sampler polling the
              process's VmRSS every ~2 ms from this (parent) process; plus an in-process breakdown
              (peak before training / during training (the record) / training start to exit) that
              explains the gap; plus a kernel check of what `time -v` reports after a
              clear_refs reset (it is not the lifetime peak).
  known       (b) a known allocation inside bench.measure.memory.PeakMemory (512 MiB, touched): peak -
              baseline versus 512 MiB, on the VmHWM path and on the forced 2 ms sampling fallback.
  throughput  (c) throughput.train_samples_per_s (timed steps only) versus
              train_examples * epochs / time.train_s from the same records.
  optim       "Optimisations and what they buy": quick A/B runs of length grouping (sst2, mrpc),
              head_only cache_features, the tokenisation cache (encode_cached cold vs warm on the
              whole SST-2 train split), threads 1 vs 2, joblib parallel vs serial for a 4-cell sweep.

Every cell is a real `python -m bench ...` process (the exact command is printed) writing into a
temporary results folder. Usage: python -m benchmarks.bench_measurements [--sections memory,known,...]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.machine_load import ForeignCPU

MiB = 2 ** 20
SECTIONS = ("memory", "known", "throughput", "optim")
EXTRA: list[str] = []  # overrides added to every cell (--max-eval, --override: for smoke tests only)


def child_env() -> dict:
    env = dict(os.environ)
    for k, v in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                 ("TOKENIZERS_PARALLELISM", "false")):
        env.setdefault(k, v)
    return env


def machine_line() -> str:
    import torch

    from bench.records.environment import cpu_model

    return (f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} (threads {torch.get_num_threads()} "
            f"in this process; cells use train.threads=auto unless stated); "
            f"date {datetime.now(UTC).isoformat(timespec='seconds')}")


def status_kb(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class OutsideSampler:
    """Polls VmRSS of a process (and its descendants' python) from outside, every `period` seconds."""

    def __init__(self, root_pid: int, period: float = 0.002):
        self.root, self.period, self.peak, self.n = root_pid, period, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _pids(self):
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                kids = []
            todo.extend(int(k) for k in kids)
        return out

    def _run(self):
        pids, k = [self.root], 0
        while not self._stop.is_set():
            if k % 50 == 0:
                pids = self._pids()
            for pid in pids:
                rss = status_kb(pid, "VmRSS")
                if rss:
                    self.peak = max(self.peak, rss)
            self.n += 1
            k += 1
            time.sleep(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_cell(overrides: list[str], work: Path, tag: str, time_v: bool = False, sample: bool = False,
             multirun: bool = False) -> dict:
    """Run `python -m bench <overrides>` as a process; return its records, wall time and, on request,
    /usr/bin/time -v's maximum RSS and the outside sampler's peak RSS."""
    res_dir = work / tag
    hydra_dir = ("hydra.sweep.dir=" if multirun else "hydra.run.dir=") + str(work / "hydra" / tag)
    if EXTRA:
        overrides = [*overrides, *EXTRA]
    args = ["-m", "bench", *(["-m"] if multirun else []), *overrides, f"results_dir={res_dir}", "sweep_name=m",
            hydra_dir]
    cmd = (["/usr/bin/time", "-v"] if time_v else []) + [sys.executable, *args]
    t0 = time.perf_counter()
    with ForeignCPU() as fc:
        p = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = OutsideSampler(p.pid) if sample else None
        if sampler:
            with sampler:
                out, err = p.communicate()
        else:
            out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
    recs = [json.loads(f.read_text()) for f in sorted((res_dir / "m").glob("*.json"))]
    r = {"wall_s": wall, "records": recs, "foreign": fc.frac, "cmd": "python " + " ".join(args[:len(args) - 3]).replace(str(work), "$TMP")}
    if time_v:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        r["time_v_max_rss"] = int(m.group(1)) * 1024 if m else None
    if sampler:
        r["outside_peak_rss"] = sampler.peak
        r["outside_samples"] = sampler.n
    return r


# --------------------------------------------------------------------------------------------------
# (a) memory


def child_breakdown(overrides: list[str], out: str) -> None:
    """In-process cell (bench.sweep.execute through Hydra compose, as `python -m bench` does) with the
    kernel high-water mark read (not changed) right before PeakMemory resets it, and when the cell
    has finished (evaluation and storage included). Works whether bench.sweep.execute runs the cell in
    this process or in a forked child (`isolate`): the hooks are installed before any fork and
    write from the process that ran the cell."""
    os.environ.setdefault("BENCH_INVOCATION", "breakdown")
    os.environ["BENCH_PARALLEL_CELLS"] = "1"  # the cell runs alone: train.threads=auto takes every core
    from hydra import compose, initialize_config_dir

    import bench.measure.memory as M
    import bench.sweep.execute as E
    from bench.logs import quiet_libraries

    quiet_libraries()
    seen = {"parent_pid": os.getpid()}
    orig_reset = M.reset_hwm

    def reset_and_note():
        seen["hwm_before_training"] = status_kb("self", "VmHWM")
        seen["rss_before_training"] = status_kb("self", "VmRSS")
        return orig_reset()

    M.reset_hwm = reset_and_note
    runner = getattr(E, "_run_and_record", None)
    if runner is not None:
        def run_and_note(*a, **k):
            status = runner(*a, **k)
            seen["hwm_training_start_to_end"] = status_kb("self", "VmHWM")
            seen["cell_pid"] = os.getpid()
            Path(out).write_text(json.dumps(seen))
            return status

        E._run_and_record = run_and_note
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    E.execute(cfg, overrides)
    if runner is None:  # older bench.sweep.execute without the per-cell runner: the cell ran here
        seen["hwm_training_start_to_end"] = status_kb("self", "VmHWM")
        seen["cell_pid"] = os.getpid()
        Path(out).write_text(json.dumps(seen))
    data = json.loads(Path(out).read_text())
    data["isolated"] = data["cell_pid"] != os.getpid()
    data["parent_hwm_at_end"] = status_kb("self", "VmHWM")  # the parent never reset its own
    Path(out).write_text(json.dumps(data))


def kernel_check(work: Path) -> dict:
    """What does time -v report for a process that peaks at ~1 GiB, then resets its HWM via
    clear_refs and peaks at ~256 MiB?"""
    prog = (
        "import torch,time\n"
        "a=torch.ones(256*2**20); del a\n"             # 1 GiB touched then freed
        "open('/proc/self/clear_refs','w').write('5')\n"
        "b=torch.ones(64*2**20); del b\n"              # 256 MiB after the reset
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].strip())\n"
    )
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", prog]
    p = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), check=False)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"time_v": int(m.group(1)) * 1024 if m else None, "hwm_line": p.stdout.strip()}


def section_memory(work: Path, samples: int, report: dict, methods=("lora", "full")) -> None:
    print("\n== (a) peak memory: record vs /usr/bin/time -v vs an outside VmRSS sampler")
    rows = []
    for method in methods:
        ov = ["task=sst2", f"method={method}", f"train.max_train_samples={samples}", "cache_dir=null"]
        r = run_cell(ov, work, f"mem-{method}", time_v=True, sample=True)
        rec = r["records"][0]
        out = work / f"breakdown-{method}.json"
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "benchmarks.bench_measurements", "--child-breakdown", str(out), "--",
                            *ov, *EXTRA, f"results_dir={work / ('bd-' + method)}", "sweep_name=m"],
                           cwd=ROOT, env=child_env(), capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        bd = json.loads(out.read_text())
        bd_rec = json.loads(next((work / ("bd-" + method) / "m").glob("*.json")).read_text())
        rows.append((method, r, rec, bd, bd_rec, time.perf_counter() - t0))
        report.setdefault("memory_records", []).append(rec)
    print(f"{'cell':28s} {'record peak':>12s} {'baseline':>9s} {'time -v max':>12s} {'outside max':>12s} "
          f"{'time-v/rec':>10s}")
    for method, r, rec, bd, bd_rec, _ in rows:
        mem = rec["memory"]
        print(f"{'sst2 ' + method + ' n=' + str(samples):28s} {mem['peak_rss_bytes'] / MiB:9.0f} MiB "
              f"{mem['baseline_rss_bytes'] / MiB:6.0f} MiB {r['time_v_max_rss'] / MiB:9.0f} MiB "
              f"{r['outside_peak_rss'] / MiB:9.0f} MiB {r['time_v_max_rss'] / mem['peak_rss_bytes']:10.3f}")
        print(f"    cmd: /usr/bin/time -v {r['cmd']}  (outside sampler: {r['outside_samples']} polls)")
    print("  breakdown (same cell again, bench.sweep.execute via Hydra compose, kernel high-water marks read at phase ends):")
    for method, r, rec, bd, bd_rec, _ in rows:
        where = "in a forked child (isolate=true)" if bd["isolated"] else "in the main process"
        print(f"    {method:5s}: cell ran {where}; main process lifetime peak {bd['parent_hwm_at_end'] / MiB:.0f} MiB; "
              f"in the cell's process: peak before training (data, model build) {bd['hwm_before_training'] / MiB:.0f} MiB, "
              f"RSS at training start {bd['rss_before_training'] / MiB:.0f} MiB, training peak (record) "
              f"{bd_rec['memory']['peak_rss_bytes'] / MiB:.0f} MiB, peak from training start to the end of the cell "
              f"(training + eval + storage) {bd['hwm_training_start_to_end'] / MiB:.0f} MiB")
    kc = kernel_check(work)
    print(f"  kernel check: a process that touches 1 GiB, frees it, resets via clear_refs and then touches 256 MiB "
          f"-> time -v reports {kc['time_v'] / MiB:.0f} MiB ({kc['hwm_line']}): time -v's number is the high-water "
          f"mark at exit (plus that of any thread that exited earlier), so after the harness's reset it is not the "
          f"lifetime peak; the outside sampler is the independent lifetime reading")


def section_known(report: dict) -> None:
    import torch

    import bench.measure.memory as M

    print("\n== (b) a known allocation inside PeakMemory: peak - baseline vs the allocation")
    cpu = torch.device("cpu")
    n = 512 * MiB // 4

    def trial(kind: str, hold_s: float, pre_gib: bool):
        if pre_gib:  # an earlier, larger peak that the reset must forget
            x = torch.ones(1024 * MiB // 4)
            del x
        with M.PeakMemory(cpu) as pm:
            t = torch.ones(n)  # 512 MiB, every page written
            if hold_s:
                time.sleep(hold_s)
            del t
        return pm

    rows = []
    for label, force_sampling, hold, pre in (
            ("VmHWM path", False, 0.0, False),
            ("VmHWM path, after an earlier 1 GiB peak", False, 0.0, True),
            ("sampling fallback, held 100 ms", True, 0.1, False),
            ("sampling fallback, freed at once", True, 0.0, False)):
        orig = M.reset_hwm
        if force_sampling:
            M.reset_hwm = lambda: False
        try:
            vals = []
            for _ in range(3):
                pm = trial(label, hold, pre)
                vals.append(pm.peak_rss - pm.baseline_rss)
        finally:
            M.reset_hwm = orig
        rows.append((label, pm.method, vals))
        print(f"  {label:42s} peak - baseline = {', '.join(f'{v / MiB:.1f}' for v in vals)} MiB "
              f"(3 trials; expected 512.0) [{pm.method}]")
    # Spikes: anonymous mmap, every page written, unmapped at once (RSS really rises and falls; small
    # torch/numpy buffers would come from malloc's heap, which keeps freed pages resident).
    import mmap

    def spike(nbytes: int) -> float:
        t0 = time.perf_counter()
        m = mmap.mmap(-1, nbytes)
        torch.frombuffer(m, dtype=torch.uint8).fill_(1)
        dt = time.perf_counter() - t0
        m.close()
        return dt

    for size in (64, 8):
        for label, force in (("sampling fallback", True), ("VmHWM path", False)):
            orig = M.reset_hwm
            if force:
                M.reset_hwm = lambda: False
            try:
                seen, durs = [], []
                for _ in range(10):
                    with M.PeakMemory(cpu) as pm:
                        time.sleep(0.005)
                        durs.append(spike(size * MiB))
                        time.sleep(0.005)
                    seen.append((pm.peak_rss - pm.baseline_rss) / MiB)
            finally:
                M.reset_hwm = orig
            caught = sum(1 for v in seen if v > 0.9 * size)
            print(f"  spike of {size:2d} MiB lasting ~{med(durs) * 1e3:.1f} ms, {label:17s}: caught {caught}/10 "
                  f"(seen {', '.join(f'{v:.0f}' for v in seen)} MiB)")
    report["known"] = rows


def section_throughput(report: dict) -> None:
    print("\n== (c) throughput: train_samples_per_s (timed steps) vs train_examples*epochs/time.train_s (same record)")
    recs = report.get("memory_records") or []
    if not recs:
        print("  (needs the memory section's records)")
        return
    for rec in recs:
        th, tm, d, tr = rec["throughput"], rec["time"], rec["data"], rec["train"]
        n = d["train_examples"] * tr["epochs"]
        naive = n / tm["train_s"]
        sps = th["train_samples_per_s"]
        if not sps:  # every step was a warm-up step (a smoke-sized cell): nothing timed to compare
            print(f"  sst2 {rec['method']:5s}: no timed steps ({tr['steps']} steps, first "
                  f"{th['warmup_steps_excluded']} excluded); use more --samples")
            continue
        timed_s = (n - th["warmup_steps_excluded"] * tr["batch_size"]) / sps  # approx: warm-up batches are full
        print(f"  sst2 {rec['method']:5s}: {sps:7.1f} samples/s over {th['timed_steps']} of {tr['steps']} steps "
              f"(first {th['warmup_steps_excluded']} excluded) vs {naive:7.1f} = {n}/{tm['train_s']:.2f} s; "
              f"ratio {sps / naive:.3f}; implied untimed part of train_s ~ {tm['train_s'] - timed_s:.2f} s "
              f"(warm-up steps + per-epoch batch ordering)")


# --------------------------------------------------------------------------------------------------
# Optimisations


def med(xs):
    return statistics.median(xs)


def load(runs) -> str:
    """The largest share of the CPU other processes used during any of these runs; (!) above 5 %."""
    f = max(r["foreign"] for r in runs)
    return f"{f:.0%}" + (" (!)" if f > 0.05 else "")


def section_optim(work: Path, samples: int) -> None:
    print("\n== Optimisations and what they buy (A/B, one sitting, records from real cells)")
    # 1. length grouping
    print(f"-- length-grouped batching (lora, {samples} train rows, 3 epochs; A B B A order)")
    print(f"  {'task':5s} {'group':>5s} {'real tok/s':>10s} {'padded tok/s':>12s} {'pad frac':>8s} {'train s':>8s} "
          f"{'cell wall s':>11s} {'metric':>7s} {'other load':>10s}")
    for task in ("sst2", "mrpc"):
        res = {True: [], False: []}
        for i, g in enumerate((True, False, False, True)):
            ov = [f"task={task}", "method=lora", f"train.max_train_samples={samples}",
                  f"train.group_by_length={str(g).lower()}", "cache_dir=null"]
            res[g].append(run_cell(ov, work, f"gbl-{task}-{g}-{i}"))
        for g in (True, False):
            recs = [r["records"][0] for r in res[g]]
            tok = med([x["throughput"]["train_tokens_per_s"] for x in recs])
            pad = med([x["throughput"]["train_padded_tokens_per_s"] for x in recs])
            pf = 1 - med([x["throughput"]["train_tokens_per_s"] / x["throughput"]["train_padded_tokens_per_s"] for x in recs])
            print(f"  {task:5s} {g!s:>5s} {tok:10.0f} {pad:12.0f} {pf:8.3f} "
                  f"{med([x['time']['train_s'] for x in recs]):8.1f} {med([r['wall_s'] for r in res[g]]):11.1f} "
                  f"{recs[0]['metrics'][recs[0]['headline_metric']]:7.4f} {load(res[g])}")
        print(f"    cmd: {res[True][0]['cmd']}  (and train.group_by_length=false)")
    # 2. head_only cache
    print(f"-- head_only cache_features (sst2, {samples} train rows, 3 epochs; A B B A)")
    res = {True: [], False: []}
    for i, c in enumerate((True, False, False, True)):
        ov = ["task=sst2", "method=head_only", f"train.max_train_samples={samples}",
              f"method.cache_features={str(c).lower()}", "cache_dir=null"]
        res[c].append(run_cell(ov, work, f"ho-{c}-{i}"))
    for c in (True, False):
        recs = [r["records"][0] for r in res[c]]
        fs = recs[0]["train"].get("feature_s")
        print(f"  cache_features={str(c).lower():5s}: train_s {med([x['time']['train_s'] for x in recs]):6.2f} "
              f"(feature pass {fs if fs is None else round(fs, 2)}), cell wall {med([r['wall_s'] for r in res[c]]):5.1f} s, "
              f"accuracy {recs[0]['metrics']['accuracy']:.4f}; other load {load(res[c])}")
    print(f"    cmd: {res[True][0]['cmd']}")
    # 3. tokenisation cache
    print("-- tokenisation cache: bench.data.batching.encode_cached on the whole SST-2 train split (in-process)")
    tok_cache(work)
    # 4. threads
    print(f"-- threads 1 vs 2 (sst2 lora, {samples} rows; A B B A)")
    res = {1: [], 2: []}
    for i, th in enumerate((1, 2, 2, 1)):
        ov = ["task=sst2", "method=lora", f"train.max_train_samples={samples}", f"train.threads={th}", "cache_dir=null"]
        res[th].append(run_cell(ov, work, f"th-{th}-{i}"))
    for th in (1, 2):
        recs = [r["records"][0] for r in res[th]]
        print(f"  threads={th}: {med([x['throughput']['train_samples_per_s'] for x in recs]):6.1f} samples/s, train_s "
              f"{med([x['time']['train_s'] for x in recs]):6.1f}, eval {med([x['time']['eval_s'] for x in recs]):5.1f} s, "
              f"cell wall {med([r['wall_s'] for r in res[th]]):5.1f} s; other load {load(res[th])}")
    print(f"    cmd: {res[1][0]['cmd']}")
    # 5. joblib parallel vs serial
    print(f"-- 4-cell sweep (sst2,cola x lora,adapter, {samples} rows): serial vs joblib n_jobs=2 (threads auto-split)")
    base = ["task=sst2,cola", "method=lora,adapter", f"train.max_train_samples={samples}", "cache_dir=null"]
    walls = {}
    for i, mode in enumerate(("serial", "parallel")):
        ov = base + (["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"] if mode == "parallel" else [])
        r = run_cell(ov, work, f"sweep-{mode}", multirun=True)
        walls[mode] = r
        recs = r["records"]
        print(f"  {mode:8s}: wall {r['wall_s']:6.1f} s for {len(recs)} cells; per-cell threads "
              f"{sorted({x['env']['torch_threads'] for x in recs})}; sum of cell total_s "
              f"{sum(x['time']['total_s'] for x in recs):6.1f} s; other load {load([r])}")
        print(f"    cmd: {r['cmd']}")
    print(f"  parallel / serial wall: {walls['parallel']['wall_s'] / walls['serial']['wall_s']:.3f}")


def tok_cache(work: Path) -> None:
    from hydra import compose, initialize_config_dir

    from bench.data import loading
    from bench.data import tasks as T
    from bench.data.batching import encode, encode_cached
    from bench.models.backbones import build_model

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=sst2"])
    spec = T.task_spec(cfg.task)
    t0 = time.perf_counter()
    ex = loading.load_split(spec, "train")
    t_load = time.perf_counter() - t0
    tok = build_model(cfg.model, spec.num_labels, 0).tokenizer
    rows = {"no cache (encode)": [], "cold (tokenise + hash + write)": [], "warm (hash + read)": []}
    fc = ForeignCPU().__enter__()
    for rep in range(2):
        d = work / f"tokcache-{rep}"
        t0 = time.perf_counter()
        encode(ex, tok, 128, False)
        rows["no cache (encode)"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, hit = encode_cached(ex, tok, 128, False, str(d))
        rows["cold (tokenise + hash + write)"].append(time.perf_counter() - t0)
        assert not hit
        t0 = time.perf_counter()
        _, hit = encode_cached(ex, tok, 128, False, str(d))
        rows["warm (hash + read)"].append(time.perf_counter() - t0)
        assert hit
    fc.__exit__(None, None, None)
    print(f"  {len(ex)} rows (reading the TSV: {t_load:.2f} s, not included): "
          + "; ".join(f"{k} {med(v):.2f} s" for k, v in rows.items())
          + f"; warm saves {med(rows['no cache (encode)']) - med(rows['warm (hash + read)']):.2f} s per load "
          + f"({med(rows['no cache (encode)']) / med(rows['warm (hash + read)']):.1f}x); other load {fc.frac:.0%}")
    print("    cmd: python -m benchmarks.bench_measurements --sections optim (in-process timing, 2 repeats, median)")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child-breakdown":
        child_breakdown(argv[3:], argv[1])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--samples", type=int, default=500, help="train rows per cell")
    ap.add_argument("--methods", default="lora,full", help="the memory section's cells (one per method)")
    ap.add_argument("--max-eval", type=int, default=None, help="dev rows per cell (default: all; smoke tests only)")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a Hydra override added to every cell, repeatable (smoke tests: model=tiny_bert; the "
                         "figures then describe that cell)")
    args = ap.parse_args(argv)
    if args.max_eval:
        EXTRA.append(f"train.max_eval_samples={args.max_eval}")
    EXTRA.extend(args.override)
    sections = args.sections.split(",")
    print("== bench_measurements: accuracy of the harness's measurements; optimisations")
    print(machine_line())
    print("cmd: python -m benchmarks.bench_measurements " + " ".join(argv))
    t_all = time.perf_counter()
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-meas-") as tmp:
        work = Path(tmp)
        if "memory" in sections or "throughput" in sections:
            section_memory(work, args.samples, report, args.methods.split(","))
        if "known" in sections:
            section_known(report)
        if "throughput" in sections:
            section_throughput(report)
        if "optim" in sections:
            section_optim(work, args.samples)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
