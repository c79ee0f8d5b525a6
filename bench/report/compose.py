"""The report's composition part: soups, multi-task merges and transfer, each with the
paired tests the report uses everywhere.

Composed records (bench/compose: `composition`, `composed_from`) and transfer records (ordinary
cells with `train.init_from`) are ordinary records, so the main tables list them already; what a
reader cannot get from those tables is the comparison each of them exists for:

* soups: the soup against the mean of its ingredients (the seeds it averaged) and against the
  single seed a practitioner would have picked on the selection split;
* merges: each task's merged model against that task's own delta (retention = merged / own);
* transfer: a target task trained from a source task's delta against the same method from scratch
  at the same budget, seeds paired (seed s of the transfer arm starts from seed s of the source).

Every difference is a paired bootstrap over the shared dev examples (bench.analysis.example_bootstrap.paired_bootstrap,
seeds pooled as in the main pairwise table) with a null-centred p; Holm is applied per family, and
each table names its family. Source records are read through the paths in `composed_from`, so a
report of a folder of composed records needs the source folders to still exist (a missing one is a
note, not a crash). Reads records only.
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import intervals, multiple_comparisons, resampled_metrics
from bench.records.schema import read_record
from bench.report.compose_tests import SEED_TEST, TEST
from bench.report.compose_tests import compare as _compare
from bench.report.compose_tests import main_split as _main_split
from bench.report.compose_tests import verdict as _verdict

SOUP_COLUMNS = ["model", "task", "method", "kind", "n_ingredients", "n_used", "metric", "soup", "mean_of_seeds",
                "seeds_ci_low", "seeds_ci_high", "best_seed", "vs_mean_delta", "vs_mean_ci_low", "vs_mean_ci_high",
                "vs_mean_p_adj", "vs_mean_verdict", "vs_best_delta", "vs_best_ci_low", "vs_best_ci_high",
                "vs_best_p_adj", "vs_best_verdict", "n_examples"]
MERGE_COLUMNS = ["model", "method", "kind", "tasks", "task", "metric", "own", "merged", "retention", "delta",
                 "ci_low", "ci_high", "p", "p_adjusted", "p_equiv", "p_equiv_adjusted", "verdict", "test", "n_examples"]
TRANSFER_COLUMNS = ["model", "method", "budget", "target", "source", "metric", "n_seeds", "transfer", "scratch",
                    "delta", "ci_low", "ci_high", "p", "p_adjusted", "p_equiv", "p_equiv_adjusted", "verdict", "test",
                    "head_transferred", "n_examples"]
def _sources(rec: dict, cache: dict, notes: list[str]) -> list[dict]:
    out = []
    for src in rec.get("composed_from") or []:
        path = src.get("record")
        if path not in cache:
            cache[path] = None
            found = Path(path)
            if not found.is_file() and rec.get("_path"):  # results moved: the source sweep beside this one
                found = Path(rec["_path"]).parent.parent / found.parent.name / found.name
            try:
                cache[path] = dict(read_record(found), _path=str(found))
            except ValueError as exc:
                notes.append(f"{rec.get('run_id')}: source record not read ({exc})")
        if cache[path] is not None:
            out.append(cache[path])
    return out


def soup_table(records: list[dict], b: int, notes: list[str], cache: dict, margin: float | None = None) -> pd.DataFrame:
    rows = []
    for rec in records:
        comp = rec.get("composition") or {}
        if comp.get("op") != "soup" or rec.get("status") != "ok":
            continue
        hm = rec["headline_metric"]
        srcs = _sources(rec, cache, notes)
        own = _main_split(rec, notes)
        ing = [(s, _main_split(s, notes)) for s in srcs]
        ing = [(s, p) for s, p in ing if p is not None]
        if own is None or not ing or hm not in resampled_metrics.METRICS:
            notes.append(f"{rec['run_id']}: soup not tested (predictions of the soup or its ingredients missing)")
            continue
        seeds = [float(s["metrics"][hm]) for s, _ in ing]
        iv = intervals.t_interval(seeds)
        best_id = (comp.get("baselines") or {}).get("best_seed_by_selection")
        best = [p for s, p in ing if s["run_id"] == best_id]
        vs_mean = _compare(hm, [own], [p for _, p in ing], b, margin=margin)
        vs_best = _compare(hm, [own], best, b, margin=margin) if best else None
        label = str(rec.get("method_label") or rec["method"]).split("+soup[")[0]
        rows.append({"model": rec["model"], "task": rec["task"], "method": label, "kind": comp.get("kind"),
                     "n_ingredients": len(comp.get("ingredients") or ing), "n_used": len(comp.get("used") or []),
                     "metric": hm, "soup": rec["metrics"].get(hm), "mean_of_seeds": float(np.mean(seeds)),
                     "seeds_ci_low": iv.low, "seeds_ci_high": iv.high,
                     "best_seed": (comp.get("baselines") or {}).get("best_seed_by_selection_dev", np.nan),
                     **_paired_cols("vs_mean", vs_mean), **_paired_cols("vs_best", vs_best),
                     "n_examples": vs_mean.n_examples if vs_mean else 0})
    frame = pd.DataFrame(rows, columns=SOUP_COLUMNS + ["vs_mean_p", "vs_best_p", "vs_mean_p_equiv", "vs_best_p_equiv"])
    # Holm over every soup test of one (model, task): both comparisons of each soup kind and method
    for idx in frame.groupby(["model", "task"]).groups.values():
        ps = [(i, c) for i in idx for c in ("vs_mean", "vs_best") if math.isfinite(frame.at[i, f"{c}_p"])]
        adj = multiple_comparisons.holm([frame.at[i, f"{c}_p"] for i, c in ps]) if ps else []
        adj_eq = multiple_comparisons.holm([frame.at[i, f"{c}_p_equiv"] for i, c in ps]) if ps else []
        for (i, c), pa, pe in zip(ps, adj, adj_eq):
            frame.at[i, f"{c}_p_adj"] = pa
            frame.at[i, f"{c}_verdict"] = _verdict(pa, frame.at[i, f"{c}_ci_low"], frame.at[i, f"{c}_ci_high"],
                                                   frame.at[i, f"{c}_delta"], pe)
    return frame[SOUP_COLUMNS].sort_values(["model", "task", "method", "kind"], ignore_index=True)


def _paired_cols(prefix: str, res) -> dict:
    nan = float("nan")
    if res is None:
        return {f"{prefix}_delta": nan, f"{prefix}_ci_low": nan, f"{prefix}_ci_high": nan, f"{prefix}_p": nan,
                f"{prefix}_p_equiv": nan, f"{prefix}_p_adj": nan, f"{prefix}_verdict": "not tested"}
    return {f"{prefix}_delta": res.delta, f"{prefix}_ci_low": res.low, f"{prefix}_ci_high": res.high,
            f"{prefix}_p": res.p, f"{prefix}_p_equiv": res.p_equiv, f"{prefix}_p_adj": nan,
            f"{prefix}_verdict": "not tested"}


def _test_cols(res) -> dict:
    """delta, interval, p and example count of one paired test (NaN when it could not be run)."""
    if res is None:
        return {"delta": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "p_equiv": np.nan, "n_examples": 0,
                "test": ""}
    return {"delta": res.delta, "ci_low": res.low, "ci_high": res.high, "p": res.p, "p_equiv": res.p_equiv,
            "n_examples": res.n_examples, "test": res.test}


def _holm_within(frame: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """Holm-adjust the tested rows (finite p) of each family and set their verdicts; others stay untested."""
    frame["verdict"] = "not tested"
    for idx in frame.groupby(family).groups.values():
        idx = [i for i in idx if math.isfinite(frame.at[i, "p"])]
        adj_eq = multiple_comparisons.holm([frame.at[i, "p_equiv"] for i in idx]) if idx else []
        for i, pa, pe in zip(idx, multiple_comparisons.holm([frame.at[i, "p"] for i in idx]) if idx else [], adj_eq):
            frame.at[i, "p_adjusted"], frame.at[i, "p_equiv_adjusted"] = pa, pe
            frame.at[i, "verdict"] = _verdict(pa, frame.at[i, "ci_low"], frame.at[i, "ci_high"], frame.at[i, "delta"],
                                              pe)
    return frame


def merge_table(records: list[dict], b: int, notes: list[str], cache: dict,
                margin: float | None = None) -> pd.DataFrame:
    rows = []
    for rec in records:
        comp = rec.get("composition") or {}
        if comp.get("op") != "merge" or rec.get("status") != "ok":
            continue
        hm = rec["headline_metric"]
        own_rec = next((s for s in _sources(rec, cache, notes) if s["run_id"] == comp.get("own_run_id")), None)
        mine, theirs = _main_split(rec, notes), own_rec and _main_split(own_rec, notes)
        res = _compare(hm, [mine], [theirs], b, margin=margin) if mine is not None and theirs is not None else None
        ret = comp.get("retention") or {}
        rows.append({"model": rec["model"], "method": rec["method"], "kind": comp.get("kind"),
                     "tasks": "+".join(comp.get("tasks") or []), "task": rec["task"], "metric": hm,
                     "own": ret.get("own"), "merged": ret.get("merged", rec["metrics"].get(hm)),
                     "retention": ret.get("ratio"),
                     **_test_cols(res)})
    # Holm over the tasks of one merge (model, method, kind, tasks): one family per merged model
    frame = _holm_within(pd.DataFrame(rows, columns=MERGE_COLUMNS), ["model", "method", "kind", "tasks"])
    return frame.sort_values(["model", "method", "kind", "task"], ignore_index=True)


def transfer_table(records: list[dict], b: int, notes: list[str], margin: float | None = None) -> pd.DataFrame:
    """Transfer (`train.init_from` set) against scratch: same model, method, target, training-set size."""
    arms: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for rec in records:
        if rec.get("status") != "ok" or rec.get("composition"):
            continue
        tcfg = (rec.get("config") or {}).get("train") or {}
        budget = tcfg.get("max_train_samples")
        init = (rec.get("train") or {}).get("init_from")
        source = init.get("task") if isinstance(init, dict) else None
        if budget is None or (source is None and tcfg.get("init_from")):
            continue
        key = (rec["model"], rec["method"], int(budget), rec["task"], source or "scratch")
        old = arms[key].get(int(rec["seed"]))
        if old is None or str(rec.get("finished_at", "")) > str(old.get("finished_at", "")):
            arms[key][int(rec["seed"])] = rec
    rows = []
    for (model, method, budget, target, source), by_seed in sorted(arms.items()):
        scratch = arms.get((model, method, budget, target, "scratch"))
        if source == "scratch" or not scratch:
            continue
        seeds = sorted(set(by_seed) & set(scratch))  # paired by seed: same subsample, same selection split
        hm = by_seed[seeds[0]]["headline_metric"] if seeds else None
        both = [(s, pa, pz) for s in seeds if (pa := _main_split(by_seed[s], notes)) is not None
                and (pz := _main_split(scratch[s], notes)) is not None]
        a, z, used = [x[1] for x in both], [x[2] for x in both], [x[0] for x in both]
        res = _compare(hm, a, z, b, used, margin) if a and z and hm in resampled_metrics.METRICS else None
        head = {str((by_seed[s]["train"]["init_from"] or {}).get("head_transferred")) for s in seeds}
        rows.append({"model": model, "method": method, "budget": budget, "target": target, "source": source,
                     "metric": hm, "n_seeds": len(seeds),
                     "transfer": float(np.mean([by_seed[s]["metrics"][hm] for s in seeds])) if seeds else np.nan,
                     "scratch": float(np.mean([scratch[s]["metrics"][hm] for s in seeds])) if seeds else np.nan,
                     "head_transferred": ";".join(sorted(head)),
                     **_test_cols(res)})
    # Holm over the sources of one target (model, method, budget, target)
    return _holm_within(pd.DataFrame(rows, columns=TRANSFER_COLUMNS), ["model", "method", "budget", "target"])


def plot_transfer(frame: pd.DataFrame, out: Path) -> list:
    """Heatmap per (model, method, budget): rows source, columns target, cell = transfer - scratch x100;
    '*' marks a difference significant after Holm."""
    if frame.empty:
        return []
    import matplotlib.pyplot as plt

    from .plots import Plot, _save, safe_name

    made = []
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for (model, method, budget), sub in frame.groupby(["model", "method", "budget"]):
        srcs, tgts = sorted(sub["source"].unique()), sorted(sub["target"].unique())
        grid = np.full((len(srcs), len(tgts)), np.nan)
        for r in sub.itertuples(index=False):
            grid[srcs.index(r.source), tgts.index(r.target)] = 100 * r.delta
        lim = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(tgts), 1.2 + 0.9 * len(srcs)))
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim)
        for r in sub.itertuples(index=False):
            mark = "*" if r.verdict in ("a better", "b better") else ""
            ax.text(tgts.index(r.target), srcs.index(r.source),
                    f"{100 * r.delta:+.1f}{mark}\n[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]",
                    ha="center", va="center", fontsize=8,
                    color="white" if abs(100 * r.delta) > 0.6 * lim else "black")  # readable on dark cells
        ax.set_xticks(range(len(tgts)), tgts)
        ax.set_yticks(range(len(srcs)), srcs)
        ax.set_xlabel("target task")
        ax.set_ylabel("source delta")
        ax.set_title(f"{model} {method}, {budget} target examples: transfer − scratch (×100)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        title = f"{model} / {method}: transfer from a source task's delta, {budget} target examples"
        png, svg = _save(fig, Path(out), f"transfer__{safe_name(model)}__{safe_name(method)}__n{budget}")
        made.append(Plot(model, "transfer", title, png, svg,
                         note="cell: transfer − scratch ×100, [95% paired bootstrap interval], "
                              "* significant after Holm"))
    return made


def _fmt(col: str, v) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if col in ("retention",):
            return f"{v:.3f}"
        if col in ("p", "p_adjusted") or col.endswith(("_p", "_p_adj")):
            return f"{v:.3g}"
        if col in ("n_examples", "budget"):
            return f"{v:.0f}"
        return f"{100 * v:.2f}"
    return str(v)


def _md(frame: pd.DataFrame) -> list[str]:
    return (["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
            + ["| " + " | ".join(_fmt(c, v) for c, v in zip(frame.columns, r)) + " |"
               for r in frame.itertuples(index=False)] + [""])


def _html(frame: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c, v))}</td>" for c, v in zip(frame.columns, r))
                   + "</tr>" for r in frame.itertuples(index=False))
    return f'<div class="scroll"><table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table></div>'


CAPTIONS = {
    "compose_soups": ("soups: metric ×100; vs_mean = soup − mean of its ingredient seeds, vs_best = soup − the seed "
                      "chosen on the selection split; {test}; Holm over the soup tests of one (model, task)"),
    "compose_merge": ("multi-task merge: each task's merged model vs its own delta (retention = merged / own); "
                      "{test}; Holm over the tasks of one merged model"),
    "compose_transfer": ("transfer: target trained from a source task's delta − the same method from scratch at "
                         "the same budget, seeds paired; {test}; Holm over the sources of one target"),
    "compose_learned": ("learned composition of frozen sources vs scratch, the best single transfer "
                        "(chosen per seed on the selection split) and the static merge (uniform weights), same "
                        "target examples K; metric ×100, mean [95 % t interval over seeds]; {test}; Holm over the "
                        "three comparisons of one (target, K, combination)"),
}


def write_compose(records: list[dict], out: Path, plots: list, b: int = resampled_metrics.DEFAULT_B,
                  margin: float | None = None) -> tuple[dict[str, Path], str]:
    """compose_*.csv, compose.md and the transfer heatmaps; ({}, "") when nothing is composed."""
    notes: list[str] = []
    cache: dict = {}
    frames = {"compose_soups": soup_table(records, b, notes, cache, margin),
              "compose_merge": merge_table(records, b, notes, cache, margin),
              "compose_transfer": transfer_table(records, b, notes, margin)}
    from bench.report.compose_learned import learned_table, markdown

    frames["compose_learned"] = learned_table(records, b, notes, margin)
    frames = {k: v for k, v in frames.items() if len(v)}
    if not frames:
        return {}, ""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, df in frames.items():
        tables[name] = out / f"{name}.csv"
        df.to_csv(tables[name], index=False)
    if "compose_transfer" in frames:
        plots += plot_transfer(frames["compose_transfer"], out)
    test = TEST.format(b=b)
    md = ["# Composition (soups, merges, transfer)", ""]
    parts = ['<h2 id="compose">Composition: soups, merges, transfer</h2>',
             "<p>docs/compose.md; downloads: " + ", ".join(f'<a href="{p.name}">{p.name}</a>' for p in tables.values())
             + ".</p>"]
    for name, df in frames.items():
        cap = CAPTIONS[name].format(test=(SEED_TEST if name in ("compose_transfer", "compose_learned") else test)
                                    .format(b=b) + " (the seeds-pooled test where a side has one seed)")
        md += [cap + ":", ""] + (markdown(df) if name == "compose_learned" else _md(df))
        parts.append(_html(df, cap))
    if "compose_merge" in frames:
        by_merge = frames["compose_merge"].groupby(["model", "method", "kind", "tasks"])
        mean_ret = by_merge["retention"].mean().reset_index()
        md += ["Mean retention per merged model:", ""] + _md(mean_ret)
        parts.append(_html(mean_ret, "mean retention over the merged tasks"))
    md += [f"- {n}" for n in notes]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    tables["compose_md"] = out / "compose.md"
    tables["compose_md"].write_text("\n".join(md) + "\n")
    return tables, "\n".join(parts)
