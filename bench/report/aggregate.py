"""Records -> pandas DataFrames: the only place where numbers are combined.

Everything a report (or the regression gate) shows is computed here, from result records only, so
that one definition of "mean over seeds" serves tables, plots, CSV and the gate alike. Nothing in
this module formats, scales or draws: values stay on the records' own scale (metrics 0-1).

Pipeline (each step is a public function so that callers can stop where they need to):

    records_to_frame(records)  one row per record, nested fields flattened (`metrics.f1`, `memory.peak_rss_bytes`)
    dedupe(frame)              one record per (model, method_label, task, seed); conflicts listed
    cell_grid(kept)            every model x method_label x task x seed seen for that model, with status
    cell_stats(kept)           long form: (model, method_label, task, quantity) -> mean, std, n
    aggregate_cells(kept, grid)  wide form: one row per (model, method_label, task)
    summarize_methods(kept, cells)  one row per (model, method_label): GLUE-style average
    build(records)             all of the above in an `Aggregation`

Learning-rate trials of a tuning study (`study.role == "trial"`) are different learning rates under
one method label: they are split off before dedupe (`Aggregation.trials`) and feed only the
budget curves; the study's `final` records are ordinary cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.stats import t_bounds

KEY = ["model", "method_label", "task"]
SEED_KEY = KEY + ["seed"]
# Nested record sections whose numeric leaves are measurements (aggregated like metrics).
MEASURE_SECTIONS = ("params", "memory", "throughput", "time", "storage", "train", "data")
ERROR_FIELDS = ("type", "message", "phase", "where", "log")
STUDY_FIELDS = ("name", "role", "trial_index", "n_trials", "lr", "selected_lr", "selection_score", "trial_seed")
# Usual GLUE order, so that tables read like the papers; unknown tasks follow alphabetically.
TASK_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
DEFAULT_HEADLINE = {"cola": "matthews_correlation", "stsb": "pearson", "mrpc": "f1", "qqp": "f1"}
# Quantities the tables and plots always show: present as columns (NaN) even when no record has
# them, so that a results folder from an older or partial runner still gives a report.
CORE_QUANTITIES = ("params.trainable", "params.total", "params.head", "params.trainable_pct",
                   "memory.peak_rss_bytes", "memory.cuda_peak_allocated_bytes",
                   "throughput.train_samples_per_s", "time.train_s", "storage.bytes")


def task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def sort_tasks(tasks) -> list[str]:
    return sorted({str(t) for t in tasks}, key=task_sort_key)


def avg_label(tasks) -> str:
    """Column name of a task average; names its tasks so different averages are never confused."""
    return "avg (" + (", ".join(sort_tasks(tasks)) or "no task with an ok record") + ")"


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _flatten(prefix: str, node: dict, out: dict) -> None:
    # Hot loop (every leaf of every record): exact type checks first, JSON gives int/float.
    for k, v in node.items():
        t = type(v)
        if t is float or t is int:
            out[f"{prefix}.{k}"] = float(v)
        elif t is dict:
            _flatten(f"{prefix}.{k}", v, out)
        elif t is not bool and _is_number(v):
            out[f"{prefix}.{k}"] = float(v)


def records_to_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record (any status).

    Identity columns: model, method, method_label, task, seed, status, config_hash, finished_at
    (UTC Timestamp, NaT when absent), created_at, headline_metric, sweep, run_id, path (the record
    file, from `_path`), predictions (file name or None), error_type, error_message, error_phase,
    error_where, error_log, study_<f> for f in STUDY_FIELDS (None without a study block).
    Value columns (float): `headline` (= metrics[headline_metric]), `metrics.<name>` and
    `<section>.<leaf>` for every numeric leaf of params/memory/throughput/time/storage/train/data.
    """
    rows = []
    for rec in records:
        task = str(rec.get("task"))
        headline = rec.get("headline_metric") or DEFAULT_HEADLINE.get(task, "accuracy")
        metrics = rec.get("metrics") or {}
        error = rec.get("error") or {}
        row = {
            "model": str(rec.get("model")),
            "method": str(rec.get("method")),
            "method_label": str(rec.get("method_label") or rec.get("method")),
            "task": task,
            "seed": int(rec.get("seed")),
            "status": str(rec.get("status")),
            "config_hash": str(rec.get("config_hash") or ""),
            "finished_at": rec.get("finished_at"),
            "created_at": rec.get("created_at"),
            "headline_metric": headline,
            "sweep": rec.get("sweep"),
            "run_id": rec.get("run_id"),
            "path": rec.get("_path"),
            "predictions": rec.get("predictions") or None,
        }
        study = dict(rec.get("study")) if isinstance(rec.get("study"), dict) else {}
        if study and study.get("selection_score") is None:  # the runner records it as selection_metrics
            sel = rec.get("selection_metrics") or {}
            study["selection_score"] = sel.get(headline) if isinstance(sel, dict) else None
        for f in STUDY_FIELDS:
            v = study.get(f)
            row[f"study_{f}"] = v if v is None or isinstance(v, str) or _is_number(v) else str(v)
        for f in ERROR_FIELDS:
            row[f"error_{f}"] = error.get(f) if isinstance(error, dict) else None
        val = metrics.get(headline) if isinstance(metrics, dict) else None
        row["headline"] = float(val) if _is_number(val) else np.nan
        if isinstance(metrics, dict):
            _flatten("metrics", metrics, row)
        for section in MEASURE_SECTIONS:
            if isinstance(rec.get(section), dict):
                _flatten(section, rec[section], row)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=SEED_KEY + ["status", "headline"])
    absent = [q for q in CORE_QUANTITIES if q not in frame.columns]
    if absent:
        frame = pd.concat([frame, pd.DataFrame(np.nan, index=frame.index, columns=absent)], axis=1)
    for col in ("finished_at", "created_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, errors="coerce", format="ISO8601")
    for col in value_columns(frame):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def value_columns(frame: pd.DataFrame) -> list[str]:
    """The aggregated quantities: headline first, then metrics, then measurements (sorted)."""
    metric = sorted(c for c in frame.columns if c.startswith("metrics."))
    measure = sorted(c for c in frame.columns if c.split(".", 1)[0] in MEASURE_SECTIONS and "." in c)
    return (["headline"] if "headline" in frame.columns else []) + metric + measure


def dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one record per (model, method_label, task, seed): the newest by finished_at.

    Several records for one seed cell happen when a cell is rerun with a changed config or in a
    second sweep; averaging them would mix experiments. Ties on finished_at prefer an ok record,
    then the later path (deterministic). Returns (kept, conflicts); conflicts has one row per
    affected seed cell: model, method_label, task, seed, n_records, kind ("config_hash differs" or
    "duplicate (same config_hash)"), kept_path, kept_config_hash, kept_status, kept_finished_at,
    dropped_paths (";"-joined), dropped_config_hashes.
    """
    conflict_cols = SEED_KEY + ["n_records", "kind", "kept_path", "kept_config_hash", "kept_status",
                                "kept_finished_at", "dropped_paths", "dropped_config_hashes"]
    if frame.empty:
        return frame.copy(), pd.DataFrame(columns=conflict_cols)
    order = frame.assign(_ok=(frame["status"] == "ok"), _ts=frame["finished_at"].fillna(frame["created_at"]))
    order = order.sort_values(["_ts", "_ok", "path"], na_position="first", kind="stable")
    dup = order.duplicated(SEED_KEY, keep=False)
    kept = order.drop_duplicates(SEED_KEY, keep="last").drop(columns=["_ok", "_ts"])
    conflicts = []
    for key, grp in order[dup].groupby(SEED_KEY, sort=True):
        last, rest = grp.iloc[-1], grp.iloc[:-1]
        differs = grp["config_hash"].nunique() > 1
        conflicts.append(dict(zip(SEED_KEY, key)) | {
            "n_records": len(grp),
            "kind": "config_hash differs" if differs else "duplicate (same config_hash)",
            "kept_path": last["path"], "kept_config_hash": last["config_hash"][:8],
            "kept_status": last["status"], "kept_finished_at": last["finished_at"],
            "dropped_paths": ";".join(str(p) for p in rest["path"]),
            "dropped_config_hashes": ";".join(h[:8] for h in rest["config_hash"]),
        })
    return kept.reset_index(drop=True), pd.DataFrame(conflicts, columns=conflict_cols)


def cell_grid(kept: pd.DataFrame) -> pd.DataFrame:
    """Every model x method_label x task x seed combination seen in any record of that model.

    A combination without a record is `missing`; otherwise the kept record's status and error.
    Nothing is dropped, so a failed or never-run cell is visible in every report.
    Columns: model, method_label, task, seed, status, method, path, error_type, error_message,
    error_phase, error_where, error_log.
    """
    cols = SEED_KEY + ["status", "method", "path"] + [f"error_{f}" for f in ERROR_FIELDS]
    if kept.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for model, sub in kept.groupby("model", sort=True):
        idx = pd.MultiIndex.from_product(
            [[model], sorted(sub["method_label"].unique()), sort_tasks(sub["task"].unique()),
             sorted(sub["seed"].unique())], names=SEED_KEY)
        parts.append(idx.to_frame(index=False))
    grid = pd.concat(parts, ignore_index=True)
    grid = grid.merge(kept[[c for c in cols if c in kept.columns]], on=SEED_KEY, how="left")
    grid["status"] = grid["status"].fillna("missing")
    method_of = kept.drop_duplicates(["model", "method_label"])[["model", "method_label", "method"]]
    grid = grid.drop(columns="method").merge(method_of, on=["model", "method_label"], how="left")
    return grid[cols]


def cell_stats(kept: pd.DataFrame) -> pd.DataFrame:
    """Long form, for a regression gate: one row per (model, method_label, task, quantity).

    Only ok records count. Columns: model, method_label, task, quantity, mean, std (sample,
    ddof=1; NaN when n == 1), n (records with a value for that quantity).
    """
    ok = kept[kept["status"] == "ok"]
    vals = value_columns(ok)
    if ok.empty or not vals:
        return pd.DataFrame(columns=KEY + ["quantity", "mean", "std", "n"])
    long = ok.melt(id_vars=KEY, value_vars=vals, var_name="quantity").dropna(subset=["value"])
    g = long.groupby(KEY + ["quantity"], sort=True)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    return out


def _cell_status(n_ok: int, n_failed: int, n_seeds: int) -> str:
    if n_ok == n_seeds:
        return "ok"
    if n_ok > 0:
        return "partial"
    return "failed" if n_failed > 0 else "missing"


def aggregate_cells(kept: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Wide form: one row per (model, method_label, task) of the grid (none dropped).

    Columns: row_type ("cell"), model, method, method_label, task, headline_metric, status ("ok":
    every grid seed ok; "partial"; "failed": no ok seed, some failed/interrupted; "missing": no
    record at all), n_seeds (grid seeds), n_ok, n_failed (failed + interrupted), n_missing, errors
    ("seed N: Type: message" of non-ok seeds, ";"-joined), then `<q>_mean`, `<q>_std`, `<q>_n` for
    every quantity q of value_columns (headline first), plus `<q>_ci_low`/`<q>_ci_high` for the
    metrics (headline, metrics.*): the 95% t interval over seeds (n >= 2, `ci_method` says so;
    bench.report.verdicts adds bootstrap intervals for one-seed cells with predictions). Only ok
    records enter the statistics.
    """
    ok = kept[kept["status"] == "ok"]
    vals = value_columns(kept)
    counts = grid.assign(
        _ok=grid["status"] == "ok", _failed=grid["status"].isin(["failed", "interrupted"]),
        _missing=grid["status"] == "missing",
    ).groupby(KEY, sort=False).agg(
        method=("method", "first"), n_seeds=("seed", "size"), n_ok=("_ok", "sum"),
        n_failed=("_failed", "sum"), n_missing=("_missing", "sum"))
    bad = grid[grid["status"] != "ok"]
    err_text = ("seed " + bad["seed"].astype(str) + ": " + bad["status"].astype(str)
                + np.where(bad["error_type"].notna(), " " + bad["error_type"].astype(str), "")
                + np.where(bad["error_message"].notna(), ": " + bad["error_message"].astype(str), ""))
    errors = err_text.groupby([bad[k] for k in KEY]).agg("; ".join) if len(bad) else pd.Series(dtype=str)
    stat_cols = [f"{q}_{s}" for q in vals for s in ("mean", "std", "n") + (CI_SUFFIXES if is_metric(q) else ())]
    parts = [counts]
    if vals and not ok.empty:
        g = ok.groupby(KEY, sort=False)[vals]
        stats = [g.mean().add_suffix("_mean"), g.std(ddof=1).add_suffix("_std"), g.count().add_suffix("_n")]
        parts.append(pd.concat(stats, axis=1))
    cells = pd.concat(parts, axis=1, join="outer").reindex(columns=list(counts.columns) + stat_cols)
    for q in filter(is_metric, vals):
        cells[f"{q}_ci_low"], cells[f"{q}_ci_high"] = t_bounds(cells[f"{q}_mean"], cells[f"{q}_std"],
                                                               cells[f"{q}_n"].fillna(0))
    cells = cells[cells["n_seeds"].notna()].copy().reset_index()
    n_cols = [f"{q}_n" for q in vals]
    cells[n_cols] = cells[n_cols].fillna(0).astype(int)
    hm = kept.groupby(["task"])["headline_metric"].agg(lambda s: s.mode().iloc[0])
    cells["headline_metric"] = cells["task"].map(hm)
    cells["errors"] = [errors.get(tuple(k), "") for k in cells[KEY].itertuples(index=False)]
    for c in ("n_seeds", "n_ok", "n_failed", "n_missing"):
        cells[c] = cells[c].astype(int)
    cells["status"] = [_cell_status(o, f, s) for o, f, s in zip(cells["n_ok"], cells["n_failed"], cells["n_seeds"])]
    hn = cells["headline_n"] if "headline_n" in cells else pd.Series(0, index=cells.index)
    cells["ci_method"] = [f"t over seeds (n={n})" if n >= 2 else "" for n in hn]
    cells["row_type"] = "cell"
    cells["_t"] = cells["task"].map(task_sort_key)
    cells = cells.sort_values(["model", "method_label", "_t"]).drop(columns="_t").reset_index(drop=True)
    head = ["row_type", "model", "method", "method_label", "task", "headline_metric", "status",
            "n_seeds", "n_ok", "n_failed", "n_missing", "errors", "ci_method"]
    return cells[head + stat_cols].copy()


CI_SUFFIXES = ("ci_low", "ci_high")


def is_metric(q: str) -> bool:
    """Quantities that get confidence intervals: the headline and every task metric."""
    return q == "headline" or q.startswith("metrics.")


def tasks_present(cells: pd.DataFrame, model: str) -> list[str]:
    """Tasks that have at least one ok cell for `model`: the tasks its average runs over."""
    sub = cells[(cells["model"] == model) & (cells["n_ok"] > 0)]
    return sort_tasks(sub["task"].unique())


def summarize_methods(kept: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method_label): the GLUE-style average and per-method measurements.

    headline_mean: unweighted mean over the model's tasks present (tasks_present) of the cells'
    headline means; NaN when the method lacks an ok record on any of those tasks (never an average
    over fewer tasks). headline_std / headline_n: sample std and count, over seeds that are ok on
    every one of those tasks, of the per-seed task average (std NaN when n < 2); headline_ci_low/high:
    headline_mean ± t·std/√n from those (ci_method names n). Measurement
    columns `<q>_mean` (q = params.*, memory.*, throughput.*, time.*, storage.*) are the mean over
    the method's ok tasks of the cell means, with `<q>_min`/`<q>_max` over those tasks;
    time.train_s_sum is the summed training time over the averaged tasks (NaN when incomplete).
    Other columns: row_type ("summary"), model, method, method_label, task (= avg_label(tasks)),
    tasks, n_tasks (ok tasks of the method), missing_tasks, status ("ok" or "missing").
    """
    if cells.empty:
        return pd.DataFrame(columns=KEY)
    present = {m: tasks_present(cells, m) for m in cells["model"].unique()}
    in_avg = pd.Series([t in present[m] for m, t in zip(cells["model"], cells["task"])], index=cells.index)
    have = cells[(cells["n_ok"] > 0) & in_avg]
    keys = ["model", "method_label"]
    base = cells.groupby(keys, sort=True).agg(method=("method", "first")).reset_index()
    got = have.groupby(keys, sort=True)["task"].agg(lambda t: set(t))
    base["n_tasks"] = [len(got.get((m, lbl), ())) for m, lbl in zip(base["model"], base["method_label"])]
    base["row_type"] = "summary"
    base["task"] = [avg_label(present[m]) for m in base["model"]]
    base["tasks"] = [",".join(present[m]) for m in base["model"]]
    missing = [[t for t in present[m] if t not in got.get((m, lbl), set())]
               for m, lbl in zip(base["model"], base["method_label"])]
    base["missing_tasks"] = [",".join(x) for x in missing]
    complete = np.array([not x and len(present[m]) > 0 for x, m in zip(missing, base["model"])])
    base["status"] = np.where(complete, "ok", "missing")
    base = base.set_index(keys)
    base["headline_mean"] = have.groupby(keys)["headline_mean"].mean().reindex(base.index)
    base.loc[~complete, "headline_mean"] = np.nan
    # Spread of the average: per seed, the mean over the averaged tasks (seeds ok on all of them).
    ok = kept[kept["status"] == "ok"]
    std, n = pd.Series(np.nan, index=base.index), pd.Series(0, index=base.index)
    for model, tasks in present.items():
        sub = ok[(ok["model"] == model) & ok["task"].isin(tasks)]
        wide = sub.pivot_table(index=["method_label", "seed"], columns="task", values="headline", aggfunc="mean")
        seed_avg = wide.reindex(columns=tasks).dropna().mean(axis=1)
        g = seed_avg.groupby(level="method_label")
        idx = pd.MultiIndex.from_product([[model], g.size().index], names=keys)
        std.loc[idx], n.loc[idx] = g.std(ddof=1).to_numpy(), g.size().to_numpy()
    base["headline_std"] = std.where(complete & (n > 1))
    base["headline_n"] = n.where(complete, 0).astype(int)
    base["headline_ci_low"], base["headline_ci_high"] = t_bounds(base["headline_mean"], base["headline_std"],
                                                                 base["headline_n"])
    base["ci_method"] = [f"t over seeds (n={k})" if k >= 2 and np.isfinite(s) else ""
                         for k, s in zip(base["headline_n"], base["headline_std"])]
    measures = [c[:-5] for c in cells.columns if c.endswith("_mean") and c.split(".", 1)[0] in MEASURE_SECTIONS]
    if measures:
        g = have.groupby(keys)[[f"{q}_mean" for q in measures]]
        stats = [g.mean(), g.min().rename(columns=lambda c: c[:-5] + "_min"),
                 g.max().rename(columns=lambda c: c[:-5] + "_max")]
        wide = pd.concat(stats, axis=1).reindex(base.index)
        wide = wide[[f"{q}_{s}" for q in measures for s in ("mean", "min", "max")]]
        if "time.train_s_mean" in have:
            total = have.groupby(keys)["time.train_s_mean"].sum().reindex(base.index)
            wide["time.train_s_sum"] = total.where(complete)
        base = pd.concat([base, wide], axis=1)
    head = ["row_type", "model", "method", "method_label", "task", "tasks", "n_tasks", "missing_tasks", "status",
            "headline_mean", "headline_std", "headline_n", "headline_ci_low", "headline_ci_high", "ci_method"]
    out = base.reset_index()
    return out[head + [c for c in out.columns if c not in head]].copy()


@dataclass
class Aggregation:
    """Everything a report needs, computed once. `records` is the per-record frame before dedupe."""

    records: pd.DataFrame
    kept: pd.DataFrame
    conflicts: pd.DataFrame
    grid: pd.DataFrame
    cells: pd.DataFrame
    summary: pd.DataFrame
    models: list[str] = field(default_factory=list)
    #: learning-rate trial records (study.role == "trial"), kept out of every table; budget curves only
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: filled by bench.report.verdicts.add_verdicts: pairwise tests, ranks, budget curves, notes
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)
    budget: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    def tasks(self, model: str) -> list[str]:
        """Tasks of the model's average (at least one ok record)."""
        return tasks_present(self.cells, model)

    def grid_tasks(self, model: str) -> list[str]:
        return sort_tasks(self.grid.loc[self.grid["model"] == model, "task"].unique())

    def failures(self) -> pd.DataFrame:
        """Grid cells without an ok record (failed, interrupted or missing)."""
        return self.grid[self.grid["status"] != "ok"].reset_index(drop=True)


def build(records: list[dict]) -> Aggregation:
    """Run the whole pipeline on records as returned by bench.records.load_records."""
    frame = records_to_frame(records)
    is_trial = frame["study_role"].eq("trial") if "study_role" in frame else pd.Series(False, index=frame.index)
    trials = frame[is_trial].reset_index(drop=True)
    kept, conflicts = dedupe(frame[~is_trial])
    grid = cell_grid(kept)
    cells = aggregate_cells(kept, grid) if not kept.empty else pd.DataFrame(columns=KEY)
    summary = summarize_methods(kept, cells) if not kept.empty else pd.DataFrame(columns=KEY)
    models = sorted(kept["model"].unique()) if not kept.empty else []
    return Aggregation(frame, kept, conflicts, grid, cells, summary, models, trials)

