"""Which rows a cell trains on, chooses on and is scored on: the one chooser.

Why one: the recipe (bench/recipe/finetune.py) picks a cell's rows, and composition
(bench/compose/core.py) must pick exactly the same ones again from a source's record to score a
composed model on that source's selection split and never on its training rows; two copies of the
rule had already drifted (one ignored `train.stratify_subsample`). Every choice is seeded by
`train.seed` except the eval rows, which every run shares so that runs pair example by example.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bench.config.schema import settings
from bench.data import sampling
from bench.data.loading import load_split


def selection_settings(cfg) -> dict:
    """data.selection, read through the typed settings (bench.config.schema.settings: the defaults are the
    schema's; bench.recipe.validate.check adds that train.select=best_epoch has a selection split to choose
    on, never the reported split). `cfg` is a whole config: a cell's, or one a record stores (bench/compose)."""
    sel = settings(cfg, "data").selection
    cap = sel.max_examples
    # train.max_eval_samples bounds every evaluated split, the selection split included (quick runs).
    limit = settings(cfg, "train").max_eval_samples
    if limit is not None:
        cap = limit if cap is None else min(cap, limit)
    return {"fraction": float(sel.fraction), "max_examples": cap, "stratify": sel.stratify}


@dataclass
class CellRows:
    """A cell's rows: ids index the train file (`train_all`) or each eval split's file."""

    train_all: list
    selection: dict
    sel_ids: list[int]
    pool: list[int]
    train_ids: list[int]
    stratified: bool
    eval_ids: dict = field(default_factory=dict)
    eval_ex: dict = field(default_factory=dict)

    @property
    def train_ex(self) -> list:
        return [self.train_all[i] for i in self.train_ids]

    @property
    def sel_ex(self) -> list:
        return [self.train_all[i] for i in self.sel_ids]


def cell_rows(cfg, spec, seed: int, with_eval: bool = True) -> CellRows:
    """The selection split carved from the train file, the training subsample from the rest (nested:
    each budget K of a seed contains every smaller K; stratified by label under
    `train.stratify_subsample`, as experiment=budget sets), and the eval rows (not seeded)."""
    t = settings(cfg, "train")
    sel = selection_settings(cfg)
    train_all = load_split(spec, "train")
    sel_ids, pool = sampling.carve_selection(train_all, spec.kind, sel["fraction"], sel["max_examples"], seed,
                                             sel["stratify"])
    strat = t.stratify_subsample and spec.kind == "classification"
    train_ids = sampling.nested_subsample(pool, t.max_train_samples, seed,
                                   labels=[train_all[i].label for i in pool] if strat else None)
    rows = CellRows(train_all, sel, sel_ids, pool, train_ids, strat)
    if with_eval:
        rows.eval_ids, rows.eval_ex = eval_rows(cfg, spec)
    return rows


def eval_rows(cfg, spec) -> tuple[dict, dict]:
    """({split: ids}, {split: rows}) of every eval split: `train.max_eval_samples` of them, not seeded
    by train.seed, so every run of a task scores the same rows."""
    ids, ex = {}, {}
    limit = settings(cfg, "train").max_eval_samples
    for s in spec.eval_splits:
        split = load_split(spec, s)
        ids[s] = sampling.eval_subsample(len(split), limit, 0)
        ex[s] = [split[i] for i in ids[s]]
    return ids, ex
