"""The gate's seed-aware test of retention quantities (`check --gate-on retention.*`, docs/regress.md).

A retention quantity (forgetting, drift, intruder dimensions) is one number per seed, so the test is the
seed level of the report's verdict (bench.analysis.seed_level.seed_difference: paired t over the seeds when
baseline and candidate ran the same seeds, Welch otherwise), read in the harmful direction: lower is
better, so a rise regresses (direction `higher`: one-sided; `both`: two-sided, any change). Holm runs
across the gated cells of each quantity. A cell fails when its adjusted p < alpha and the change exceeds
half the quantity's equivalence margin (bench.analysis.equivalence.MARGINS; the metric's `min_effect` 0.005 is half its
margin 0.01 the same way). It needs >= 2 seeds on each side and a baseline saved with the per-seed
values; otherwise the tolerance rule alone gates (bench/regress/check.py `_check_retention`).
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.analysis import equivalence, multiple_comparisons, seed_level

from .paired import harm_p


@dataclass
class SeedTest:
    quantity: str
    delta: float        # candidate − baseline, means over seeds
    se: float
    df: float
    pairing: str        # paired seeds | unpaired seeds
    p: float            # one-sided (a rise) or two-sided (`both`), before Holm
    min_effect: float
    n_base: int
    n_cand: int
    p_adj: float | None = None

    def fails(self, alpha: float, direction: str) -> bool:
        p = self.p_adj if self.p_adj is not None else self.p
        big = self.delta > self.min_effect if direction == "higher" else abs(self.delta) > self.min_effect
        return bool(p < alpha and big)

    def describe(self) -> str:
        return (f"{self.quantity} seed-aware test: delta {self.delta:+.4f} ({self.pairing}, n={self.n_cand} vs "
                f"{self.n_base}), se {self.se:.4f}, p {self.p:.2g}, Holm {self.p_adj:.2g}")


def min_effect_for(quantity: str) -> float:
    """Half the quantity's equivalence margin (bench.analysis.equivalence.MARGINS)."""
    return equivalence.margin_for(quantity) / 2


def seed_test(quantity: str, base: dict, cand: dict, direction: str) -> SeedTest | str:
    """The test of one cell's quantity from its {mean, std, n, seeds, values} on both sides; a string says
    why there is none."""
    if not base.get("seeds") or len(base.get("values") or []) != len(base["seeds"]):
        return "the baseline has no per-seed values (saved before the gate tested retention: save it again)"
    if len(base["seeds"]) < 2 or len(cand.get("seeds") or []) < 2:
        return f"{len(cand.get('seeds') or [])} candidate and {len(base['seeds'])} baseline seed(s): needs 2 each"
    delta, se, df, _, pairing = seed_level.seed_difference(cand["seeds"], base["seeds"], cand["values"], base["values"])
    p = harm_p(-delta, se, df, direction)  # a rise of a retention quantity is the harm
    return SeedTest(quantity, delta, se, df, pairing, p, min_effect_for(quantity), len(base["seeds"]),
                    len(cand["seeds"]))


def run_seed_tests(baseline: dict, cand_cells: dict, st) -> tuple[dict, dict]:
    """({cid: {quantity: SeedTest}}, {cid: [notes]}) for every `--gate-on` quantity of every baseline cell
    with a candidate; p_adj from Holm across the tested cells of each quantity."""
    from .cells import cell_id, glob_match

    tests: dict[str, dict] = {}
    notes: dict[str, list] = {}
    for q in st.gate_on:
        done = {}
        for base in baseline["cells"]:
            cid = cell_id(base["model"], base["method_label"], base["task"])
            cand = cand_cells.get(cid)
            bs = (base.get("retention") or {}).get(q)
            cs = ((cand or {}).get("retention") or {}).get(q)
            if any(glob_match(p, cid) for p in st.exclude) or bs is None or cs is None:
                continue
            r = seed_test(q, bs, cs, st.direction)
            if isinstance(r, str):
                notes.setdefault(cid, []).append(f"{q}: no seed-aware test ({r}); tolerance rule only")
            else:
                done[cid] = r
        for cid, p in zip(done, multiple_comparisons.holm([r.p for r in done.values()])):
            done[cid].p_adj = float(p)
            tests.setdefault(cid, {})[q] = done[cid]
    return tests, notes
