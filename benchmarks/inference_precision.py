"""The inference measurement's two protocols side by side: fixed rounds vs stop when precise (issue #26).

    python -m benchmarks.inference_precision [--task sst2] [--methods full head_only ...] [--repeats 1] [--out FILE.csv]

For each method of the default sweep (conf/experiment/default_sweep.yaml; `--methods` picks some)
on one task, the cell's model is built exactly as a cell builds it (bench.models.build.build_cell; not
trained: timings do not depend on weight values, bench/inference/cache.py) and measured by
bench.inference.cost.measure twice, in alternating order: once with `inference.target_halfwidth=null`
(the fixed protocol: `repeats` rounds per length, `batch_repeats` batched) and once with the
defaults (stop when every ratio's 95 % interval is within the target). Printed per ratio: both
figures with their intervals, whether the intervals overlap, the rounds and seconds each spent.
Nothing is cached (the function is called directly). Run it at normal priority on a machine as
quiet as you can get; the load is printed (other processes' share of the CPU while it ran).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

from bench.data.tasks import task_spec
from bench.inference.cost import measure, settings_from
from bench.models.backbones import build_model
from bench.models.build import build_cell, method_from_config
from bench.params import compose_config
from benchmarks.machine_load import ForeignCPU

CPU = torch.device("cpu")


def default_methods() -> list[str]:
    sweep = yaml.safe_load((ROOT / "conf" / "experiment" / "default_sweep.yaml").read_text(encoding="utf-8"))
    return str(sweep["hydra"]["sweeper"]["params"]["method"]).split(",")


def measure_both(task: str, method: str, order: list[str]) -> dict[str, dict]:
    cfg = compose_config([f"task={task}", f"method={method}"])
    spec = task_spec(cfg.task)
    meth = method_from_config(cfg)
    cell = build_cell(cfg.model, meth, spec.num_labels, 0, int(cfg.train.max_seq_len))
    defaults = settings_from(cfg.get("inference"))
    torch.set_num_threads(int(defaults["threads"] or torch.get_num_threads()))

    def fresh():
        return build_model(cfg.model, spec.num_labels, 0).model.eval()

    out = {}
    for way in order:
        s = dict(defaults, target_halfwidth=None) if way == "fixed" else defaults
        with ForeignCPU() as fc:
            t0 = time.perf_counter()
            sec = measure(cell.model, fresh(), s, CPU, "fp32", fresh)
            sec["wall_s"] = time.perf_counter() - t0
        sec["foreign"] = fc.frac
        out[way] = sec
    return out


def ratios(sec: dict) -> dict[tuple[str, str], dict]:
    """(part, variant) -> the summary with ratio and interval; parts: batch-1 lengths and batched."""
    out = {}
    parts = {**{k: v for k, v in sec["latency_batch1"].items()}, "batched": sec["throughput"]}
    for part, block in parts.items():
        for variant, summary in block.items():
            if isinstance(summary, dict) and "ratio_ci95" in summary:
                out[(part, variant)] = summary
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from bench.logs import quiet_libraries

    quiet_libraries()
    methods = args.methods or default_methods()
    print(f"== inference_precision: fixed rounds vs stop when precise, task {args.task}, methods {' '.join(methods)}")
    print("cmd: python -m benchmarks.inference_precision " + " ".join(argv if argv is not None else sys.argv[1:]))
    rows = []
    for i, method in enumerate(methods):
        order = ["fixed", "precise"] if i % 2 == 0 else ["precise", "fixed"]
        both = measure_both(args.task, method, order)
        f, p = ratios(both["fixed"]), ratios(both["precise"])
        pf, pp = both["fixed"]["precision_reached"], both["precise"]["precision_reached"]
        print(f"-- {method}: fixed {both['fixed']['wall_s']:.1f} s (rounds {pf['rounds']}, widest half-width "
              f"{pf['halfwidth_max']:.4f}; other processes {both['fixed']['foreign']:.0%} of the CPU), precise "
              f"{both['precise']['wall_s']:.1f} s (rounds {pp['rounds']}, widest {pp['halfwidth_max']:.4f}, target "
              f"{pp['target_halfwidth']}, met {pp['met']}; other processes {both['precise']['foreign']:.0%})")
        for key in f:
            a, b = f[key], p.get(key)
            if b is None:
                continue
            (alo, ahi), (blo, bhi) = a["ratio_ci95"], b["ratio_ci95"]
            overlap = alo <= bhi and blo <= ahi
            row = {"method": method, "part": key[0], "variant": key[1],
                   "fixed": a["ratio_vs_reference"], "fixed_lo": alo, "fixed_hi": ahi, "fixed_rounds": a["n"],
                   "precise": b["ratio_vs_reference"], "precise_lo": blo, "precise_hi": bhi, "precise_rounds": b["n"],
                   "overlap": overlap, "fixed_s": both["fixed"]["wall_s"], "precise_s": both["precise"]["wall_s"],
                   "fixed_foreign": both["fixed"]["foreign"], "precise_foreign": both["precise"]["foreign"]}
            rows.append(row)
            print(f"   {key[0]:>7s} {key[1]:7s} fixed {row['fixed']:.3f} [{alo:.3f}, {ahi:.3f}] n={a['n']:2d} | "
                  f"precise {row['precise']:.3f} [{blo:.3f}, {bhi:.3f}] n={b['n']:2d} | "
                  f"{'overlap' if overlap else 'DISAGREE'}", flush=True)
    agree = sum(r["overlap"] for r in rows)
    tf = sum({r["method"]: r["fixed_s"] for r in rows}.values())
    tp = sum({r["method"]: r["precise_s"] for r in rows}.values())
    print(f"intervals overlap for {agree} of {len(rows)} ratios; seconds fixed {tf:.0f}, precise {tp:.0f} "
          f"({tp / tf:.2f} of fixed)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"rows: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
