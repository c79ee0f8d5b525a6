"""The scaled-down reproduction: LoRA Table 2's comparison (full / BitFit / adapters / LoRA, plus prompt
tuning) on the bundled MiniLM with a CPU budget, next to the published RoBERTa-base numbers.

The grid and budget are the preset conf/experiment/scaled_repro.yaml (a Hydra multirun, so
`python -m bench -m experiment=scaled_repro` runs exactly the same cells); what it is compared with
and which claims are checked is bench/reproduce/scaled_repro.yaml. Absolute numbers are not expected
to transfer from a 125M model trained for 25-80 epochs on full GLUE to a 22M model trained on a
subsample for 3 epochs; the claims about how methods compare are, and each claim is computed from
the published numbers and from the measured ones (on the mean over seeds and on every seed alone).
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.records.results import fmt_count, newest_per_seed, sweep_dir
from bench.reproduce.presets import preset_path
from bench.reproduce.published import Row, by_config, load, parse_counts
from bench.reproduce.report import table_from_frame, to_text, write_report
from bench.reproduce.runner import exit_status, run_sweep

SPEC_PATH = Path(__file__).with_name("scaled_repro.yaml")


@dataclass
class Spec:
    preset: str
    tasks: list[str]
    methods: dict[str, dict]       # record method_label -> {name, published}
    seeds: list[int]
    claims: list[dict]
    published_model: str
    train: dict


def _split(v) -> list[str]:
    return [s.strip() for s in str(v).split(",") if s.strip()]


def load_spec(path: Path = SPEC_PATH) -> Spec:
    from omegaconf import OmegaConf

    meta = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    preset = OmegaConf.to_container(OmegaConf.load(preset_path(meta["preset"])), resolve=False)
    params = preset["hydra"]["sweeper"]["params"]
    methods = _split(params["method"])
    missing = [m for m in methods if m not in meta["methods"]]
    if missing:
        raise ValueError(f"{path}: no entry for method(s) {missing} of the preset's grid")
    return Spec(meta["preset"], _split(params["task"]), {m: meta["methods"][m] for m in methods},
                [int(s) for s in _split(params.get("train.seed", "0"))], list(meta["claims"]),
                meta["published_model"], dict(preset.get("train") or {}))


# --------------------------------------------------------------------------------------- numbers


def published_values(spec: Spec, rows: list[Row]) -> dict[str, dict[str, Row]]:
    """method label -> task -> the published row (metric of that row = metric compared)."""
    configs = by_config(rows)
    out: dict[str, dict[str, Row]] = {}
    for label, m in spec.methods.items():
        if not m.get("published"):
            continue
        group = configs[m["published"]]
        out[label] = {r.task_key: r for r in group if r.task_key in spec.tasks and r.metric_key}
    return out


def metric_for_task(spec: Spec, pub: dict[str, dict[str, Row]]) -> dict[str, str]:
    """The metric compared per task: the published one (all published methods of the table agree)."""
    out = {}
    for task in spec.tasks:
        keys = {p[task].metric_key for p in pub.values() if task in p}
        if len(keys) > 1:
            raise ValueError(f"published rows disagree on the metric of {task}: {keys}")
        out[task] = keys.pop() if keys else ""
    return out


def measured_values(records: list[dict], spec: Spec, metric: dict[str, str]) -> pd.DataFrame:
    """One row per grid seed cell whose newest record (bench.records.results.newest_per_seed) is ok:
    method_label, task, seed, value (x100), trainable_excl_head, train_s."""
    rows = []
    grid = [r for r in records if r.get("task") in spec.tasks and r.get("method_label") in spec.methods]
    for rec in newest_per_seed(grid)[0]:
        if rec.get("status") != "ok":
            continue
        key = metric[rec["task"]] or rec.get("headline_metric")
        val = (rec.get("metrics") or {}).get(key)
        if val is None:
            continue
        rows.append({"method_label": rec["method_label"], "task": rec["task"], "seed": int(rec["seed"]),
                     "value": 100.0 * float(val),
                     "trainable_excl_head": (rec.get("params") or {}).get("trainable_excl_head"),
                     "train_s": (rec.get("time") or {}).get("total_s")})
    return pd.DataFrame(rows, columns=["method_label", "task", "seed", "value", "trainable_excl_head", "train_s"])


def task_averages(frame: pd.DataFrame, tasks: list[str]) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """(mean over seeds of the task average, per-seed task averages) for methods complete on every task.
    A seed counts only when it is ok on every task (never an average over fewer tasks)."""
    means, per_seed = {}, {}
    for label, sub in frame.groupby("method_label"):
        wide = sub.pivot_table(index="seed", columns="task", values="value", aggfunc="mean")
        if any(t not in wide.columns for t in tasks):
            continue
        wide = wide[tasks].dropna()
        if wide.empty:
            continue
        avg = wide.mean(axis=1)
        per_seed[label] = {int(s): float(v) for s, v in avg.items()}
        means[label] = float(avg.mean())
    return means, per_seed


# --------------------------------------------------------------------------------------- claims


def _test(claim: dict, v: dict[str, float]) -> tuple[bool, str] | None:
    """Whether the claim holds for the values `v` (method -> number), and the statistic as text."""
    kind, a, b, margin = claim["kind"], claim["a"], claim["b"], float(claim["margin"])
    need = [a, b] + ([claim["c"]] if kind == "between" else [])
    if any(x not in v or v[x] is None or (isinstance(v[x], float) and math.isnan(v[x])) for x in need):
        return None
    if kind == "at_least":
        d = v[a] - v[b]
        return d >= -margin, f"{a} − {b} = {d:+.2f} (needs ≥ {-margin:+.1f})"
    if kind == "below":
        d = v[b] - v[a]
        return d >= margin, f"{b} − {a} = {d:+.2f} (needs ≥ {margin:.1f})"
    if kind == "between":
        c = claim["c"]
        lo, hi = v[a] - v[b], v[c] + margin - v[a]
        return (lo >= 0 and hi >= 0), (f"{a} − {b} = {lo:+.2f}, {c} − {a} = {v[c] - v[a]:+.2f} "
                                       f"(needs ≥ 0 and ≥ {-margin:+.1f})")
    if kind == "param_fraction_below":
        f = v[a] / v[b]
        return f < margin, f"{a} / {b} = {100 * f:.3f}% (needs < {100 * margin:g}%)"
    raise ValueError(f"claim {claim.get('id')}: unknown kind {kind!r}")


def evaluate_claim(claim: dict, published: dict[str, float], means: dict[str, float],
                   per_seed: dict[str, dict[int, float]], per_task: dict[str, dict[str, float]] | None = None) -> dict:
    """Verdict on the task average; `per_task` (task -> method -> mean over seeds) adds, for information,
    whether the claim holds on each task alone (the verdict is the task average's)."""
    pub = _test(claim, published)
    mean = _test(claim, means)
    seeds = sorted(set.intersection(*[set(per_seed.get(m, {})) for m in _members(claim)])) if mean else []
    seed_results = {s: _test(claim, {m: per_seed[m][s] for m in _members(claim)}) for s in seeds}
    if mean is None:
        verdict = "not evaluated (methods missing)"
    elif claim["kind"] == "param_fraction_below" or len(seed_results) <= 1:
        verdict = "holds" if mean[0] else "does not hold"
        if claim["kind"] != "param_fraction_below" and len(seed_results) <= 1:
            verdict += " (1 seed)"
    elif mean[0] and all(r[0] for r in seed_results.values()):
        verdict = f"holds (mean and all {len(seed_results)} seeds)"
    elif not mean[0] and not any(r[0] for r in seed_results.values()):
        verdict = f"does not hold (mean and all {len(seed_results)} seeds)"
    else:
        n_ok = sum(r[0] for r in seed_results.values())
        verdict = (f"mixed across seeds ({'holds' if mean[0] else 'fails'} on the mean, "
                   f"holds on {n_ok}/{len(seed_results)} seeds)")
    return {
        "claim": claim["id"], "text": claim["text"], "source": claim["source"],
        "published": "n/a (no published row)" if pub is None else f"{'holds' if pub[0] else 'does not hold'}: {pub[1]}",
        "measured (mean over seeds)": "–" if mean is None else mean[1],
        "per seed": "; ".join(f"s{s}: {'yes' if r[0] else 'no'}" for s, r in seed_results.items()) or "–",
        "per task (mean over seeds)": _per_task_text(claim, per_task),
        "verdict": verdict,
    }


def _per_task_text(claim: dict, per_task: dict[str, dict[str, float]] | None) -> str:
    if not per_task or claim["kind"] == "param_fraction_below":
        return "–"
    parts = []
    for task, v in per_task.items():
        r = _test(claim, v)
        if r is not None:
            stat = r[1].split(" (needs")[0]
            parts.append(f"{task}: {'yes' if r[0] else 'no'} ({stat})")
    return "; ".join(parts) or "–"


def _members(claim: dict) -> list[str]:
    return [claim["a"], claim["b"]] + ([claim["c"]] if claim["kind"] == "between" else [])


def published_params(spec: Spec, rows: list[Row]) -> dict[str, float]:
    configs = by_config(rows)
    out = {}
    for label, m in spec.methods.items():
        if m.get("published"):
            counts = [p for p in parse_counts(configs[m["published"]][0].trainable_params) if p.kind == "count"]
            if counts:
                out[label] = counts[0].value
    return out


# --------------------------------------------------------------------------------------- tables


def build(records: list[dict], spec: Spec | None = None, rows: list[Row] | None = None) -> dict:
    """Everything the scaled report shows, as frames of formatted strings plus raw numbers."""
    spec = spec or load_spec()
    rows = rows if rows is not None else load()
    pub = published_values(spec, rows)
    metric = metric_for_task(spec, pub)
    frame = measured_values(records, spec, metric)
    means, per_seed = task_averages(frame, spec.tasks)
    pub_avg = {label: statistics.fmean(p[t].value for t in spec.tasks)
               for label, p in pub.items() if all(t in p for t in spec.tasks)}
    side = []
    full_pub = pub.get("full", {})
    full_meas = frame[frame["method_label"] == "full"].groupby("task")["value"].mean()
    for label, m in spec.methods.items():
        for task in spec.tasks + ["avg"]:
            if task == "avg":
                p = pub_avg.get(label)
                p_txt = "–" if p is None else f"{p:.2f}"
                vals = list(per_seed.get(label, {}).values())
                fp = pub_avg.get("full")
                fm = means.get("full")
            else:
                r = pub.get(label, {}).get(task)
                p = r.value if r else None
                p_txt = "–" if r is None else (f"{r.value:.1f}" + (f" ± {r.pm:g}" if r.pm is not None else ""))
                vals = frame[(frame["method_label"] == label) & (frame["task"] == task)]["value"].tolist()
                fp = full_pub[task].value if task in full_pub else None
                fm = full_meas.get(task)
            mean = statistics.fmean(vals) if vals else None
            sd = statistics.stdev(vals) if len(vals) > 1 else None
            meas_txt = ("–" if mean is None
                        else f"{mean:.1f}" + (f" ± {sd:.1f}" if sd is not None else "") + f" (n={len(vals)})")
            side.append({
                "method": m["name"], "task": task,
                "metric": metric.get(task, "") or ("task average" if task == "avg" else ""),
                "published (RoBERTa-base)": p_txt, "measured (MiniLM, scaled)": meas_txt,
                "gap": "–" if (mean is None or p is None) else f"{mean - p:+.1f}",
                "published Δ vs full": "–" if (p is None or fp is None or label == "full") else f"{p - fp:+.1f}",
                "measured Δ vs full": "–" if (mean is None or fm is None or label == "full") else f"{mean - fm:+.1f}",
                "tolerance": "none (different model and budget)",
                "verdict": "side by side only",
            })
    meas_params = frame.groupby("method_label")["trainable_excl_head"].mean().to_dict()
    pub_params = published_params(spec, rows)
    claims = []
    per_task = {t: frame[frame["task"] == t].groupby("method_label")["value"].mean().to_dict() for t in spec.tasks}
    for c in spec.claims:
        if c["kind"] == "param_fraction_below":
            claims.append(evaluate_claim(c, pub_params, meas_params, {}))
        else:
            claims.append(evaluate_claim(c, pub_avg, means, per_seed, per_task))
    params_rows = [{"method": m["name"], "published (RoBERTa-base)": fmt_count(pub_params.get(label)),
                    "measured (MiniLM, excl. head)": fmt_count(meas_params.get(label))}
                   for label, m in spec.methods.items()]
    cells_expected = len(spec.tasks) * len(spec.methods) * len(spec.seeds)
    return {"side": pd.DataFrame(side), "claims": pd.DataFrame(claims), "params": pd.DataFrame(params_rows),
            "raw": frame, "means": means, "per_seed": per_seed, "published_avg": pub_avg, "metric": metric,
            "cells_ok": len(frame), "cells_expected": cells_expected,
            "total_s": float(frame["train_s"].sum()) if len(frame) else 0.0}


# --------------------------------------------------------------------------------------- report


def cmd_scaled(results: Path, out: Path, run: bool, seeds: str | None, extra: list[str] | None = None) -> int:
    """`bench.reproduce scaled`: run the preset's grid (bench.reproduce.runner; `seeds` a comma list
    replacing the preset's train.seed sweep, `extra` the user's overrides), then report from the
    records of its sweep folder."""
    from bench.params import compose_config
    from bench.records.schema import load_records

    spec = load_spec()
    rc, wall = 0, None
    if run:
        t0 = time.perf_counter()
        rc = exit_status(run_sweep([f"experiment={spec.preset}"] + ([f"train.seed={seeds}"] if seeds else []),
                                   results, extra).returncode)
        wall = time.perf_counter() - t0
    cfg = compose_config([f"experiment={spec.preset}"])
    folder = sweep_dir(results, cfg.sweep_name)
    records = load_records(folder)[0] if folder.exists() else []
    res = build(records, spec)
    t = spec.train
    budget = (f"budget: {t.get('max_train_samples')} training examples per task, {t.get('epochs')} epochs, batch "
              f"{t.get('batch_size', 32)}, max_seq_len {t.get('max_seq_len', 128)}, full dev sets; harness default "
              f"learning rates per method (conf/method/*.yaml); seeds {', '.join(map(str, spec.seeds))}")
    intro = [(f"Scaled-down reproduction of Hu et al. 2021 (LoRA) Table 2 on the bundled MiniLM-L6-H384 "
              f"(all-MiniLM-L6-v2, 22.7M parameters) vs published {spec.published_model}."), budget,
             (f"{res['cells_ok']} of {res['cells_expected']} cells ok; cells' total wall time "
              f"{res['total_s'] / 60:.1f} min (records' time.total_s)"
              + (f"; this run took {wall / 60:.1f} min." if wall is not None else "."))]
    cap_side = ("Per task: published (LoRA Table 2, RoBERTa-base; metric as published) and measured (mean ± std over "
                "seeds, x100, same metric key). Absolute numbers are not expected to transfer across model size and "
                "budget (no tolerance); the Δ vs full columns show the comparison the claims are about.")
    cap_claims = ("Claims checked on the task average (unweighted mean over the run's tasks): on the published numbers "
                  "and on the measured ones (mean over seeds, and each seed alone). 'holds' needs the mean and every "
                  "seed; 'mixed' = seeds disagree. Claims are defined in bench/reproduce/scaled_repro.yaml; verdicts "
                  "are computed here, none is asserted.")
    tables = [table_from_frame(res["side"], "Side by side", cap_side, status_col="verdict"),
              table_from_frame(res["claims"], "Claims that should transfer across scale", cap_claims,
                               status_col="verdict"),
              table_from_frame(res["params"], "Trainable parameters (method alone)", "Published counts (RoBERTa-base) "
                               "and the records' trainable_excl_head on MiniLM (mean over tasks).")]
    paths = write_report(out / "scaled", "Scaled reproduction (LoRA Table 2 on MiniLM)", intro, tables,
                         {"side_by_side": res["side"], "claims": res["claims"], "measured_cells": res["raw"]})
    print("\n".join(intro))
    claims = res["claims"][["claim", "published", "measured (mean over seeds)", "verdict"]]
    print(to_text(table_from_frame(claims, "", ""), max_width=80))
    print(f"\nwritten to {paths['md']} (+ CSVs, index.html)")
    if res["cells_ok"] < res["cells_expected"]:
        print(f"warning: only {res['cells_ok']} of {res['cells_expected']} cells have an ok record", file=sys.stderr)
    return rc
