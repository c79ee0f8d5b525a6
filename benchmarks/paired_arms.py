#!/usr/bin/env python3
"""Does a speed option change the metrics? Two result folders (arm A, arm B) with the same cells (model,
task, method, seed) run two ways, e.g. bf16 vs fp32, fused vs foreach AdamW, grouped vs ungrouped:

    python -m benchmarks.paired_arms results/default_sweep_bf16 results/default_sweep [--csv out.csv]

Per (model, task, method): A − B of the headline metric with the report's paired bootstrap over the
eval examples (both arms' seeds pooled: bench.analysis.example_bootstrap.paired_bootstrap, B = 2,000, null-centred p),
Holm over every compared cell; and the training-time ratio A / B (meaningful only when both arms ran
under the same conditions: the script prints each arm's threads and precision). The rule of
docs/performance.md section 7: an option that changes rounding becomes a default only if no cell
differs significantly.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from bench.analysis import example_bootstrap, multiple_comparisons
from bench.records.schema import load_predictions, load_records


def arm(folder: Path) -> dict:
    recs, _ = load_records(folder)
    out: dict = defaultdict(list)
    for r in recs:
        if r.get("status") != "ok" or not r.get("predictions") or (r.get("study") or {}).get("role") == "trial":
            continue
        data = load_predictions(r)
        sp = next(v for v in data["splits"].values() if isinstance(v, dict) and v.get("role", "eval") == "eval")
        order = np.argsort(np.asarray(sp["ids"]), kind="stable")
        out[(r["model"], r["task"], r["method"])].append({
            "seed": r["seed"], "metric": r["headline_metric"], "value": r["metrics"][r["headline_metric"]],
            "ids": np.asarray(sp["ids"])[order], "pred": np.asarray(sp["predictions"], float)[order],
            "ref": np.asarray(sp["references"], float)[order], "train_s": r["time"]["train_s"],
            "threads": r["env"].get("torch_threads"), "precision": r["train"].get("precision")})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args(argv)
    a, b = arm(args.a), arm(args.b)
    rows = []
    for key in sorted(set(a) & set(b)):
        seeds = sorted({x["seed"] for x in a[key]} & {x["seed"] for x in b[key]})
        ra = [x for x in a[key] if x["seed"] in seeds]
        rb = [x for x in b[key] if x["seed"] in seeds]
        if not seeds or any(not np.array_equal(x["ids"], ra[0]["ids"]) for x in ra + rb):
            print(f"skipped {key}: no shared seed, or different eval examples")
            continue
        metric = ra[0]["metric"]
        res = example_bootstrap.paired_bootstrap(metric, [x["pred"] for x in ra], [x["pred"] for x in rb], ra[0]["ref"],
                                                 b=args.bootstrap)
        rows.append({"model": key[0], "task": key[1], "method": key[2], "metric": metric, "seeds": len(seeds),
                     "a": float(np.mean([x["value"] for x in ra])), "b": float(np.mean([x["value"] for x in rb])),
                     "delta": res.delta, "ci_low": res.low, "ci_high": res.high, "p": res.p,
                     "identical_predictions": all(np.array_equal(x["pred"], y["pred"]) for x, y in zip(ra, rb)),
                     "train_s_ratio": float(np.mean([x["train_s"] for x in ra]) / np.mean([x["train_s"] for x in rb])),
                     "a_setup": f"{ra[0]['precision']}, {ra[0]['threads']} thread(s)",
                     "b_setup": f"{rb[0]['precision']}, {rb[0]['threads']} thread(s)"})
    if not rows:
        print("no cell in both folders")
        return 1
    for r, pa in zip(rows, multiple_comparisons.holm([r["p"] for r in rows])):
        r["p_adjusted"] = pa
        r["verdict"] = ("tie" if not multiple_comparisons.significant(pa, r["ci_low"], r["ci_high"])
                        else ("A better" if r["delta"] > 0 else "B better"))
    print(f"A = {args.a} ({rows[0]['a_setup']}), B = {args.b} ({rows[0]['b_setup']}); x100, paired bootstrap over "
          f"eval examples, seeds pooled, B = {args.bootstrap}, Holm over {len(rows)} cells")
    print(f"{'task':6s} {'method':14s} {'seeds':>5s} {'A':>7s} {'B':>7s} {'A-B [95%]':>24s} {'Holm p':>7s} "
          f"{'verdict':>8s} {'same preds':>10s} {'train s A/B':>11s}")
    for r in rows:
        ci = f"{100 * r['delta']:+.2f} [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]"
        print(f"{r['task']:6s} {r['method']:14s} {r['seeds']:5d} {100 * r['a']:7.2f} {100 * r['b']:7.2f} {ci:>24s} "
              f"{r['p_adjusted']:7.3f} {r['verdict']:>8s} {'yes' if r['identical_predictions'] else 'no':>10s} "
              f"{r['train_s_ratio']:11.2f}")
    sig = [r for r in rows if r["verdict"] != "tie"]
    print(f"{len(sig)} of {len(rows)} cells differ significantly; mean |A-B| {100 * np.mean([abs(r['delta']) for r in rows]):.2f} "
          f"points; identical predictions in {sum(r['identical_predictions'] for r in rows)}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
