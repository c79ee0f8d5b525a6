"""Records -> one summary per (model, method_label, task) cell, the unit that baselines store and
the gate compares. The statistics come from bench.analysis.aggregate (one definition of "mean over
seeds" for reports and the gate); this module only picks the quantities the gate needs and adds
what the aggregation does not carry: each cell's environment and config hashes.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from bench.analysis.aggregate import build
from bench.records import schema as R

#: Environment fields that must be equal before memory and throughput are compared.
ENV_MATCH = ("device", "cuda_device_name", "cpu_model", "torch_threads", "torch")
#: Measurements kept per cell besides the metrics: (section, leaf).
PERF = (("memory", "peak_rss_bytes"), ("memory", "cuda_peak_allocated_bytes"), ("throughput", "train_samples_per_s"))
#: Retention quantities a gate can be asked to check (`check --gate-on`); lower is better for each
#: (docs/retention.md): forgetting (skill lost), drift (1 - CKA), intruder dimensions (summed).
RETENTION = ("retention.forgetting", "retention.drift", "retention.intruders")
MIXED = "(mixed)"


class UnusableInput(ValueError):
    """A results folder or a baseline that cannot be used at all (exit status 2)."""


def cell_id(model: str, method_label: str, task: str) -> str:
    return f"{model}/{method_label}/{task}"


def glob_match(pattern: str, text: str) -> bool:
    """`*` and `?` are the only wildcards (method labels contain `[` `]`, which fnmatch would read
    as character classes)."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text) is not None


def _stat(row, quantity: str) -> dict | None:
    mean = row.get(f"{quantity}_mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return None
    std = row.get(f"{quantity}_std")
    return {"mean": float(mean), "std": None if std is None or math.isnan(std) else float(std),
            "n": int(row.get(f"{quantity}_n", 0))}


def _per_seed(kept, quantity: str) -> dict:
    """{seeds, values}: a quantity's value per kept ok seed (the gate's seed-aware retention test)."""
    if quantity not in kept:
        return {}
    have = kept[kept[quantity].notna()].sort_values("seed")
    return {"seeds": [int(s) for s in have["seed"]], "values": [float(v) for v in have[quantity]]}


def _env_of(envs: list[dict]) -> dict:
    out = {}
    for f in ENV_MATCH:
        vals = {None if e.get(f) is None else str(e.get(f)) for e in envs}
        out[f] = vals.pop() if len(vals) == 1 else MIXED
    return out


def load_results(results_dir: str | Path) -> tuple[list[dict], list[R.BadRecord]]:
    """Records under `results_dir`; UnusableInput when the folder is missing or has no readable record."""
    path = Path(results_dir)
    if not path.exists():
        raise UnusableInput(f"results folder {path} does not exist")
    records, bad = R.load_records(path)
    if not records:
        detail = (f" ({len(bad)} unreadable: " + "; ".join(map(str, bad)) + ")") if bad else ""
        raise UnusableInput(f"no readable result records under {path}{detail}")
    return records, bad


def summarize(records: list[dict]) -> tuple[dict[str, dict], dict]:
    """Cells keyed by cell_id, plus facts about the input (record and conflict counts, sweeps, commits).

    A cell: model, method, method_label, task, headline_metric, status (aggregate's: ok, partial,
    failed, missing), n_ok, n_failed, errors, seeds (ok seeds), metrics {name: {mean, std, n}},
    params {trainable, total}, perf {"memory.peak_rss_bytes": {mean, std, n}, ...}, env (ENV_MATCH
    fields, MIXED where the ok records disagree), config_hashes (as stored), portable_hashes
    (records.config_hash recomputed from each record's config: machine paths and run-control settings
    are left out of it, so it matches across machines and across records written before a setting
    joined records.HASH_EXCLUDED; the name is kept so baselines saved earlier read unchanged), and
    `_records` (the kept ok records themselves, newest per seed).
    """
    agg = build(records)
    by_path = {r.get("_path"): r for r in records}
    kept_ok = agg.kept[agg.kept["status"] == "ok"]
    cells: dict[str, dict] = {}
    for row in agg.cells.to_dict("records"):
        cid = cell_id(row["model"], row["method_label"], row["task"])
        sub = kept_ok[(kept_ok["model"] == row["model"]) & (kept_ok["method_label"] == row["method_label"])
                      & (kept_ok["task"] == row["task"])]
        recs = [by_path[p] for p in sub["path"] if p in by_path]
        metric_names = sorted(k[len("metrics."):-len("_mean")] for k in row
                              if k.startswith("metrics.") and k.endswith("_mean"))
        metrics = {m: s for m in metric_names if (s := _stat(row, f"metrics.{m}")) is not None}
        params = {}
        for leaf in ("trainable", "total"):
            s = _stat(row, f"params.{leaf}")
            if s is not None:
                params[leaf] = round(s["mean"])
        perf = {f"{sec}.{leaf}": s for sec, leaf in PERF if (s := _stat(row, f"{sec}.{leaf}")) is not None}
        retention = {q: s | _per_seed(sub, q) for q in RETENTION if (s := _stat(row, q)) is not None}
        cells[cid] = {
            "model": row["model"], "method": row["method"], "method_label": row["method_label"], "task": row["task"],
            "headline_metric": row["headline_metric"], "status": row["status"], "n_ok": int(row["n_ok"]),
            "n_failed": int(row["n_failed"]), "errors": row["errors"] or "",
            "seeds": sorted(int(s) for s in sub["seed"]),
            "metrics": metrics, "params": params, "perf": perf, "retention": retention,
            "env": _env_of([r.get("env") or {} for r in recs]) if recs else {},
            "config_hashes": sorted({str(r.get("config_hash")) for r in recs}),
            "portable_hashes": sorted({R.config_hash(r["config"]) for r in recs if isinstance(r.get("config"), dict)}),
            "_records": recs,  # the kept ok records (their predictions feed the paired test); not saved
        }
    facts = {
        "n_records": len(records),
        "n_conflicts": len(agg.conflicts),
        "sweeps": sorted({str(r.get("sweep")) for r in records}),
        "git_commits": sorted({str((r.get("env") or {}).get("git_commit")) for r in records}),
        "git_dirty": any(bool((r.get("env") or {}).get("git_dirty")) for r in records),
        "summary": agg.summary,
    }
    return cells, facts


def env_diff(a: dict, b: dict) -> list[str]:
    """ENV_MATCH fields that differ (or are mixed), as `field: a vs b`; empty when the envs match."""
    out = []
    for f in ENV_MATCH:
        va, vb = a.get(f), b.get(f)
        if va != vb or va == MIXED:
            out.append(f"{f}: {va} vs {vb}")
    return out
