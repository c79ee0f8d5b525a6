"""Records -> pandas DataFrames: the only place where numbers are combined.

Everything a report (or the regression gate) shows is computed here, from result records only, so
that one definition of "mean over seeds" serves tables, plots, CSV and the gate alike. Nothing in
this module formats, scales or draws: values stay on the records' own scale (metrics 0-1).

Pipeline (each step is a public function so that callers can stop where they need to):

    records_to_frame(records)  one row per record, nested fields flattened (`metrics.f1`, `memory.peak_rss_bytes`)
    dedupe(frame, records)     one record per (model, method_label, task, seed) (bench.records.results);
                               conflicts listed
    cell_grid(kept)            every model x method_label x task x seed seen for that model, with status
    cell_stats(kept)           long form: (model, method_label, task, quantity) -> mean, std, n
    aggregate_cells(kept, grid)  wide form: one row per (model, method_label, task)
    summarize_methods(kept, cells)  one row per (model, method_label): the task average
    build(records)             all of the above in an `Aggregation`

Task order and headline metrics come from the task specs in the records (bench.records.results.TaskCatalog):
functions that order tasks take the catalog, and without one fall back to GLUE's order.

Learning-rate trials of a tuning study (`study.role == "trial"`) are different learning rates under
one method label: they are split off before dedupe (`Aggregation.trials`) and feed only the
tuning curves (expected best score vs number of trials); the study's `final` records are ordinary cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.analysis.frame import ERROR_FIELDS, MEASURE_SECTIONS, records_to_frame, value_columns
from bench.analysis.intervals import t_bounds
from bench.records.results import SEED_KEY as _SEED_KEY
from bench.records.results import TaskCatalog, newest_per_seed

KEY = ["model", "method_label", "task"]
SEED_KEY = list(_SEED_KEY)


def sort_tasks(tasks, catalog: TaskCatalog | None = None) -> list[str]:
    """Tasks in the specs' order (`order`; GLUE's for GLUE tasks), the rest alphabetically."""
    return (catalog or TaskCatalog()).sort(tasks)


def avg_label(tasks, catalog: TaskCatalog | None = None) -> str:
    """Column name of a task average; names its tasks so different averages are never confused."""
    return "avg (" + (", ".join(sort_tasks(tasks, catalog)) or "no task with an ok record") + ")"


def dedupe(frame: pd.DataFrame, records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one record per (model, method_label, task, seed): bench.records.results.newest_per_seed (newest
    by finished_at; ties prefer an ok record, then the later path). Row i of `frame` is records[i].

    Several records for one seed cell happen when a cell is rerun with a changed config or in a
    second sweep; averaging them would mix experiments. Returns (kept, conflicts); conflicts has one
    row per affected seed cell: model, method_label, task, seed, n_records, kind ("config_hash
    differs" or "duplicate (same config_hash)"), kept_path, kept_config_hash, kept_status,
    kept_finished_at, dropped_paths (";"-joined), dropped_config_hashes.
    """
    conflict_cols = SEED_KEY + ["n_records", "kind", "kept_path", "kept_config_hash", "kept_status",
                                "kept_finished_at", "dropped_paths", "dropped_config_hashes"]
    if frame.empty:
        return frame.copy(), pd.DataFrame(columns=conflict_cols)
    row_of = {id(rec): i for i, rec in enumerate(records)}
    kept_recs, groups = newest_per_seed(records)
    kept = frame.iloc[sorted(row_of[id(r)] for r in kept_recs)].reset_index(drop=True)
    conflicts = []
    for grp in groups:
        rows = frame.iloc[[row_of[id(r)] for r in grp]]
        last, rest = rows.iloc[-1], rows.iloc[:-1]
        conflicts.append({k: last[k] for k in SEED_KEY} | {
            "n_records": len(rows),
            "kind": "config_hash differs" if rows["config_hash"].nunique() > 1 else "duplicate (same config_hash)",
            "kept_path": last["path"], "kept_config_hash": last["config_hash"][:8],
            "kept_status": last["status"], "kept_finished_at": last["finished_at"],
            "dropped_paths": ";".join(str(p) for p in rest["path"]),
            "dropped_config_hashes": ";".join(h[:8] for h in rest["config_hash"]),
        })
    conflicts.sort(key=lambda c: tuple(c[k] for k in SEED_KEY))
    return kept, pd.DataFrame(conflicts, columns=conflict_cols)


def cell_grid(kept: pd.DataFrame, catalog: TaskCatalog | None = None) -> pd.DataFrame:
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
            [[model], sorted(sub["method_label"].unique()), sort_tasks(sub["task"].unique(), catalog),
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


def aggregate_cells(kept: pd.DataFrame, grid: pd.DataFrame, catalog: TaskCatalog | None = None) -> pd.DataFrame:
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
    bounds = {}
    for q in filter(is_metric, vals):  # built apart and joined once (inserting hundreds of columns one by one
        # fragments the frame: pandas' PerformanceWarning on every report of a wide catalogue)
        bounds[f"{q}_ci_low"], bounds[f"{q}_ci_high"] = t_bounds(cells[f"{q}_mean"], cells[f"{q}_std"],
                                                                 cells[f"{q}_n"].fillna(0))
    if bounds:
        cols = cells.columns
        cells = pd.concat([cells.drop(columns=[c for c in bounds if c in cells]),
                           pd.DataFrame(bounds, index=cells.index)], axis=1)[cols].copy()
    cells = cells[cells["n_seeds"].notna()].copy().reset_index()
    n_cols = [f"{q}_n" for q in vals]
    cells[n_cols] = cells[n_cols].fillna(0).astype(int)
    cells = cells.copy()  # one block again after replacing hundreds of columns (no PerformanceWarning below)
    hm = kept.groupby(["task"])["headline_metric"].agg(lambda s: s.mode().iloc[0])
    cells["headline_metric"] = cells["task"].map(hm)
    cells["errors"] = [errors.get(tuple(k), "") for k in cells[KEY].itertuples(index=False)]
    for c in ("n_seeds", "n_ok", "n_failed", "n_missing"):
        cells[c] = cells[c].astype(int)
    cells["status"] = [_cell_status(o, f, s) for o, f, s in zip(cells["n_ok"], cells["n_failed"], cells["n_seeds"])]
    hn = cells["headline_n"] if "headline_n" in cells else pd.Series(0, index=cells.index)
    cells["ci_method"] = [f"t over seeds (n={n})" if n >= 2 else "" for n in hn]
    cells["row_type"] = "cell"
    cells["_t"] = cells["task"].map((catalog or TaskCatalog()).key)
    cells = cells.sort_values(["model", "method_label", "_t"]).drop(columns="_t").reset_index(drop=True)
    head = ["row_type", "model", "method", "method_label", "task", "headline_metric", "status",
            "n_seeds", "n_ok", "n_failed", "n_missing", "errors", "ci_method"]
    return cells[head + stat_cols].copy()


CI_SUFFIXES = ("ci_low", "ci_high")


def is_metric(q: str) -> bool:
    """Quantities that get confidence intervals: the headline, every task metric and the retention
    measurements (forgetting, drift, intruder dimensions: a per-seed outcome like the metric)."""
    return q == "headline" or q.startswith(("metrics.", "retention."))


def tasks_present(cells: pd.DataFrame, model: str, catalog: TaskCatalog | None = None) -> list[str]:
    """Tasks that have at least one ok cell for `model`: the tasks its average runs over."""
    sub = cells[(cells["model"] == model) & (cells["n_ok"] > 0)]
    return sort_tasks(sub["task"].unique(), catalog)


def _seed_average_spread(kept: pd.DataFrame, present: dict, index, keys) -> tuple[pd.Series, pd.Series]:
    """Spread of the task average: per seed, the mean over the averaged tasks (seeds ok on all of
    them); (sample std, n) per (model, method_label)."""
    ok = kept[kept["status"] == "ok"]
    std, n = pd.Series(np.nan, index=index), pd.Series(0, index=index)
    for model, tasks in present.items():
        sub = ok[(ok["model"] == model) & ok["task"].isin(tasks)]
        wide = sub.pivot_table(index=["method_label", "seed"], columns="task", values="headline", aggfunc="mean")
        seed_avg = wide.reindex(columns=tasks).dropna().mean(axis=1)
        g = seed_avg.groupby(level="method_label")
        idx = pd.MultiIndex.from_product([[model], g.size().index], names=keys)
        std.loc[idx], n.loc[idx] = g.std(ddof=1).to_numpy(), g.size().to_numpy()
    return std, n


def _measure_columns(cells: pd.DataFrame, have: pd.DataFrame, index, keys, complete) -> pd.DataFrame | None:
    """`<q>_mean/_min/_max` over the method's ok tasks of the cell means, and time.train_s_sum."""
    measures = [c[:-5] for c in cells.columns if c.endswith("_mean") and c.split(".", 1)[0] in MEASURE_SECTIONS]
    if not measures:
        return None
    g = have.groupby(keys)[[f"{q}_mean" for q in measures]]
    stats = [g.mean(), g.min().rename(columns=lambda c: c[:-5] + "_min"),
             g.max().rename(columns=lambda c: c[:-5] + "_max")]
    wide = pd.concat(stats, axis=1).reindex(index)
    wide = wide[[f"{q}_{s}" for q in measures for s in ("mean", "min", "max")]]
    if "time.train_s_mean" in have:
        total = have.groupby(keys)["time.train_s_mean"].sum().reindex(index)
        wide["time.train_s_sum"] = total.where(complete)
    return wide


def summarize_methods(kept: pd.DataFrame, cells: pd.DataFrame, catalog: TaskCatalog | None = None) -> pd.DataFrame:
    """One row per (model, method_label): the task average and per-method measurements.

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
    present = {m: tasks_present(cells, m, catalog) for m in cells["model"].unique()}
    in_avg = pd.Series([t in present[m] for m, t in zip(cells["model"], cells["task"])], index=cells.index)
    have = cells[(cells["n_ok"] > 0) & in_avg]
    keys = ["model", "method_label"]
    base = cells.groupby(keys, sort=True).agg(method=("method", "first")).reset_index()
    got = have.groupby(keys, sort=True)["task"].agg(lambda t: set(t))
    base["n_tasks"] = [len(got.get((m, lbl), ())) for m, lbl in zip(base["model"], base["method_label"])]
    base["row_type"] = "summary"
    base["task"] = [avg_label(present[m], catalog) for m in base["model"]]
    base["tasks"] = [",".join(present[m]) for m in base["model"]]
    missing = [[t for t in present[m] if t not in got.get((m, lbl), set())]
               for m, lbl in zip(base["model"], base["method_label"])]
    base["missing_tasks"] = [",".join(x) for x in missing]
    complete = np.array([not x and len(present[m]) > 0 for x, m in zip(missing, base["model"])])
    base["status"] = np.where(complete, "ok", "missing")
    base = base.set_index(keys)
    base["headline_mean"] = have.groupby(keys)["headline_mean"].mean().reindex(base.index)
    base.loc[~complete, "headline_mean"] = np.nan
    std, n = _seed_average_spread(kept, present, base.index, keys)
    base["headline_std"] = std.where(complete & (n > 1))
    base["headline_n"] = n.where(complete, 0).astype(int)
    base["headline_ci_low"], base["headline_ci_high"] = t_bounds(base["headline_mean"], base["headline_std"],
                                                                 base["headline_n"])
    base["ci_method"] = [f"t over seeds (n={k})" if k >= 2 and np.isfinite(s) else ""
                         for k, s in zip(base["headline_n"], base["headline_std"])]
    wide = _measure_columns(cells, have, base.index, keys, complete)
    if wide is not None:
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
    #: learning-rate trial records (study.role == "trial"), kept out of every table; tuning curves only
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: filled by bench.report.verdicts.add_verdicts: pairwise tests, ranks, tuning curves, notes
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: expected best selection score vs number of learning-rate trials ("budget" elsewhere means data size)
    tuning_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    #: filled by bench.report.chance.add_chance: trivial-baseline rows (table.csv row_type
    #: "chance"), each method's test against chance, and {(model, task): why} for tasks with no verdict
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)
    chance: pd.DataFrame = field(default_factory=pd.DataFrame)
    no_verdict: dict = field(default_factory=dict)
    #: task order, headline metrics and captions from the records' task specs
    catalog: TaskCatalog = field(default_factory=TaskCatalog)
    #: filled by bench.report.retention.write_retention: seed-aware verdicts on forgetting, drift, intruders
    #: (None where no record measured retention)
    retention_verdicts: pd.DataFrame | None = None

    def tasks(self, model: str) -> list[str]:
        """Tasks of the model's average (at least one ok record)."""
        return tasks_present(self.cells, model, self.catalog)

    def grid_tasks(self, model: str) -> list[str]:
        return self.catalog.sort(self.grid.loc[self.grid["model"] == model, "task"].unique())

    def failures(self) -> pd.DataFrame:
        """Grid cells without an ok record (failed, interrupted or missing)."""
        return self.grid[self.grid["status"] != "ok"].reset_index(drop=True)


def build(records: list[dict]) -> Aggregation:
    """Run the whole pipeline on records as returned by bench.records.schema.load_records."""
    frame = records_to_frame(records)
    catalog = TaskCatalog.from_records(records)
    is_trial = frame["study_role"].eq("trial") if "study_role" in frame else pd.Series(False, index=frame.index)
    trials = frame[is_trial].reset_index(drop=True)
    finals = [r for r, t in zip(records, is_trial) if not t]
    kept, conflicts = dedupe(frame[~is_trial].reset_index(drop=True), finals)
    grid = cell_grid(kept, catalog)
    cells = aggregate_cells(kept, grid, catalog) if not kept.empty else pd.DataFrame(columns=KEY)
    summary = summarize_methods(kept, cells, catalog) if not kept.empty else pd.DataFrame(columns=KEY)
    models = sorted(kept["model"].unique()) if not kept.empty else []
    return Aggregation(frame, kept, conflicts, grid, cells, summary, models, trials, catalog=catalog)

