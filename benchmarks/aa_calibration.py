"""A/A calibration of the method verdicts: how often do two labels of the *same* method and settings
come out better/worse?

Reads one or more results folders (searched recursively; e.g. the catalogue and extra seeds of its
final cells run into another folder) and groups ok, non-trial records with per-example predictions by
(model, task, method, settings): the config hash with the seed set to 0, so records of one cell that
differ only in their seed fall together whatever their sweep or label. Every seed is the same method
with the same settings, so any directional verdict between two disjoint groups of its seeds is a false
one. Per group:

- n >= 4 seeds: every distinct split into two disjoint halves of n//2 seeds (10 for 6 seeds; with an
  odd n one seed sits out, in turn). Each split is judged by
  * the seeds-pooled paired bootstrap over examples (what the report used to call the method verdict),
  * the seed-aware two-level bootstrap (bench.analysis.two_level.seed_aware) with the halves' seed numbers
    as they are (different numbers: unpaired), and with half B relabelled to half A's numbers (paired
    blocks; under A/A the blocks carry no shared training subset, so this is the paired mode's
    null without its usual positive correlation), and without the small-sample rescaling,
  * the gate's paired test (bench.regress.paired) in its default design (seeds+examples) and the
    two-level design, half A as baseline and half B as candidate, direction `higher`, fails() with
    alpha 0.05 and min_effect 0.005 (a single cell, so Holm changes nothing).
- n >= 2 seeds: every disjoint pair of single seeds (1 vs 1) under the pooled test: how often two
  trained models of one method are called different (the seed-aware test gives no verdict there).

- `--simulate R` (groups with >= 3 seeds, e.g. the 3-seed catalogue): R simulated A/A comparisons of
  k vs k seeds (k = the group's seed count), every seed drawn afresh from one generator built on the
  real predictions: a real seed picked at random, with `--jitter` (default 5 %) of its examples
  replaced by another real seed's predictions on them. Both labels draw from the same generator, so
  the null holds exactly *for that generator*; its seed population is the real seeds (clustered
  around them, bimodal where the real seeds are), not the method's. This is a check of the
  procedure at the real example sizes, metric and seed spread, not an A/A of the method: a
  disjoint A/A of a method needs >= 4 real seeds (above), and with 3 there is none.

A directional verdict is the report's rule for one comparison: p < alpha and the 95 % interval
excludes 0 (no Holm: one comparison per split). Rates come with Clopper-Pearson 95 % intervals; the
splits of one group share seeds, so they are not independent trials and the intervals are too narrow:
read them as counts. `python -m benchmarks.aa_calibration results/catalogue /tmp/stats40/aa --b 2000`
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import beta

from bench.analysis import example_bootstrap, resampled_metrics, two_level
from bench.records.schema import config_hash, load_predictions, load_records
from bench.regress.paired import components, fails, finish

ALPHA = 0.05
COLUMNS = ("pooled", "seed-aware", "seed-aware percentile", "seed-aware paired", "seed-aware no rescale",
           "gate seeds+examples", "gate two-level")
SIM_COLUMNS = ("pooled", "seed-aware", "seed-aware percentile", "seed-aware paired")


def rate(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return f"{k}/{n} = {100 * k / n:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


def settings_key(rec: dict) -> str:
    cfg = dict(rec.get("config") or {})
    cfg["train"] = dict(cfg.get("train") or {}, seed=0)
    return config_hash(cfg)[:12]


def groups(folders: list[Path]) -> dict[tuple, dict[int, tuple]]:
    """{(model, task, method, settings): {seed: (ids, predictions, references, headline metric)}}."""
    out: dict[tuple, dict[int, tuple]] = defaultdict(dict)
    for folder in folders:
        for rec in load_records(folder)[0]:
            if rec.get("status") != "ok" or not rec.get("predictions") or (rec.get("study") or {}).get("role") == "trial":
                continue
            try:
                data = load_predictions(rec)
            except ValueError as exc:
                print(f"skipped {rec.get('run_id')}: {exc}")
                continue
            main = next((sp for sp in data["splits"].values() if isinstance(sp, dict)
                         and sp.get("role", "eval") == "eval" and not sp.get("metric_suffix")), None)
            if main is None or rec.get("headline_metric") not in resampled_metrics.METRICS:
                continue
            key = (rec["model"], rec["task"], rec["method"], settings_key(rec))
            out[key][int(rec["seed"])] = (np.asarray(main["ids"]), np.asarray(main["predictions"], float),
                                          np.asarray(main["references"], float), rec["headline_metric"])
    return out


def aligned(by_seed: dict[int, tuple]) -> tuple[str, np.ndarray, dict[int, np.ndarray]]:
    ids = sorted(set.intersection(*(set(v[0].tolist()) for v in by_seed.values())))
    preds, ref = {}, None
    for s, (r_ids, p, r_ref, _) in sorted(by_seed.items()):
        pos = {int(x): i for i, x in enumerate(r_ids.tolist())}
        order = np.array([pos[int(x)] for x in ids])
        preds[s], ref = p[order], r_ref[order] if ref is None else ref
    return next(iter(by_seed.values()))[3], ref, preds


def splits(seeds: list[int]) -> list[tuple[list[int], list[int]]]:
    """Every distinct split into two disjoint halves of len//2 seeds (unordered: A|B counted once)."""
    h, seen, out = len(seeds) // 2, set(), []
    for a in itertools.combinations(seeds, h):
        for b in itertools.combinations([s for s in seeds if s not in a], h):
            key = frozenset((a, b))
            if key not in seen:
                seen.add(key)
                out.append((list(a), list(b)))
    return out


def directional(p: float, low: float, high: float) -> bool:
    return bool(np.isfinite(p) and p < ALPHA and (low > 0 or high < 0))


def judge_split(metric: str, ref: np.ndarray, preds: dict, full: dict, mat: dict, a: list, b: list,
                n_boot: int) -> dict[str, bool]:
    """Whether each test of COLUMNS calls half a vs half b different."""
    fa, fb = np.array([full[s] for s in a]), np.array([full[s] for s in b])
    ma, mb = np.array([mat[s] for s in a]), np.array([mat[s] for s in b])
    n = len(ref)
    pooled = example_bootstrap.paired_from_samples(float(fa.mean() - fb.mean()), ma.mean(0) - mb.mean(0), n)
    out = {"pooled": directional(pooled.p, pooled.low, pooled.high)}
    for col, sb, rescale, cal in (("seed-aware", b, True, "t"), ("seed-aware percentile", b, True, "percentile"),
                                  ("seed-aware paired", a, True, "t"), ("seed-aware no rescale", b, False, "t")):
        r = two_level.seed_aware(metric, a, sb, fa, fb, ma, mb, n, seed=0, rescale=rescale, calibration=cal)
        out[col] = directional(r.p, r.low, r.high)
    c = components(metric, ref, {s: preds[s] for s in a}, {s: preds[s] for s in b}, n_boot=n_boot,
                   rng_seed=hash((tuple(a), tuple(b))) % 2**31, two_level=True)
    for design in ("seeds+examples", "two-level"):
        res = finish(c, design, "higher") if not isinstance(c, str) else c
        out[f"gate {design}"] = (not isinstance(res, str)) and fails(res, ALPHA, 0.005, "higher")
    return out


def simulate(metric: str, ref: np.ndarray, preds: dict, reps: int, jitter: float, b: int,
             rng: np.random.Generator) -> dict[str, int]:
    """False directional verdicts of the pooled and seed-aware tests over `reps` simulated A/A splits."""
    real = np.array([preds[s] for s in sorted(preds)])
    k, n = real.shape
    idx = resampled_metrics.resample_indices(n, b, 0)
    hits = defaultdict(int)
    for _ in range(reps):
        sims = []
        for _ in range(2 * k):
            base, other = rng.choice(k, 2, replace=False)
            p = real[base].copy()
            swap = rng.random(n) < jitter
            p[swap] = real[other][swap]
            sims.append(p)
        full, mat = resampled_metrics.seed_matrix(metric, sims, ref, idx)
        fa, fb, ma, mb = full[:k], full[k:], mat[:k], mat[k:]
        pooled = example_bootstrap.paired_from_samples(float(fa.mean() - fb.mean()), ma.mean(0) - mb.mean(0), n)
        hits["pooled"] += directional(pooled.p, pooled.low, pooled.high)
        unpaired = list(range(k, 2 * k))
        for col, sb, cal in (("seed-aware", unpaired, "t"), ("seed-aware percentile", unpaired, "percentile"),
                             ("seed-aware paired", list(range(k)), "t")):
            r = two_level.seed_aware(metric, list(range(k)), sb, fa, fb, ma, mb, n, calibration=cal)
            hits[col] += directional(r.p, r.low, r.high)
    return hits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="aa_calibration.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+", help="results folder(s), searched recursively")
    ap.add_argument("--b", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--min-seeds", type=int, default=4, help="seeds a group needs for the split-half A/A")
    ap.add_argument("--simulate", type=int, default=0, help="simulated A/A comparisons per group (0: none)")
    ap.add_argument("--jitter", type=float, default=0.05, help="share of examples a simulated seed takes from "
                    "another real seed")
    ap.add_argument("--methods", default="", help="comma-separated methods to keep (default: all)")
    a = ap.parse_args(argv)
    t0 = time.time()
    found = groups(a.results)
    keep = {m for m in a.methods.split(",") if m}
    found = {k: v for k, v in found.items() if not keep or k[2] in keep}
    if not found:
        print(f"aa_calibration: no readable result records with predictions under {', '.join(map(str, a.results))}")
        return 2
    totals, one_v_one = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    print("| task | method | seeds | splits | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---:|---:|" + "---|" * len(COLUMNS))
    for (model, task, method, _), by_seed in sorted(found.items()):
        metric, ref, preds = aligned(by_seed)
        idx = resampled_metrics.resample_indices(len(ref), a.b, 0)
        seeds = sorted(preds)
        f_all, m_all = resampled_metrics.seed_matrix(metric, [preds[s] for s in seeds], ref, idx)
        full, mat = dict(zip(seeds, f_all)), dict(zip(seeds, m_all))
        for s1, s2 in itertools.combinations(seeds, 2):
            r = example_bootstrap.paired_from_samples(full[s1] - full[s2], mat[s1] - mat[s2], len(ref))
            one_v_one[task][0] += directional(r.p, r.low, r.high)
            one_v_one[task][1] += 1
        if len(seeds) < a.min_seeds:
            continue
        counts = defaultdict(int)
        sp = splits(seeds)
        for half_a, half_b in sp:
            for col, hit in judge_split(metric, ref, preds, full, mat, half_a, half_b, a.b).items():
                counts[col] += hit
        for col in COLUMNS:
            totals[(task, col)][0] += counts[col]
            totals[(task, col)][1] += len(sp)
            totals[("all", col)][0] += counts[col]
            totals[("all", col)][1] += len(sp)
        print(f"| {task} | {method} | {len(seeds)} | {len(sp)} | " + " | ".join(rate(counts[c], len(sp)) for c in COLUMNS)
              + " |")
    for task in sorted({t for t, _ in totals}):
        print(f"| **{task}** | all | | | " + " | ".join(rate(*totals[(task, c)]) for c in COLUMNS) + " |")
    if a.simulate:
        print(f"\nSimulated A/A (k vs k seeds from the real seeds, {100 * a.jitter:g} % jitter, B={a.b}):")
        print("| task | method | seeds | comparisons | " + " | ".join(SIM_COLUMNS) + " |")
        print("|---|---|---:|---:|" + "---|" * len(SIM_COLUMNS))
        sim_tot = defaultdict(lambda: [0, 0])
        rng = np.random.default_rng(0)
        for (model, task, method, _), by_seed in sorted(found.items()):
            if len(by_seed) < 3:
                continue
            metric, ref, preds = aligned(by_seed)
            hits = simulate(metric, ref, preds, a.simulate, a.jitter, a.b, rng)
            for col in SIM_COLUMNS:
                sim_tot[(task, col)][0] += hits[col]
                sim_tot[(task, col)][1] += a.simulate
            print(f"| {task} | {method} | {len(preds)} | {a.simulate} | " + " | ".join(
                rate(hits[c], a.simulate) for c in SIM_COLUMNS) + " |")
        for task in sorted({t for t, _ in sim_tot}):
            print(f"| **{task}** | all | | | " + " | ".join(
                rate(*sim_tot[(task, c)]) for c in SIM_COLUMNS) + " |")
    print("\nPooled test, one seed against one other seed of the same method and settings (disjoint):")
    for task, (k, n) in sorted(one_v_one.items()):
        print(f"  {task}: {rate(k, n)} called different")
    print(f"\n{len(found)} group(s); B={a.b}; {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
