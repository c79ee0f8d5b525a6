"""What the retention measurement adds to a cell's wall time: A/B of whole cells, retention off (A) and on (B).

Runs one cell (default: the default sweep's minilm / sst2 / lora cell, 2,000 examples, 3 epochs) `--reps`
times with `retention.enabled=false` and `=true`, each run in its own sweep folder under `--results-dir`
(`resume=false`, so nothing is skipped as done), and prints per pair the wall time of the run (the
`python -m bench` process, measured here) and of the cell (`time.total_s`), their ratio B/A, the
retention phase's own seconds (`time.phases_s.retention`) and its share of the B cell, then the
medians. A tiny warm-up cell first fills the folder's retention cache (the "before" side, measured once
per backbone and results folder), so the B runs measure the cached cost that every cell but a sweep's
first pays; `--no-warmup` measures the cache miss instead.

`--order interleaved` (default) runs A B A B ... one after the other; `--order together` starts every
run at once (A B A B), so on a shared machine whose load drifts every arm sees the same load.

    nice -n 19 python -m benchmarks.retention_cost --results-dir /tmp/retention_cost --reps 2
    python -m benchmarks.retention_cost --results-dir /tmp/retention_cost --read-only   # table again
    python -m benchmarks.retention_cost --results-dir results/default_sweep --shares     # phase shares of any sweep

Extra `--set KEY=VALUE` overrides go to every run (e.g. `--set train.max_train_samples=300`).
docs/retention.md holds the measured table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CELL = ["model=minilm", "task=sst2", "method=lora", "train=default"]
WARMUP = ["train.max_train_samples=32", "train.epochs=1", "train.max_eval_samples=64", "retention.enabled=true"]


def _run(rd: Path, name: str, overrides: list[str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "bench", *overrides, "resume=false", f"results_dir={rd}", f"sweep_name={name}",
            "progress.mode=log"]
    log = open(rd / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def run_all(rd: Path, reps: int, order: str, extra: list[str], warmup: bool) -> dict[str, float]:
    """Run the arms; returns {sweep name: wall seconds of its process}."""
    rd.mkdir(parents=True, exist_ok=True)
    if warmup:
        _run(rd, "warmup", [*CELL, *extra, *WARMUP]).wait()
    names = [f"rep{k}_{arm}" for k in range(1, reps + 1) for arm in ("off", "on")]
    walls: dict[str, float] = {}
    procs = []
    for name in names:
        over = [*CELL, *extra, f"retention.enabled={'true' if name.endswith('_on') else 'false'}"]
        t0 = time.perf_counter()
        procs.append((name, t0, _run(rd, name, over)))
        if order == "interleaved":
            procs[-1][2].wait()
            walls[name] = time.perf_counter() - t0
    for name, t0, p in procs:
        if name not in walls:
            p.wait()
            walls[name] = time.perf_counter() - t0
    (rd / "walls.json").write_text(json.dumps(walls, indent=1))
    return walls


def _record(rd: Path, name: str) -> dict | None:
    found = sorted((rd / name).glob("*.json"))
    return json.loads(found[0].read_text()) if found else None


def table(rd: Path) -> str:
    """The per-pair Markdown table from the records (and walls.json when the runs were made here)."""
    walls = json.loads((rd / "walls.json").read_text()) if (rd / "walls.json").exists() else {}
    reps = sorted({int(p.name[3:].split("_")[0]) for p in rd.glob("rep*_o*") if p.is_dir()})
    lines = ["| pair | run wall A / B s | ratio | cell total_s A / B | ratio | retention phase s | share of B |",
             "|---:|---|---:|---|---:|---:|---:|"]
    ratios, cell_ratios, shares = [], [], []
    for k in reps:
        a, b = _record(rd, f"rep{k}_off"), _record(rd, f"rep{k}_on")
        if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
            lines.append(f"| {k} | (no ok record on both arms) | | | | | |")
            continue
        wa, wb = walls.get(f"rep{k}_off"), walls.get(f"rep{k}_on")
        ta, tb = a["time"]["total_s"], b["time"]["total_s"]
        ret = (b["time"].get("phases_s") or {}).get("retention", float("nan"))
        cell_ratios.append(tb / ta)
        shares.append(ret / tb)
        w = "-"
        if wa and wb:
            ratios.append(wb / wa)
            w = f"{wa:.0f} / {wb:.0f} | {wb / wa:.3f}"
        else:
            w = "- | -"
        lines.append(f"| {k} | {w} | {ta:.0f} / {tb:.0f} | {tb / ta:.3f} | {ret:.1f} | {100 * ret / tb:.1f} % |")
    med = [f"median run ratio {statistics.median(ratios):.3f}" if ratios else "",
           f"median cell ratio {statistics.median(cell_ratios):.3f}" if cell_ratios else "",
           f"median retention share {100 * statistics.median(shares):.1f} %" if shares else ""]
    return "\n".join(lines) + "\n\n" + "; ".join(m for m in med if m) + "\n"


def shares(folder: Path) -> str:
    """Per ok record with a retention section under `folder` (any sweep, e.g. the default sweep's): the
    cell's total_s, the retention phase's seconds, its share of the cell and whether the before side was
    cached; the median share of the cached cells."""
    lines = ["| cell | seed | cell total_s | retention s | share | before side |", "|---|---:|---:|---:|---:|---|"]
    cached = []
    for path in sorted(folder.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        ret, t = rec.get("retention"), rec.get("time") or {}
        if not isinstance(rec, dict) or rec.get("status") != "ok" or not isinstance(ret, dict) or not t.get("total_s"):
            continue
        sec = (t.get("phases_s") or {}).get("retention", ret.get("seconds"))
        hit = bool((ret.get("reference") or {}).get("cached"))
        if hit:
            cached.append(sec / t["total_s"])
        lines.append(f"| {rec['model']}/{rec['task']}/{rec.get('method_label')} | {rec['seed']} | {t['total_s']:.0f} | "
                     f"{sec:.1f} | {100 * sec / t['total_s']:.1f} % | {'cached' if hit else 'measured (miss)'} |")
    if len(lines) == 2:
        return ""
    med = f"median share of the cached cells {100 * statistics.median(cached):.1f} %" if cached else "no cached cell"
    return "\n".join(lines) + f"\n\n{med} ({len(lines) - 2} cells)\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results-dir", type=Path, required=True, help="a folder of its own (sweeps rep<k>_off/_on)")
    ap.add_argument("--reps", type=int, default=2, help="pairs (default 2)")
    ap.add_argument("--order", choices=("interleaved", "together"), default="interleaved")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    ap.add_argument("--no-warmup", action="store_true", help="do not fill the retention cache first")
    ap.add_argument("--read-only", action="store_true", help="only print the table from the folder's records")
    ap.add_argument("--shares", action="store_true",
                    help="print each retention record's phase share of its cell (any results folder, read only)")
    a = ap.parse_args(argv)
    if a.shares:
        text = shares(a.results_dir)
        if not text:
            print(f"retention_cost: error: no ok record with a retention section under {a.results_dir}", file=sys.stderr)
            return 2
        print(text)
        return 0
    if not a.read_only:
        run_all(a.results_dir, a.reps, a.order, a.set, not a.no_warmup)
    elif not any(a.results_dir.glob("rep*_o*")):
        print(f"retention_cost: error: {a.results_dir} holds no rep<k>_off / rep<k>_on sweep", file=sys.stderr)
        return 2
    print(table(a.results_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
