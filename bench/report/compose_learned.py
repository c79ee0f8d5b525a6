"""The report's learned-composition table: per (model, target, K, family), the learned
combination of frozen sources against the three alternatives at the same target-data budget.

Arms, told apart by what the records say (never by label):
* scratch: the source method (lora, adapter, prompt_tuning) on K target examples, no `train.init_from`;
* transfer: the same from one source's delta (`train.init_from`); the *best single transfer* is, per
  seed, the source whose transfer scores highest on that seed's **selection split** (the task's
  selection score, bench.data.tasks.selection_score), never on dev;
* merge: the combination with fixed weights 1/n (`composition.op == "static"`, gate uniform);
* learned: the combination trained (`composition.op == "learned"`).
Each arm: mean over seeds with a 95 % t interval. Each comparison (learned − scratch, − best transfer,
− merge): paired bootstrap over the dev examples, seeds paired and pooled (bench.report.compose's
test), Holm over the three comparisons of one (model, target, K, family). Trainable parameters are
the harness's count (`params.trainable`); the inference cost is the inference section's batch-1
latency ratio vs the bare backbone (mean over lengths) and its batched ratio, where measured.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from bench.analysis import intervals, multiple_comparisons, resampled_metrics
from bench.records.results import record_selection_keys, selection_score
from bench.report.compose_tests import compare as _compare
from bench.report.compose_tests import main_split as _main_split
from bench.report.compose_tests import verdict as _verdict

FAMILY_OF = {"lora_moe": "lora", "adapter_fusion": "adapter", "attempt": "prompt_tuning"}
ARMS = ("scratch", "transfer", "merge", "learned")
VERSUS = ("scratch", "transfer", "merge")
COLUMNS = (["model", "target", "K", "family", "combination", "metric", "n_seeds"]
           + [f"{a}{s}" for a in ARMS for s in ("", "_ci_low", "_ci_high")]
           + ["transfer_sources"]
           + [f"vs_{a}{s}" for a in VERSUS for s in ("_delta", "_ci_low", "_ci_high", "_p", "_p_equiv", "_p_adj",
                                                      "_verdict")]
           + ["trainable_learned", "trainable_scratch", "latency_ratio_learned", "batched_ratio_learned",
              "latency_ratio_scratch", "batched_ratio_scratch", "n_examples"])


def _arm(rec: dict) -> tuple[str, str, str | None] | None:
    """(family, arm, source task) of a record, or None when it is no arm of this table."""
    comp = rec.get("composition") or {}
    if comp.get("op") in ("learned", "static") and rec["method"] in FAMILY_OF:
        return FAMILY_OF[rec["method"]], "learned" if comp["op"] == "learned" else "merge", None
    if comp or rec["method"] not in FAMILY_OF.values():
        return None
    init = (rec.get("train") or {}).get("init_from")
    if isinstance(init, dict):
        return rec["method"], "transfer", init.get("task")
    if ((rec.get("config") or {}).get("train") or {}).get("init_from"):
        return None
    return rec["method"], "scratch", None


def _selection(rec: dict) -> float:
    """The record's score on its selection split, by its own task spec's selection keys (the report
    reads records only: bench.records.results, no task files)."""
    score = selection_score(record_selection_keys(rec), rec.get("selection_metrics") or {})
    return float("-inf") if score is None else score


def collect(records: list[dict]) -> dict:
    """(model, target, K, family) -> arm -> seed -> record (newest wins); transfers per source."""
    cells: dict = defaultdict(lambda: defaultdict(dict))
    for rec in records:
        if rec.get("status") != "ok":
            continue
        found = _arm(rec)
        k = ((rec.get("config") or {}).get("train") or {}).get("max_train_samples")
        if found is None or k is None:
            continue
        family, arm, source = found
        key = (rec["model"], rec["task"], int(k), family)
        slot = f"transfer:{source}" if arm == "transfer" else arm
        old = cells[key][slot].get(int(rec["seed"]))
        if old is None or str(rec.get("finished_at", "")) > str(old.get("finished_at", "")):
            cells[key][slot][int(rec["seed"])] = rec
    return cells


def best_transfer(arms: dict) -> tuple[dict, list[str]]:
    """Per seed, the transfer record with the highest selection-split score; a tie (e.g. two transfers
    collapsed onto one class) goes to the source task first in alphabetical order."""
    out, chosen = {}, []
    seeds = set().union(*(set(v) for k, v in arms.items() if k.startswith("transfer:"))) if arms else set()
    for seed in sorted(seeds):
        cands = sorted((k.split(":", 1)[1], v[seed]) for k, v in arms.items()
                       if k.startswith("transfer:") and seed in v)
        src, rec = max(cands, key=lambda c: _selection(c[1]))
        out[seed] = rec
        chosen.append(f"s{seed}:{src}")
    return out, chosen


def _overhead(by_seed: dict) -> tuple[float, float]:
    for rec in by_seed.values():
        ov = ((rec.get("inference") or {}).get("overhead") or {}).get("method") or {}
        if ov.get("batch1_mean") is not None:
            return float(ov["batch1_mean"]), float(ov.get("batched") or np.nan)
    return np.nan, np.nan


def _row(key, arms: dict, b: int, notes: list[str], margin: float | None = None) -> dict | None:
    model, target, k, family = key
    learned = arms.get("learned") or {}
    if not learned:
        return None
    best, chosen = best_transfer(arms)
    by_arm = {"scratch": arms.get("scratch") or {}, "transfer": best, "merge": arms.get("merge") or {},
              "learned": learned}
    hm = next(iter(learned.values()))["headline_metric"]
    row = {"model": model, "target": target, "K": k, "family": family, "metric": hm,
           "combination": next(iter(learned.values()))["method"], "transfer_sources": " ".join(chosen),
           "n_seeds": len(learned)}
    for arm, by_seed in by_arm.items():
        vals = [float(r["metrics"][hm]) for r in by_seed.values() if hm in r["metrics"]]
        iv = intervals.t_interval(vals) if len(vals) > 1 else None
        row[arm] = float(np.mean(vals)) if vals else np.nan
        row[f"{arm}_ci_low"], row[f"{arm}_ci_high"] = (iv.low, iv.high) if iv else (np.nan, np.nan)
    n_ex = 0
    for other in VERSUS:
        seeds = sorted(set(learned) & set(by_arm[other]))  # paired by seed: same subsample, same selection split
        both = [(s, pa, pz) for s in seeds if (pa := _main_split(learned[s], notes)) is not None
                and (pz := _main_split(by_arm[other][s], notes)) is not None]
        a, z = [x[1] for x in both], [x[2] for x in both]
        res = _compare(hm, a, z, b, [x[0] for x in both], margin) if a and hm in resampled_metrics.METRICS else None
        row.update({f"vs_{other}_delta": res.delta if res else np.nan, f"vs_{other}_ci_low": res.low if res else np.nan,
                    f"vs_{other}_ci_high": res.high if res else np.nan, f"vs_{other}_p": res.p if res else np.nan,
                    f"vs_{other}_p_equiv": res.p_equiv if res else np.nan,
                    f"vs_{other}_p_adj": np.nan, f"vs_{other}_verdict": "not tested"})
        n_ex = max(n_ex, res.n_examples if res else 0)
    row["n_examples"] = n_ex
    row["trainable_learned"] = next(iter(learned.values()))["params"].get("trainable")
    row["trainable_scratch"] = (next(iter(by_arm["scratch"].values()))["params"].get("trainable")
                                if by_arm["scratch"] else np.nan)
    row["latency_ratio_learned"], row["batched_ratio_learned"] = _overhead(learned)
    row["latency_ratio_scratch"], row["batched_ratio_scratch"] = _overhead(by_arm["scratch"])
    return row


def learned_table(records: list[dict], b: int, notes: list[str], margin: float | None = None) -> pd.DataFrame:
    rows = [r for key, arms in sorted(collect(records).items()) if (r := _row(key, arms, b, notes, margin))]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for i in frame.index:  # Holm over the three comparisons of one (model, target, K, family)
        tested = [o for o in VERSUS if math.isfinite(frame.at[i, f"vs_{o}_p"])]
        adj_eq = multiple_comparisons.holm([frame.at[i, f"vs_{o}_p_equiv"] for o in tested]) if tested else []
        adj = multiple_comparisons.holm([frame.at[i, f"vs_{o}_p"] for o in tested]) if tested else []
        for o, pa, pe in zip(tested, adj, adj_eq):
            frame.at[i, f"vs_{o}_p_adj"] = pa
            frame.at[i, f"vs_{o}_verdict"] = _verdict(pa, frame.at[i, f"vs_{o}_ci_low"], frame.at[i, f"vs_{o}_ci_high"],
                                                      frame.at[i, f"vs_{o}_delta"], pe)
    return frame


def _pct(v) -> str:
    return "–" if not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.2f}"


def _arm_text(d: dict, a: str) -> str:
    return f"{_pct(d[a])} [{_pct(d[a + '_ci_low'])}, {_pct(d[a + '_ci_high'])}]"


def _vs_text(d: dict, o: str) -> str:
    if not math.isfinite(d[f"vs_{o}_delta"]):
        return "–"
    return (f"{100 * d[f'vs_{o}_delta']:+.2f} [{100 * d[f'vs_{o}_ci_low']:+.2f}, {100 * d[f'vs_{o}_ci_high']:+.2f}], "
            f"p {d[f'vs_{o}_p_adj']:.3g}, {d[f'vs_{o}_verdict']}")


def markdown(frame: pd.DataFrame) -> list[str]:
    """The readable table: target x K x {scratch, best transfer, merge, learned}, mean [95 % t CI]
    ×100, and the learned combination's paired differences with Holm-adjusted p and verdict."""
    head = ["target", "K", "combination", "scratch", "best transfer (source per seed)", "merge (uniform)", "learned",
            "learned − scratch", "learned − transfer", "learned − merge", "trainable (learned / scratch)",
            "batch-1 latency ratio (learned / scratch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in frame.itertuples(index=False):
        d = r._asdict()
        lat = "/".join("–" if not math.isfinite(d[c]) else f"{d[c]:.2f}"
                       for c in ("latency_ratio_learned", "latency_ratio_scratch"))
        lines.append("| " + " | ".join([
            f"{d['target']} ({d['metric']}, {d['n_seeds']} seeds)", str(d["K"]), d["combination"],
            _arm_text(d, "scratch"),
            f"{_arm_text(d, 'transfer')} ({d['transfer_sources']})", _arm_text(d, "merge"), _arm_text(d, "learned"),
            _vs_text(d, "scratch"), _vs_text(d, "transfer"), _vs_text(d, "merge"),
            f"{d['trainable_learned']:,} / {d['trainable_scratch']:,}", lat]) + " |")
    return lines + [""]
