"""The gate: a candidate sweep against a baseline, cell by cell (docs/regress.md explains the rules).

Per baseline cell: present and ok in the candidate; every metric within max(floor, k x pooled std)
(direction `higher`: only drops count; `both`: any change); trainable parameters identical unless
allowed; peak memory and train throughput within a relative tolerance when the environment
matches, reported but not gated otherwise. When the baseline stores per-example predictions and the
candidate's records have them, the headline metric also gets the paired test (paired.py): the cell
regresses when its Holm-adjusted p < alpha and the change exceeds min_effect; with >= 2 seeds on both sides
that test alone gates the headline (the tolerance rule's breach is a note).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.analysis.chance import collapse_warnings
from bench.records.results import fmt_count, text_table

from .cells import cell_id, env_diff, glob_match

STATUS_ORDER = {"REGRESSED": 0, "FAILED": 1, "MISSING": 2, "ok": 3, "excluded": 4, "new": 5}


@dataclass
class Settings:
    k: float = 3.0
    floor: float = 0.01
    rel_tol: float = 0.25
    direction: str = "higher"
    exclude: list[str] = field(default_factory=list)
    allow_param_change: list[str] = field(default_factory=list)
    report_only: list[str] = field(default_factory=list)  # "memory" and/or "throughput"
    alpha: float = 0.05          # family-wise (Holm, across cells) level of the paired test
    min_effect: float = 0.005    # smallest change of the headline metric the paired test fails on
    design: str = "seeds+examples"  # variance of the paired test (paired.DESIGNS); the others are for measuring
    n_boot: int = 2000           # bootstrap resamples of the examples
    gate_on: list[str] = field(default_factory=list)  # retention quantities gated like metrics (cells.RETENTION)


@dataclass
class CellResult:
    cid: str
    verdict: str  # ok | REGRESSED | FAILED | MISSING | excluded | new
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cols: dict = field(default_factory=dict)  # table columns


def pooled_std(a: dict, b: dict | None) -> float | None:
    """Pooled sample std over baseline and candidate seeds; None when neither has 2 or more seeds."""
    df = ss = 0.0
    for s in (a, b):
        if s and s.get("std") is not None and s.get("n", 0) > 1:
            df += s["n"] - 1
            ss += (s["n"] - 1) * s["std"] ** 2
    return math.sqrt(ss / df) if df > 0 else None


def metric_tolerance(a: dict, b: dict | None, st: Settings) -> tuple[float, str]:
    sp = pooled_std(a, b)
    if sp is None:
        return st.floor, "floor (n=1)"
    return max(st.floor, st.k * sp), f"max({st.floor:g}, {st.k:g} x {sp:.4f})"


def _perf_quantities(base: dict, cand: dict) -> list[tuple[str, str, int]]:
    """(kind, quantity, sign): sign +1 = higher is worse (memory), -1 = lower is worse (throughput)."""
    mem = "memory.peak_rss_bytes"
    if str(base["env"].get("device", "")).startswith("cuda") and "memory.cuda_peak_allocated_bytes" in base["perf"] \
            and "memory.cuda_peak_allocated_bytes" in cand["perf"]:
        mem = "memory.cuda_peak_allocated_bytes"
    return [("memory", mem, +1), ("throughput", "throughput.train_samples_per_s", -1)]


def check_cell(base: dict, cand: dict | None, st: Settings, headline_by_seed_test: bool = False) -> CellResult:
    """One baseline cell against the candidate's. `headline_by_seed_test`: the paired test ran on the headline
    metric with >= 2 seeds on each side, so it alone gates the headline (see `_check_metrics`)."""
    cid = cell_id(base["model"], base["method_label"], base["task"])
    hm = base.get("headline_metric") or next(iter(base["metrics"]))
    res = CellResult(cid, "ok", cols={"metric": hm, "base": base["metrics"].get(hm, {}).get("mean")})
    if any(glob_match(p, cid) for p in st.exclude):
        res.verdict = "excluded"
        return res
    if cand is None or cand.get("status") == "missing":  # no record at all (aggregate's grid lists it as missing)
        res.verdict = "MISSING"
        res.problems.append("no record in the candidate results (not run, or written elsewhere)")
        return res
    if cand["n_ok"] == 0:
        res.verdict = "FAILED"
        res.problems.append(f"no ok record: {cand['errors'] or cand['status']}")
        return res
    if cand["n_failed"]:
        res.problems.append(f"{cand['n_failed']} seed(s) failed: {cand['errors']}")
    if cand["n_ok"] < base.get("n_ok", 1):
        res.notes.append(f"{cand['n_ok']} ok seed(s) vs {base.get('n_ok')} in the baseline")
    for rec in cand.get("_records") or []:  # not gated: a collapsed run may be the baseline's state too
        res.notes += [f"WARNING seed {rec.get('seed')} {w}" for w in collapse_warnings(rec)]
    _check_metrics(res, base, cand, st, hm, headline_by_seed_test)
    _check_retention(res, base, cand, st)
    _check_params(res, base, cand, st)
    _check_perf(res, base, cand, st)
    # -- config ----------------------------------------------------------------------------------
    if base.get("portable_hashes") and cand.get("portable_hashes") and \
            set(base["portable_hashes"]) != set(cand["portable_hashes"]):
        res.notes.append("config differs from the baseline's (config hash, paths excluded)")
    if res.problems:
        res.verdict = "REGRESSED"
    return res


def _check_metrics(res: CellResult, base: dict, cand: dict, st: Settings, hm: str, by_seed_test: bool = False
                   ) -> None:
    """Each baseline metric against the candidate's, within its tolerance (the headline first).

    With `by_seed_test` the headline's tolerance rule is reported, not gated: the seed-aware paired test
    decides it, Holm-corrected across cells, where the rule (k x the pooled seed sd, cell by cell, with no
    family-wise correction) false-alarms and adds no power the paired test lacks (docs/regress.md)."""
    for m, bs in sorted(base["metrics"].items(), key=lambda kv: kv[0] != hm):
        cs = cand["metrics"].get(m)
        if cs is None:
            res.problems.append(f"metric {m}: missing in the candidate")
            continue
        delta = cs["mean"] - bs["mean"]
        tol, how = metric_tolerance(bs, cs, st)
        bad = delta < -tol or (st.direction == "both" and delta > tol)
        if m == hm:
            res.cols.update(cand=cs["mean"], delta=delta, tol=tol)
        if bad:
            text = (f"{m} {bs['mean']:.4f} -> {cs['mean']:.4f} (delta {delta:+.4f}, "
                    f"tolerance {tol:.4f} = {how}{', any direction' if st.direction == 'both' else ''})")
            if m == hm and by_seed_test:
                res.notes.append(text + ": beyond the tolerance rule, not gated on it; with >= 2 seeds on both "
                                 "sides the paired test decides the headline")
            else:
                res.problems.append(text)
        elif delta > tol:
            res.notes.append(f"{m} improved {bs['mean']:.4f} -> {cs['mean']:.4f} (delta {delta:+.4f} > {tol:.4f})")


def _check_retention(res: CellResult, base: dict, cand: dict, st: Settings) -> None:
    """Each `--gate-on` retention quantity within the metric tolerance; lower is better, so a rise
    regresses (direction `both`: any change). The seed-aware test comes on top (`apply_seed_tests`)."""
    for q in st.gate_on:
        bs, cs = (base.get("retention") or {}).get(q), (cand.get("retention") or {}).get(q)
        if bs is None:
            res.notes.append(f"{q}: not in the baseline, not gated (baseline saved without retention records)")
            continue
        if cs is None:
            res.problems.append(f"{q}: missing in the candidate (retention.enabled=false, or records before schema 4)")
            continue
        delta = cs["mean"] - bs["mean"]
        tol, how = metric_tolerance(bs, cs, st)
        if delta > tol or (st.direction == "both" and delta < -tol):
            res.problems.append(f"{q} {bs['mean']:.4f} -> {cs['mean']:.4f} (delta {delta:+.4f}, tolerance {tol:.4f} = "
                                f"{how}; lower is better)")


def _check_params(res: CellResult, base: dict, cand: dict, st: Settings) -> None:
    """Trainable parameters must match exactly unless --allow-param-change names the method."""
    bt, ct = base["params"].get("trainable"), cand["params"].get("trainable")
    res.cols["params"] = fmt_count(ct, "-") + ("" if bt == ct else f" (was {fmt_count(bt, '-')})")
    if bt != ct:
        allowed = any(glob_match(p, base["method_label"]) for p in st.allow_param_change)
        msg = f"trainable parameters {bt} -> {ct}"
        if allowed:
            res.notes.append(msg + " (allowed by --allow-param-change)")
        else:
            res.problems.append(msg + f" (must match exactly; --allow-param-change {base['method_label']} accepts it)")
    if base["params"].get("total") != cand["params"].get("total"):
        res.notes.append(f"total parameters {base['params'].get('total')} -> {cand['params'].get('total')}")


def _check_perf(res: CellResult, base: dict, cand: dict, st: Settings) -> None:
    """Memory and throughput, gated only when the environments match."""
    diff = env_diff(base.get("env") or {}, cand.get("env") or {})
    if diff:
        res.notes.append("memory/throughput not gated: environment differs (" + "; ".join(diff) + ")")
    for kind, q, sign in _perf_quantities(base, cand):
        bq, cq = base["perf"].get(q), cand["perf"].get(q)
        if not bq or not cq or bq["mean"] <= 0:
            res.cols[kind] = "-"
            continue
        rel = cq["mean"] / bq["mean"] - 1.0
        gated = not diff and kind not in st.report_only
        res.cols[kind] = f"{rel:+.0%}" + ("" if gated else " (not gated)")
        if gated and sign * rel > st.rel_tol:
            res.problems.append(f"{q} {bq['mean']:.4g} -> {cq['mean']:.4g} ({rel:+.1%}, tolerance "
                                f"{'+' if sign > 0 else '-'}{st.rel_tol:.0%}, same environment)")


def apply_paired(res: CellResult, pr, notes: list[str], st: Settings) -> None:
    """Fold a cell's paired test (a paired.PairedResult or None) and its notes into its result."""
    from .paired import fails
    from .predictions import describe

    res.notes += notes
    if pr is None or res.verdict in ("excluded", "MISSING", "FAILED"):
        return
    res.cols["p_adj"] = pr.p_adj
    if fails(pr, st.alpha, st.min_effect, st.direction):
        res.problems.append(describe(pr) + f" < alpha {st.alpha:g}, and |delta| > min effect {st.min_effect:g}")
        res.verdict = "REGRESSED"


def apply_seed_tests(res: CellResult, tests: dict, notes: list[str], st: Settings) -> None:
    """Fold a cell's seed-aware retention tests ({quantity: retention.SeedTest}) and notes into its result."""
    res.notes += notes
    if res.verdict in ("excluded", "MISSING", "FAILED"):
        return
    for t in tests.values():
        if t.fails(st.alpha, st.direction):
            res.problems.append(t.describe() + f" < alpha {st.alpha:g}, and the change exceeds {t.min_effect:g} "
                                "(half the quantity's equivalence margin); lower is better")
            res.verdict = "REGRESSED"


def run_check(baseline: dict, cand_cells: dict[str, dict], st: Settings, paired: tuple[dict, dict] | None = None
              ) -> list[CellResult]:
    """Every baseline cell checked (plus `new` candidate cells); `paired` = predictions.run_paired's
    (results, notes) when the paired test ran. `--gate-on` retention quantities also get the seed-aware
    test (bench/regress/retention.py) where both sides have >= 2 seeds."""
    from .retention import run_seed_tests

    pres, pnotes = paired or ({}, {})
    rtests, rnotes = run_seed_tests(baseline, cand_cells, st) if st.gate_on else ({}, {})
    results = []
    base_ids = set()
    for base in baseline["cells"]:
        cid = cell_id(base["model"], base["method_label"], base["task"])
        base_ids.add(cid)
        base.setdefault("perf", {})
        base.setdefault("env", {})
        pr = pres.get(cid)
        by_seed_test = pr is not None and pr.design != "examples" and min(len(pr.seeds_base), len(pr.seeds_cand)) >= 2
        results.append(check_cell(base, cand_cells.get(cid), st, by_seed_test))
        if cid in pres or cid in pnotes:
            apply_paired(results[-1], pres.get(cid), pnotes.get(cid, []), st)
        if cid in rtests or cid in rnotes:
            apply_seed_tests(results[-1], rtests.get(cid, {}), rnotes.get(cid, []), st)
    for cid, c in cand_cells.items():
        if cid not in base_ids and c.get("status") != "missing":
            hm = c.get("headline_metric")
            results.append(CellResult(cid, "new", notes=["not in the baseline: not gated"],
                                      cols={"metric": hm, "cand": (c["metrics"].get(hm) or {}).get("mean"),
                                            "params": fmt_count(c["params"].get("trainable"), "-")}))
    results.sort(key=lambda r: (STATUS_ORDER.get(r.verdict, 9), r.cid))
    return results


def _f(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def format_table(results: list[CellResult]) -> str:
    header = ("cell", "verdict", "headline", "base", "cand", "delta", "tol", "p(Holm)", "trainable", "memory",
              "train/s")
    rows = []
    for r in results:
        c = r.cols
        rows.append((r.cid, r.verdict, c.get("metric") or "-", _f(c.get("base"), ".4f"), _f(c.get("cand"), ".4f"),
                     _f(c.get("delta"), "+.4f"), _f(c.get("tol"), ".4f"), _f(c.get("p_adj"), ".2g"),
                     c.get("params", "-"), c.get("memory", "-"), c.get("throughput", "-")))
    return text_table(header, rows)


def format_details(results: list[CellResult]) -> str:
    out = []
    for r in results:
        if r.problems:
            out.append(f"{r.verdict}: {r.cid}")
            out += [f"    - {p}" for p in r.problems]
    by_text: dict[str, list[str]] = {}
    for r in results:
        for n in r.notes:
            by_text.setdefault(n, []).append(r.cid)
    if by_text:
        out.append("notes:")
        for text, cids in by_text.items():
            who = ", ".join(cids) if len(cids) <= 3 else f"{len(cids)} cells"
            out.append(f"    {who}: {text}")
    return "\n".join(out)
