"""Power: how many seeds per method an undecided comparison would likely need to be decided."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from bench.analysis.multiple_comparisons import ALPHA

POWER = 0.8          # the chance of deciding that `seeds_to_decide` aims for
MAX_SEEDS = 1000     # seeds_to_decide above this reads "not within 1000 seeds" (inf)


def seeds_to_decide(delta: float, var_seeds: float, var_examples: float, margin: float, m: int = 1,
                    alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per method at which an undecided difference would likely be decided (normal approximation,
    the observed delta taken as the true one): the standard error with n seeds is
    sqrt(var_seeds/n + var_examples) (the example part held at its observed size); a directional verdict
    needs |delta| >= (z_{1−a/2} + z_power) · se and equivalence needs margin − |delta| >= (z_{1−a} + z_power) · se,
    with a = alpha/m (what Holm asks of the first of m comparisons). The smaller n of the two, rounded
    up; inf when neither is reached by seeds alone (the example part alone is too wide) or n > MAX_SEEDS."""
    if not (np.isfinite(delta) and np.isfinite(var_seeds) and np.isfinite(var_examples)):
        return float("nan")
    a = alpha / max(m, 1)
    zp = sps.norm.ppf(power)
    best = math.inf
    for gap, z in ((abs(delta), sps.norm.ppf(1 - a / 2)), (margin - abs(delta), sps.norm.ppf(1 - a))):
        if gap <= 0:
            continue
        room = (gap / (z + zp)) ** 2 - var_examples
        if room <= 0:
            continue
        best = min(best, var_seeds / room if var_seeds > 0 else 1.0)
    n = max(2, math.ceil(best)) if math.isfinite(best) else math.inf
    return float(n) if n <= MAX_SEEDS else math.inf


def seeds_to_decide_t(delta: float, var_seeds: float, margin: float, paired: bool, m: int = 1,
                      alpha: float = ALPHA, power: float = POWER) -> float:
    """`seeds_to_decide` for a quantity measured once per seed (`seed_scalar`), with the t quantiles its
    test uses: the smallest n whose standard error sqrt(var_seeds/n) lets a directional verdict
    (|delta| >= (t_{1−a/2} + t_power) · se) or equivalence (margin − |delta| >= (t_{1−a} + t_power) · se)
    through, df = n − 1 paired, 2(n − 1) unpaired (Welch with equal spread), a = alpha/m. The normal
    approximation would promise a decision at a number of seeds that has just failed to give one."""
    if not (np.isfinite(delta) and np.isfinite(var_seeds)):
        return float("nan")
    n = np.arange(2, MAX_SEEDS + 1)
    df = n - 1 if paired else 2 * (n - 1)
    se = np.sqrt(max(var_seeds, 0.0) / n)
    a = alpha / max(m, 1)
    tp = sps.t.ppf(power, df)
    ok = (abs(delta) >= (sps.t.ppf(1 - a / 2, df) + tp) * se) & (abs(delta) > 0)
    ok |= (margin - abs(delta) >= (sps.t.ppf(1 - a, df) + tp) * se) & (margin > abs(delta))
    return float(n[np.argmax(ok)]) if ok.any() else math.inf
