"""Split-half replication of the method verdicts: do two halves of the seeds say the same thing?

`python -m bench.report.replicate RESULTS_DIR [--reference lora] [--test seed-aware|pooled]` splits
the seeds of each (model, task) into two halves (the sorted seed numbers alternately: 0, 2, 4, ... and
1, 3, 5, ..., so every method's half holds the same seed numbers and seed k still pairs with seed k),
recomputes the report's paired tests on each half separately (bench.report.verdicts, Holm within each
half) and compares the directional verdicts (better / worse) of the halves: a verdict that the other
half reverses is a contradiction, and one that the other half does not reach is not replicated.

Why: a verdict is worth what it predicts about the next seeds. The seed-aware test needs 2 seeds per
method in each half (>= 4 seeds in all); with fewer, `--test pooled` compares the halves' seeds-pooled
verdicts, which speak for the trained models of each half only (docs/statistics.md). Reads records
only; writes replicate.csv to --out when given and prints the summary.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import resampled_metrics
from bench.analysis.aggregate import build
from bench.records.schema import load_records

from .verdicts import DIRECTIONAL, _load, _pairs_for_task

COLUMNS = ["model", "task", "method_a", "method_b", "seeds_1", "seeds_2", "delta_1", "delta_2", "verdict_1",
           "verdict_2", "agreement"]
SUMMARY_COLUMNS = ["model", "task", "test", "pairs", "directional_1", "directional_2", "replicated", "contradicting",
                   "one_half_only", "agreement"]


def halves(seeds) -> tuple[list[int], list[int]]:
    """The sorted seed numbers split alternately into two halves (the first gets the extra seed)."""
    s = sorted({int(x) for x in seeds})
    return s[0::2], s[1::2]


def _agreement(v1: str, v2: str) -> str:
    d1, d2 = v1 in DIRECTIONAL, v2 in DIRECTIONAL
    if d1 and d2:
        return "replicated" if v1 == v2 else "contradicting"
    return "one half only" if d1 or d2 else "neither"


def split_half(records: list[dict], b: int = resampled_metrics.DEFAULT_B, reference: str | None = None,
               test: str = "seed-aware", margin: float | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """One row per pair and (model, task): each half's delta and verdict, and how they agree."""
    notes = [] if notes is None else notes
    agg = build(records)
    ok = agg.kept[agg.kept["status"] == "ok"]
    preds = _load(ok, notes)
    key = "verdict" if test == "seed-aware" else "pooled_verdict"
    rows = []
    for (model, task), sub in ok.groupby(["model", "task"], sort=True):
        hm = sub["headline_metric"].mode().iloc[0]
        if hm not in resampled_metrics.METRICS:
            continue
        split = halves(sub["seed"])
        per_half = []
        for half in split:
            runs, scores = defaultdict(list), defaultdict(list)
            for r in sub[sub["seed"].isin(half)].itertuples(index=False):
                main = preds.get(r.path, {}).get("")
                if main is not None:
                    runs[r.method_label].append((*main, r.seed))
                    scores[r.method_label].append(r.headline)
            means = {m: float(np.mean(v)) for m, v in scores.items()}
            if reference is not None and reference not in runs:
                notes.append(f"{model}/{task}: reference {reference} has no seed in half {half}; not compared")
                per_half.append({})
                continue
            res = _pairs_for_task(model, task, hm, dict(runs), dict(scores), means, b, notes, margin, reference)
            per_half.append({frozenset((r["method_a"], r["method_b"])): r for r in res})
        for pair in sorted(set(per_half[0]) & set(per_half[1]), key=sorted):
            r1, r2 = per_half[0][pair], per_half[1][pair]
            a, bm = r1["method_a"], r1["method_b"]
            flip = r2["method_a"] != a  # express half 2 as a − b too
            v2 = {"a better": "b better", "b better": "a better"}.get(r2[key], r2[key]) if flip else r2[key]
            rows.append({"model": model, "task": task, "method_a": a, "method_b": bm,
                         "seeds_1": " ".join(map(str, split[0])), "seeds_2": " ".join(map(str, split[1])),
                         "delta_1": r1["delta"], "delta_2": -r2["delta"] if flip else r2["delta"],
                         "verdict_1": r1[key], "verdict_2": v2, "agreement": _agreement(r1[key], v2)})
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(frame: pd.DataFrame, test: str) -> pd.DataFrame:
    """Per (model, task): directional verdicts per half, replicated, contradicting; agreement = replicated
    over the pairs with a directional verdict in either half (NaN when there is none)."""
    rows = []
    for (model, task), g in frame.groupby(["model", "task"], sort=True):
        c = g["agreement"].value_counts()
        either = int(c.get("replicated", 0) + c.get("contradicting", 0) + c.get("one half only", 0))
        rows.append({"model": model, "task": task, "test": test, "pairs": len(g),
                     "directional_1": int(g["verdict_1"].isin(DIRECTIONAL).sum()),
                     "directional_2": int(g["verdict_2"].isin(DIRECTIONAL).sum()),
                     "replicated": int(c.get("replicated", 0)), "contradicting": int(c.get("contradicting", 0)),
                     "one_half_only": int(c.get("one half only", 0)),
                     "agreement": c.get("replicated", 0) / either if either else np.nan})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report.replicate", description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="results folder (searched recursively)")
    ap.add_argument("--reference", default=None, help="compare only the pairs with this method (e.g. lora)")
    ap.add_argument("--test", choices=("seed-aware", "pooled"), default="seed-aware",
                    help="which verdicts to compare (seed-aware needs >= 2 seeds per method in each half)")
    ap.add_argument("--bootstrap", type=int, default=resampled_metrics.DEFAULT_B, help="bootstrap resamples per half")
    ap.add_argument("--margin", type=float, default=None, help="equivalence margin (default per metric)")
    ap.add_argument("--out", type=Path, default=None, help="folder for replicate.csv and replicate_summary.csv")
    a = ap.parse_args(argv)
    if a.bootstrap < 100:
        ap.error(f"--bootstrap {a.bootstrap}: use at least 100")
    if a.margin is not None and not a.margin > 0:
        ap.error(f"--margin {a.margin}: must be > 0")
    if not a.results.exists():
        print(f"bench.report.replicate: error: results folder {a.results} does not exist", file=sys.stderr)
        return 2
    records = load_records(a.results)[0]
    if not records:
        print(f"bench.report.replicate: error: no readable result records under {a.results}", file=sys.stderr)
        return 2
    notes: list[str] = []
    frame = split_half(records, a.bootstrap, a.reference, a.test, a.margin, notes)
    summary = summarize(frame, a.test)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(a.out / "replicate.csv", index=False)
        summary.to_csv(a.out / "replicate_summary.csv", index=False)
    print(summary.to_string(index=False) if len(summary) else "no pair was tested in both halves")
    bad = frame[frame["agreement"] == "contradicting"]
    print(f"contradicting directional verdicts: {len(bad)}")
    for r in bad.itertuples(index=False):
        print(f"  {r.model}/{r.task}: {r.method_a} vs {r.method_b}: half 1 ({r.seeds_1}) {r.verdict_1} "
              f"{100 * r.delta_1:+.1f}, half 2 ({r.seeds_2}) {r.verdict_2} {100 * r.delta_2:+.1f}")
    for n in notes[:20]:
        print(f"note: {n}")
    if len(notes) > 20:
        print(f"note: {len(notes) - 20} more note(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
