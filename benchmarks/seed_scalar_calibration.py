"""How often does a seed-level test call a quantity measured once per seed different from itself?

A retention quantity (forgetting, drift, intruder dimensions) is one number per seed, with no
per-example level. The report's metric verdict is a two-level bootstrap (seeds, then examples); without
the example level it degenerates to a bootstrap over the seeds alone. This simulation compares that
seed bootstrap (bench.analysis.two_level.seed_replicates with the √(k/(k−1)) rescaling, null-centred p,
as the metric verdict reads it) with the t-based seed test the retention verdicts use
(bench.analysis.seed_level.seed_scalar: paired t for the same seeds, Welch otherwise) in A/A comparisons:
both sides draw k seeds from one distribution, so every better/worse verdict (p < 0.05 and the 95 %
interval excluding 0, no Holm) is false. Distributions: normal, and normal with one seed in five
replaced by a far outlier ("bad seed": the collapse-like seeds of the catalogue). Paired: the two
sides share each seed's draw of a seed effect (sd 1) plus their own noise (sd 1).

    python -m benchmarks.seed_scalar_calibration --reps 2000 --b 1000

Prints a Markdown table of false-verdict rates with Clopper-Pearson 95 % intervals; every number is
computed here (docs/decisions.md cites the table).
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as sps

from bench.analysis import example_bootstrap, multiple_comparisons, seed_level, two_level


def _draws(rng: np.random.Generator, k: int, paired: bool, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """One A/A pair of per-seed values (k each)."""
    common = rng.normal(0, 1, k) if paired else np.zeros(k)
    a, b = common + rng.normal(0, 1, k), common + rng.normal(0, 1, k)
    if shape == "bad seed":
        for v in (a, b):
            v[rng.random(k) < 0.2] += 8.0
    return a, b


def false_rates(k: int, paired: bool, shape: str, reps: int, b: int, seed: int = 0) -> tuple[int, int]:
    """(seed bootstrap false verdicts, t false verdicts) over `reps` A/A comparisons."""
    rng = np.random.default_rng(seed)
    seeds_a = list(range(k))
    seeds_b = seeds_a if paired else list(range(100, 100 + k))
    boot = t = 0
    for _ in range(reps):
        a, bb = _draws(rng, k, paired, shape)
        samples, _ = two_level.seed_replicates(seeds_a, seeds_b, np.repeat(a[:, None], b, 1),
                                               np.repeat(bb[:, None], b, 1),
                                               np.random.default_rng(int(rng.integers(1 << 31))))
        r = example_bootstrap.paired_from_samples(float(a.mean() - bb.mean()), samples, 0)
        boot += multiple_comparisons.significant(r.p, r.low, r.high)
        st = seed_level.seed_scalar("retention.forgetting", seeds_a, seeds_b, a, bb)
        t += multiple_comparisons.significant(st.p, st.low, st.high)
    return boot, t


def _rate(x: int, n: int) -> str:
    lo = sps.beta.ppf(0.025, x, n - x + 1) if x else 0.0
    hi = sps.beta.ppf(0.975, x + 1, n - x) if x < n else 1.0
    return f"{x}/{n} = {100 * x / n:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="A/A comparisons per row (default 2000)")
    ap.add_argument("--b", type=int, default=1000, help="bootstrap replicates (default 1000)")
    ap.add_argument("--seeds", default="2,3,5", help="seeds per side, comma-separated (default 2,3,5)")
    a = ap.parse_args(argv)
    print("| seeds per side | pairing | per-seed values | seed bootstrap (two-level without examples) | "
          "t over seeds (the retention verdicts) |")
    print("|---:|---|---|---|---|")
    for k in (int(x) for x in a.seeds.split(",")):
        for paired in (True, False):
            for shape in ("normal", "bad seed"):
                boot, t = false_rates(k, paired, shape, a.reps, a.b)
                print(f"| {k} | {'paired' if paired else 'unpaired'} | {shape} | {_rate(boot, a.reps)} | "
                      f"{_rate(t, a.reps)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
