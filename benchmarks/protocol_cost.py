#!/usr/bin/env python3
"""Where a catalogue cell's time goes, and what the tuning protocol of conf/experiment/catalogue.yaml
costs, from a finished study's records (docs/protocol.md, "What the protocol costs"):

    python -m benchmarks.protocol_cost results/catalogue [--trials 6 --initial 4 --seeds 5] [--csv out.csv]

1. Every record's `time` split into: training (`time.train_s`, timed steps), per-epoch selection
   evaluation and loop overhead (the `train` phase minus train_s: the loop evaluates the selection
   split after every epoch, outside train_s), the reported split's evaluation (`time.eval_s`), the
   final selection evaluation (the `eval` phase minus eval_s), and set-up (every other phase: config
   check, data, model build, tokenising, storage, FLOPs, record). Summed per kind of cell (first-rung
   trial, continued trial, seed rerun; a seed-0 final copied from its trial cost nothing).
2. The protocol's projected cost per (task, method) from that row's own measured unit costs (per
   epoch of training and of selection evaluation, per reported-split evaluation, per set-up), with
   the new protocol's cells: `initial` first-rung trials (no reported-split evaluation), the ones the
   first rung keeps (the no-cut rule of bench/sweep/search.py replayed on the recorded first-rung
   predictions) continued to the full length, `trials - initial` search trials at full length, and
   `seeds - 1` seed reruns; the final selection evaluation reused from the best epoch (0 s).
   Wall time = cell-seconds / 2 (two 1-thread cells at a time, as `make catalogue` runs them).
3. The rows at an edge: under the searching protocol the position each study recorded
   (`study.selected_position`: edge or hard limit among every rate tried), under a fixed grid the
   grid's ends (bench/sweep/search.position) and whether the first-rung scores still rise toward them;
   and the rows whose chosen rate failed the stability check (`study.stability`).
Times are scaled to a quiet machine where the record has its CPU time (quiet_factor);
`--reference-csv` scales a finished study's projection by the rows measured so far.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

from bench.records.results import cpu_per_thread
from bench.records.schema import read_record
from bench.sweep.search import position
from bench.sweep.study import first_rung_cut

PARTS = ("train", "selection_per_epoch", "reported_eval", "selection_final", "setup")
PARALLEL = 2  # cells at a time in `make catalogue` (train.threads=1, n_jobs = 2 cores)


def quiet_factor(rec: dict) -> float:
    """What share of a cell's wall time it would have taken on a quiet machine: its CPU time per thread
    over its wall time (schema 5 `time.cpu_s`), at most 1. A cell paused (SIGSTOP, a suspended machine)
    or sharing its core records wall time it did not compute in; a 1-thread cell on a core of its own
    computes the whole time (CPU ~ wall, measured: 71 vs 72 s). 1 for records without cpu_s."""
    cpu, wall = cpu_per_thread(rec), rec["time"].get("total_s")
    return 1.0 if cpu is None or not wall else min(1.0, cpu / float(wall))


def split_time(rec: dict) -> dict:
    """One record's seconds by part (PARTS) and the epochs it trained, each scaled to a quiet machine
    (quiet_factor)."""
    t, tr = rec["time"], rec["train"]
    ph = t.get("phases_s") or {}
    epochs = tr.get("stop_after_epochs") or (int(tr["epochs"]) - int(tr.get("continued_from_epoch") or 0))
    setup = sum(v for k, v in ph.items() if k not in ("train", "eval"))
    q = quiet_factor(rec)
    parts = {"train": t["train_s"], "selection_per_epoch": ph.get("train", 0.0) - t["train_s"],
             "reported_eval": t["eval_s"], "selection_final": ph.get("eval", 0.0) - t["eval_s"],
             "setup": setup, "total": t["total_s"]}
    return {**{k: v * q for k, v in parts.items()}, "wall": t["total_s"], "epochs": epochs,
            "cpu_known": cpu_per_thread(rec) is not None}


def kind_of(rec: dict) -> str | None:
    st = rec.get("study") or {}
    if st.get("role") == "trial":
        return "first-rung trial" if st.get("rung") == 1 else "continued trial"
    if st.get("role") == "final":
        return None if st.get("copied_from") else "seed rerun"
    return None


def load(study: Path) -> tuple[list[dict], dict]:
    """(rows of timed cells, {(task, method): {"rung": [paths by trial index], "final": a final record}})."""
    cells, rows = [], defaultdict(lambda: {"rung": {}, "final": None})
    for f in sorted(study.rglob("*.json")):
        if f.parent.name == "selected" or f.name.startswith("."):
            continue
        try:
            rec = read_record(f)
        except ValueError:
            continue
        if rec.get("status") != "ok":
            continue
        key, st = (rec["task"], rec["method"]), rec.get("study") or {}
        if st.get("rung") == 1:
            rows[key]["rung"][int(st["trial_index"])] = f
        if st.get("role") == "final":
            rows[key]["final"] = rec
        kind = kind_of(rec)
        if kind:
            cells.append({"task": rec["task"], "method": rec["method"], "kind": kind, **split_time(rec)})
    return cells, dict(rows)


def unit_costs(frame: pd.DataFrame) -> dict:
    """A (task, method)'s measured seconds per epoch of training and of selection evaluation, per
    reported-split evaluation, per set-up (medians over its cells)."""
    full = frame[frame["kind"] != "first-rung trial"]
    ep = frame["epochs"].clip(lower=1)
    return {"train_epoch": float((frame["train"] / ep).median()),
            "select_epoch": float((frame["selection_per_epoch"] / ep).median()),
            "reported_eval": float(full["reported_eval"].median()),
            "setup": float(frame["setup"].median()),
            "selection_final": float(frame["selection_final"].median())}


def row_cost(u: dict, epochs: int, initial: int, kept: int, search: int, seeds: int, k: int = 1) -> dict:
    """Seconds of one (task, method) under the protocol, by part."""
    per_epoch = u["train_epoch"] + u["select_epoch"]
    full_cells = kept + search + (seeds - 1)
    return {"first_rung": initial * (u["setup"] + k * per_epoch),
            "continued": kept * (u["setup"] + (epochs - k) * per_epoch + u["reported_eval"]),
            "search": search * (u["setup"] + epochs * per_epoch + u["reported_eval"]),
            "seeds": (seeds - 1) * (u["setup"] + epochs * per_epoch + u["reported_eval"]),
            "cells": initial + full_cells}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--initial", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--eta", type=int, default=4)
    ap.add_argument("--noise-z", type=float, default=2.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reference-csv", type=Path,
                    help="a finished study's --csv output (its rows projected under this protocol from its own unit "
                         "costs): the rows measured here scale that projection to the whole study")
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv)
    cells, rows = load(args.study)
    if not cells:
        print(f"{args.study}: no timed study records")
        return 1
    frame = pd.DataFrame(cells)
    hours = frame[list(PARTS)].sum() / 3600
    print(f"{args.study}: {len(frame)} timed cells, {frame['total'].sum() / 3600:.2f} cell-hours "
          f"(sum of time.total_s scaled to a quiet machine; {frame['total'].sum() / 3600 / PARALLEL:.2f} h at "
          f"{PARALLEL} cells a time)")
    print("where the time goes (cell-hours): " + ", ".join(f"{p} {hours[p]:.2f}" for p in PARTS)
          + f", unattributed {frame['total'].sum() / 3600 - hours.sum():.2f}")
    by_kind = frame.groupby("kind")[[*PARTS, "total"]].sum() / 3600
    by_kind["cells"] = frame.groupby("kind").size()
    print(by_kind.round(3).to_string())

    out, edges, rising, kept_counts, unstable = [], 0, 0, [], 0
    for (task, method), r in sorted(rows.items()):
        mine = frame[(frame["task"] == task) & (frame["method"] == method)]
        fin = r["final"] or {}
        st = fin.get("study") or {}
        if mine.empty or not st:
            continue
        grid, rung = st["lr_grid"], (st.get("pruning") or {}).get("rung_scores")
        paths = [r["rung"].get(i) for i in range(len(grid))]
        kept, why, _ = (first_rung_cut(paths, rung, max(1, len(grid) // args.eta), args.noise_z)
                        if rung and all(paths) else (list(range(len(grid))), "no first rung", {}))
        kept_counts.append(len(kept))
        searched = bool(st.get("selected_position"))
        if searched:  # the searching protocol recorded where its choice lies among every rate it tried
            where = st["selected_position"]
            stab = st.get("stability") or {}
            unstable += bool(stab.get("rejected")) or not stab.get("stable", True)
        else:  # a fixed grid: the recorded choice against the grid's ends
            scores = [None] * len(grid)
            scores[st["selected_trial"]] = 1.0
            where = position(grid, scores, None, extended=False)
        up = None
        if where["position"] in ("edge", "hard_limit") and searched:
            edges += 1
        elif where["position"] == "edge" and rung:
            edges += 1
            i = st["selected_trial"]
            j = i - 1 if where["side"] == "high" else i + 1
            up = rung[i] is not None and rung[j] is not None and rung[i] > rung[j]
            rising += bool(up)
        u = unit_costs(mine)
        new = row_cost(u, args.epochs, args.initial, len(kept), args.trials - args.initial, args.seeds)
        projected = sum(v for k, v in new.items() if k != "cells")
        # quiet_s: a row with a cell that lacks its CPU time (records before schema 5) may hold paused wall
        # time: its own unit costs (medians) stand in for its sum
        known = bool(mine["cpu_known"].all())
        out.append({"task": task, "method": method, "measured_s": float(mine["total"].sum()),
                    "quiet_s": float(mine["total"].sum()) if known else projected, "estimated": not known,
                    "projected_s": projected, **new, **u,
                    "kept_after_rung": len(kept), "cut": why, "old_position": where["position"],
                    "old_side": where["side"], "rung_rises_to_edge": up})
    table = pd.DataFrame(out)
    n = len(table)
    at_edge = table[table["old_position"].isin(["edge", "hard_limit"])]
    print(f"\nrows: {n}; chosen rate at an edge of the rates tried: {len(at_edge)} of {n} "
          f"({100 * len(at_edge) / max(n, 1):.0f} %; {sum(at_edge['old_side'] == 'high')} at the top"
          + (f"; {sum(at_edge['old_position'] == 'hard_limit')} at the search's hard limit" if len(at_edge) else "")
          + f"); first-rung scores still rising toward a grid edge: {rising}"
          + (": " + ", ".join(f"{t}/{m} ({pos}, {side})" for t, m, pos, side in
                              zip(at_edge["task"], at_edge["method"], at_edge["old_position"], at_edge["old_side"]))
             if len(at_edge) else ""))
    print(f"rows whose chosen rate failed the stability check (study.stability): {unstable}")
    wall, quiet = frame["wall"].sum() / 3600, frame["total"].sum() / 3600
    print(f"wall time recorded {wall:.2f} cell-h, on a quiet machine (CPU per thread, capped at wall) "
          f"{quiet:.2f} cell-h: the difference is time the cells waited (pauses, a shared core)")
    print(f"first rung replayed with the no-cut rule (z = {args.noise_z}, keep "
          f"{max(1, args.initial // args.eta)}): trials kept per row: median {statistics.median(kept_counts)}, "
          f"mean {statistics.mean(kept_counts):.2f}; "
          f"rows that cut nothing: {sum(k == args.initial for k in kept_counts)}; rows that keep 1: "
          f"{sum(k == 1 for k in kept_counts)}")
    meas, proj = table["measured_s"].sum() / 3600, table["projected_s"].sum() / 3600
    if args.reference_csv and n:
        ref = pd.read_csv(args.reference_csv)
        both = table.merge(ref[["task", "method", "projected_s"]], on=["task", "method"], suffixes=("", "_ref"))
        ratio = both["quiet_s"].sum() / both["projected_s_ref"].sum()
        whole = ref["projected_s"].sum() / 3600
        print(f"measured so far: {table['quiet_s'].sum() / 3600:.2f} quiet cell-h over {n} rows "
              f"({int(table['estimated'].sum())} from their "
              f"unit costs: cells without CPU time); the same {len(both)} rows projected from {args.reference_csv}: "
              f"{both['projected_s_ref'].sum() / 3600:.2f} cell-h, ratio {ratio:.2f}; the whole study "
              f"({len(ref)} rows) at that ratio: {ratio * whole:.1f} cell-h = {ratio * whole / PARALLEL:.1f} h at "
              f"{PARALLEL} cells a time (projection {whole:.1f} cell-h)")
    parts = {p: table[p].sum() / 3600 for p in ("first_rung", "continued", "search", "seeds")}
    print(f"protocol: {args.trials} trials ({args.initial} initial + {args.trials - args.initial} placed), "
          f"{args.seeds} seeds, no reported-split evaluation on the first rung, selection reused from the "
          f"best epoch:\n  measured (recorded protocol) {meas:.2f} cell-h = {meas / PARALLEL:.2f} h; "
          f"projected "
          f"{proj:.2f} cell-h = {proj / PARALLEL:.2f} h wall at {PARALLEL} cells a time ("
          + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
          + f" cell-h; {int(table['cells'].sum())} cells)")
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
