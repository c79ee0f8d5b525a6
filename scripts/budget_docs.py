#!/usr/bin/env python3
"""Markdown tables for docs/budget.md from a budget report folder (`python -m bench.report.data_budget`).

    python -m scripts.budget_docs reports/budget_reuse_stsb [--task stsb]

Prints, per task: the points (mean x100 [95 % t interval] per method and K, trainable parameters incl.
the head), steps per K, mean train seconds per cell at the largest K, the crossover pairs that have
a crossover, every K where a pair differs significantly, the Kendall tau per K, and head_only's pairs
against full, lora and adapter at each K (the design notes' claim). Reads the report's CSVs only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def fmt_k(k) -> str:
    return f"{int(k):,}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--task")
    args = ap.parse_args(argv)
    try:
        pts = pd.read_csv(args.report / "budget_points.csv")
        pairs = pd.read_csv(args.report / "budget_pairs.csv")
        cross = pd.read_csv(args.report / "budget_crossover.csv")
        ranks = pd.read_csv(args.report / "budget_ranks.csv")
    except FileNotFoundError as exc:
        print(f"{args.report}: not a budget report ({exc.filename} missing)")
        return 1
    for task in [args.task] if args.task else sorted(pts["task"].unique()):
        p = pts[pts["task"] == task]
        ks = sorted(p["k"].unique())
        metric = p["headline_metric"].iloc[0]
        print(f"## {task} ({metric} x100, mean of seeds [95 % t interval])\n")
        print("| method (trainable) | " + " | ".join(f"K = {fmt_k(k)}" for k in ks) + " |")
        print("|---|" + "---|" * len(ks))
        top = p[p["k"] == ks[-1]].sort_values("mean", ascending=False)["method"].tolist()
        for m in top:
            row = p[p["method"] == m].set_index("k")
            cells = [f"{100 * row.loc[k, 'mean']:.2f} [{100 * row.loc[k, 'ci_low']:.2f}, {100 * row.loc[k, 'ci_high']:.2f}]"
                     if k in row.index else "-" for k in ks]
            print(f"| {m} ({int(row['trainable_params'].iloc[0]):,}) | " + " | ".join(cells) + " |")
        steps = p.groupby("k")["steps"].mean()
        print("\nsteps per K: " + " / ".join(f"{int(steps[k])}" for k in ks))
        big = p[p["k"] == ks[-1]].set_index("method")
        print(f"train seconds per cell at K = {fmt_k(ks[-1])} (mean of seeds): "
              + ", ".join(f"{m} {big.loc[m, 'train_s']:.0f}" for m in top))
        c = cross[cross["task"] == task]
        print("\ncrossovers (A better than B from K on, at every larger K):")
        for r in c[c["crossover_k"] != "never in range"].itertuples():
            print(f"  {r.method_a} > {r.method_b} from K = {r.crossover_k} (significant at {r.a_better_at})")
        print("A significantly better than B somewhere, without a crossover:")
        for r in c[(c["crossover_k"] == "never in range") & (c["a_better_at"] != "-")].itertuples():
            print(f"  {r.method_a} > {r.method_b} at K = {r.a_better_at} only")
        t = ranks[ranks["task"] == task].drop_duplicates("k_label").sort_values("k")
        print("\nKendall tau-b vs the largest K: " + ", ".join(
            f"K = {fmt_k(r.k)}: {r.kendall_tau_vs_largest:.2f}" for r in t.itertuples() if r.k != ks[-1]))
        print("\nhead_only against full, lora, adapter (delta = other - head_only x100 [95 %], Holm p):")
        q = pairs[(pairs["task"] == task)]
        for k in ks:
            parts = []
            for other in ("full", "lora", "adapter"):
                r = q[(q["k"] == k) & (((q["method_a"] == other) & (q["method_b"] == "head_only"))
                                       | ((q["method_a"] == "head_only") & (q["method_b"] == other)))]
                if r.empty:
                    continue
                r = r.iloc[0]
                sign = 1 if r["method_a"] == other else -1
                lo, hi = sorted((sign * r["ci_low"], sign * r["ci_high"]))
                won = {"tie": "tie", "a better": r["method_a"] + " better", "b better": r["method_b"] + " better"}
                parts.append(f"{other} {100 * sign * r['delta']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] "
                             f"p {r['p_adjusted']:.3f} ({won[r['verdict']]})")
            print(f"  K = {fmt_k(k)}: " + "; ".join(parts))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
