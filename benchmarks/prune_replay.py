#!/usr/bin/env python3
"""Replay successive halving (study.prune) on an exhaustive study's trial records.

Why a replay is exact: a pruned study's first-rung trial is the full-length run stopped after
`rung_epochs` epochs (train.stop_after_epochs: same schedule, same batches, same RNG), and
evaluation between epochs draws no random numbers, so its selection-split score is the score the
exhaustive trial recorded after that epoch (`metrics_per_epoch`), and a promoted trial, continued from
its rung's saved state (bench/training/rung_state.py), is the exhaustive trial itself, bit for bit (same config
hash). So for every (task, method) of an exhaustive study the
rate a pruned study would select, and the epochs it would train, follow from the records; a real
pruned run (`study.prune.enabled=true`, same threads) reproduces them, and its wall time is what the
note reports next to this.

    python -m benchmarks.prune_replay results/study [--eta 3 2] [--rungs 1 2] [--csv out.csv]

Prints, per setting, how many (task, method) protocols select the same rate as the exhaustive search,
the largest selection-score loss where they differ, and the share of trial epochs (and of measured
trial seconds, prorated per epoch) the pruning saves; the 3-seed reruns are the same either way and are
counted in the "whole study" saving.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from bench.records.results import record_selection_keys, selection_score
from bench.sweep.study import choose, promote, survivors


def load(study_dir: Path) -> dict:
    """{(model, task, method): {"grid", "headline", "trials": {index: record}, "finals": [records]}}"""
    out: dict = defaultdict(lambda: {"trials": {}, "finals": []})
    for f in sorted(study_dir.glob("selected/*.json")):
        sel = json.loads(f.read_text())
        out[(sel["model"], sel["task"], sel["method"])].update(grid=sel["grid"], headline=sel["headline"],
                                                                 selected_lr=sel["selected_lr"])
    for f in sorted(study_dir.rglob("*.json")):
        if f.parent.name == "selected" or f.name.startswith("."):
            continue
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        st = rec.get("study") or {}
        key = (rec.get("model"), rec.get("task"), rec.get("method"))
        if rec.get("status") != "ok" or key not in out:
            continue
        if st.get("role") == "trial" and not (rec.get("train") or {}).get("stop_after_epochs"):
            out[key]["trials"][int(st["trial_index"])] = rec
        elif st.get("role") == "final" and not st.get("copied_from"):
            out[key]["finals"].append(rec)
    return dict(out)


def replay(p: dict, eta: int, rung: int) -> dict:
    grid, trials = p["grid"], p["trials"]
    epochs = int(next(iter(trials.values()))["train"]["epochs"])
    keys = record_selection_keys(next(iter(trials.values())))  # the study's selection score (#25)
    final = [selection_score(keys, trials[i]["selection_metrics"]) if i in trials else None for i in range(len(grid))]
    first = [selection_score(keys, trials[i]["metrics_per_epoch"][rung - 1]["metrics"]) if i in trials else None
             for i in range(len(grid))]
    ex_lr, ex_i = choose(grid, final)
    kept = promote(first, survivors(len(grid), eta))
    pr_lr, pr_i = choose(grid, [final[i] if i in kept else None for i in range(len(grid))])
    secs = {i: float(trials[i]["time"]["train_s"]) for i in trials}
    ex_epochs = len(trials) * epochs
    pr_epochs = len(trials) * rung + len(kept) * (epochs - rung)  # promoted trials continue from their rung
    ex_s = sum(secs.values())
    pr_s = sum(s * rung / epochs for s in secs.values()) + sum(secs[i] * (epochs - rung) / epochs for i in kept)
    finals_s = sum(float(r["time"]["train_s"]) for r in p["finals"])
    return {"epochs": epochs, "exhaustive_lr": ex_lr, "pruned_lr": pr_lr, "same": ex_i == pr_i,
            "score_loss": final[ex_i] - final[pr_i], "promoted": kept,
            "trial_epochs_exhaustive": ex_epochs, "trial_epochs_pruned": pr_epochs,
            "trial_s_exhaustive": ex_s, "trial_s_pruned": pr_s, "finals_s": finals_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("--eta", type=int, nargs="+", default=[3])
    ap.add_argument("--rungs", type=int, nargs="+", default=[1])
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv)
    protocols = {k: v for k, v in load(args.study_dir).items() if v.get("grid") and v["trials"]}
    if not protocols:
        print(f"no exhaustive study protocols under {args.study_dir} (selected/*.json + trial records)")
        return 1
    rows = []
    for eta in args.eta:
        for rung in args.rungs:
            for (model, task, method), p in sorted(protocols.items()):
                r = replay(p, eta, rung)
                if rung >= r["epochs"]:
                    continue
                rows.append({"model": model, "task": task, "method": method, "eta": eta, "rung_epochs": rung, **r})
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    print(f"{'task':6s} {'method':14s} {'eta':>3s} {'rung':>4s} {'exhaustive lr':>13s} {'pruned lr':>10s} "
          f"{'same':>5s} {'score loss':>10s} {'trial epochs':>13s} {'trial s':>15s}")
    for r in rows:
        print(f"{r['task']:6s} {r['method']:14s} {r['eta']:3d} {r['rung_epochs']:4d} {r['exhaustive_lr']:13.3g} "
              f"{r['pruned_lr']:10.3g} {'yes' if r['same'] else 'NO':>5s} {r['score_loss']:10.4f} "
              f"{r['trial_epochs_pruned']:5d} / {r['trial_epochs_exhaustive']:<5d} "
              f"{r['trial_s_pruned']:6.0f} / {r['trial_s_exhaustive']:<6.0f}")
    print()
    for eta in args.eta:
        for rung in args.rungs:
            g = [r for r in rows if r["eta"] == eta and r["rung_epochs"] == rung]
            if not g:
                continue
            ep = 1 - sum(r["trial_epochs_pruned"] for r in g) / sum(r["trial_epochs_exhaustive"] for r in g)
            ts_ex, ts_pr = sum(r["trial_s_exhaustive"] for r in g), sum(r["trial_s_pruned"] for r in g)
            fin = sum(r["finals_s"] for r in g)
            print(f"eta {eta}, rung {rung} epoch(s): same rate in {sum(r['same'] for r in g)}/{len(g)} protocols "
                  f"(largest selection-score loss {max(r['score_loss'] for r in g):.4f}); trial epochs saved {ep:.0%}; "
                  f"trial train seconds {ts_pr:.0f} vs {ts_ex:.0f} (saved {1 - ts_pr / ts_ex:.0%}); whole study incl. "
                  f"the {fin:.0f} s of seed reruns: saved {1 - (ts_pr + fin) / (ts_ex + fin):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
