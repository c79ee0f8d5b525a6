"""How often does the gate's paired test fail healthy code, and how often does it catch a drop?

Reads a results folder in which each cell ran many seeds with per-example predictions (schema-2
records), e.g.

    python -m bench -m task=sst2 method=lora train.max_train_samples=1000 train.epochs=3 train.threads=1 \\
        train.seed=0,1,2,3,4,5,6,7,8,9 results_dir=/tmp/gate_aa sweep_name=minilm_sst2_lora
    python -m benchmarks.gate_aa /tmp/gate_aa/minilm_sst2_lora --n-base 3 --n-cand 3

and forms random disjoint baseline/candidate splits of those seeds. Why splits of one pool: every
seed is healthy code, so any gate failure between two disjoint groups is a false alarm, measured
on the real seed-to-seed spread rather than an assumed one. Scenarios (per cell, per split):

- A/A other seeds: baseline seeds B vs candidate seeds C (seed numbers differ: `unmatched`);
- A/A same seed numbers: C relabelled with B's numbers (`matched`), i.e. a healthy change that
  consumes random numbers differently, so the same seed no longer replays the same run;
- power, other seeds, drop d: C with round(d * N) of each seed's correct dev predictions flipped to
  wrong (a 1-point accuracy drop for d = 0.01), fresh random flips per split;
- power, same seeds, drop d: B's own predictions degraded the same way (a deterministic rerun of a
  regressed code: every seed replays except for the harm).

Each is judged by every variance design of bench.regress.paired (the gate's default is
`seeds+examples`), by the existing per-cell rule (delta beyond max(floor, k x pooled std)), and by
the gate as it runs (rule OR default design). Rates come with Clopper-Pearson 95% intervals; the
splits share seeds, so they are not independent trials and the intervals are too narrow - read
them as "how many splits", not as a sampling guarantee. With several cells, `whole gate` rows
apply Holm across the cells of one split, as `check` does. Every number printed is computed here.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

from bench.regress.cells import UnusableInput, load_results, summarize
from bench.regress.check import Settings, metric_tolerance
from bench.regress.paired import DESIGNS, components, fails, finish, holm, stable_seed
from bench.regress.predictions import align, record_seed_data


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def rate(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def load_cells(results_dir: Path, need: int) -> dict:
    """{cell id: (metric, refs, {seed: preds})} for cells with at least `need` seeds with predictions."""
    records, _ = load_results(results_dir)
    cells, _ = summarize(records)
    out = {}
    for cid, c in sorted(cells.items()):
        data, metric, _, problems = record_seed_data(c.get("_records", []), c["headline_metric"])
        if len(data) < need:
            print(f"skipped {cid}: {len(data)} seed(s) with predictions, need {need}"
                  + (f" ({problems[0]})" if problems else ""))
            continue
        aligned = align(data, {})  # every seed restricted to the ids all seeds have
        if isinstance(aligned, str):
            print(f"skipped {cid}: {aligned}")
            continue
        refs, preds, _, _ = aligned
        out[cid] = (metric, refs, preds)
    return out


def degrade(preds: np.ndarray, refs: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """Flip round(drop * N) correct predictions to a wrong class (binary: the other class)."""
    p = preds.copy()
    correct = np.flatnonzero(p == refs)
    k = min(len(correct), round(drop * len(refs)))
    pick = rng.choice(correct, size=k, replace=False)
    classes = np.unique(refs)
    for i in pick:
        others = classes[classes != refs[i]]
        p[i] = others[rng.integers(len(others))] if len(others) else p[i]
    return p


def rule_fails(vb: list[float], vc: list[float], st: Settings) -> bool:
    """The existing per-cell metric rule on the same seeds: delta beyond max(floor, k x pooled std)."""
    def stat(v):
        return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}
    bs, cs = stat(vb), stat(vc)
    tol, _ = metric_tolerance(bs, cs, st)
    delta = cs["mean"] - bs["mean"]
    return delta < -tol or (st.direction == "both" and delta > tol)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--n-base", type=int, default=3)
    ap.add_argument("--n-cand", type=int, default=3)
    ap.add_argument("--splits", type=int, default=200, help="random disjoint splits per scenario")
    ap.add_argument("--drops", default="0.01,0.02,0.03", help="accuracy drops for the power rows ('' = none)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--min-effect", type=float, default=0.005)
    ap.add_argument("--k", type=float, default=3.0)
    ap.add_argument("--floor", type=float, default=0.01)
    ap.add_argument("--direction", choices=("higher", "both"), default="higher")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="RNG seed of the splits and the flips")
    a = ap.parse_args(argv)
    t0 = time.time()
    st = Settings(k=a.k, floor=a.floor, direction=a.direction, alpha=a.alpha, min_effect=a.min_effect)
    try:
        cells = load_cells(a.results_dir, a.n_base + a.n_cand)
    except UnusableInput as exc:
        print(f"gate_aa: {exc}", file=sys.stderr)
        return 2
    if not cells:
        print(f"no cell of {a.results_dir} has {a.n_base + a.n_cand} seeds with predictions", file=sys.stderr)
        return 2
    rng = np.random.default_rng(a.seed)
    drops = [float(x) for x in a.drops.split(",") if x.strip()]
    print(f"results: {a.results_dir}; {len(cells)} cell(s); splits {a.n_base} baseline vs {a.n_cand} candidate seeds; "
          f"alpha {a.alpha:g}, min effect {a.min_effect:g}, direction {a.direction}, rule max({a.floor:g}, {a.k:g} x "
          f"pooled std), bootstrap {a.n_boot}")
    for cid, (metric, refs, preds) in cells.items():
        vals = [components(metric, refs, {s: p}, {s: p}, bootstrap=False).per_seed_base[s] for s, p in preds.items()]
        print(f"  {cid}: {metric} over {len(preds)} seeds on {len(refs)} examples: mean {np.mean(vals):.4f}, "
              f"sd {np.std(vals, ddof=1):.4f}, range {min(vals):.4f}-{max(vals):.4f}")
    scenarios = [("A/A other seeds", None, False), ("A/A same seed numbers", None, True)]
    scenarios += [(f"power, other seeds, drop {d:g}", d, False) for d in drops]
    scenarios += [(f"power, same seeds, drop {d:g}", d, "rerun") for d in drops]
    cols = list(DESIGNS) + ["rule", "gate"]
    print()
    for name, drop, mode in scenarios:
        if mode is True and a.n_base != a.n_cand:
            continue
        counts = {cid: {c: 0 for c in cols} for cid in cells}
        whole = {c: 0 for c in ["seeds+examples", "gate"]}
        ses = {cid: [] for cid in cells}
        n_ok = 0
        all_seeds = sorted({s for _, _, preds in cells.values() for s in preds})
        for _ in range(a.splits):
            tested = {}
            order = [all_seeds[i] for i in rng.permutation(len(all_seeds))]  # one split for every cell, as in a sweep
            for cid, (metric, refs, preds) in cells.items():
                mine = [s for s in order if s in preds]
                B, C = mine[:a.n_base], mine[a.n_base:a.n_base + a.n_cand]
                base = {s: preds[s] for s in B}
                if mode == "rerun":
                    cand = {s: preds[s] for s in B}
                elif mode is True:
                    cand = {b: preds[c] for b, c in zip(B, C)}
                else:
                    cand = {s: preds[s] for s in C}
                if drop is not None:
                    if metric in ("pearson", "spearmanr"):
                        continue
                    cand = {s: degrade(p, refs, drop, rng) for s, p in cand.items()}
                comp = components(metric, refs, base, cand, a.n_boot, stable_seed(cid), two_level=True)
                res = {d: finish(comp, d, a.direction) for d in DESIGNS}
                tested[cid] = (comp, res)
                ses[cid].append((comp.var_seeds, comp.var_examples))
            if not tested:
                continue
            n_ok += 1
            adj = holm({cid: r["seeds+examples"].p for cid, (_, r) in tested.items()
                        if not isinstance(r["seeds+examples"], str)})
            any_paired = any_gate = False
            for cid, (comp, res) in tested.items():
                for d, r in res.items():
                    if not isinstance(r, str) and fails(r, a.alpha, a.min_effect, a.direction):
                        counts[cid][d] += 1
                rf = rule_fails(list(comp.per_seed_base.values()), list(comp.per_seed_cand.values()), st)
                counts[cid]["rule"] += rf
                dflt = res["seeds+examples"]
                counts[cid]["gate"] += rf or (not isinstance(dflt, str) and fails(dflt, a.alpha, a.min_effect, a.direction))
                if cid in adj:
                    dflt.p_adj = adj[cid]
                    hit = fails(dflt, a.alpha, a.min_effect, a.direction)
                    any_paired |= hit
                    any_gate |= hit or rf
            whole["seeds+examples"] += any_paired
            whole["gate"] += any_gate
        if n_ok == 0:
            continue
        print(f"== {name}: {n_ok} splits")
        for cid in cells:
            if not ses[cid]:
                continue
            vs = np.array(ses[cid])
            print(f"  {cid}  (mean se: seeds {np.sqrt(np.nanmean(vs[:, 0])):.4f}, examples {np.sqrt(np.nanmean(vs[:, 1])):.4f})")
            for c in cols:
                print(f"      {c:<15} fails {rate(counts[cid][c], n_ok)}")
        if len(cells) > 1:
            print(f"  whole gate, Holm over {len(cells)} cells: paired {rate(whole['seeds+examples'], n_ok)}; "
                  f"paired or rule {rate(whole['gate'], n_ok)}")
    print(f"\n(wall time {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
