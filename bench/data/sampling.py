"""Seeded row choices: the selection split, nested (and stratified) training subsamples, eval rows.

Why a module of its own: every verdict of the harness rests on which rows a cell trained, chose and
was scored on. These functions are pure (row indices in, row indices out), depend on the seed and a
named stream only, and are shared by the runner (bench/recipe/finetune.py), the composition track and the tests.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

from bench.data.readers import Example


def subsample(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """Seeded choice of n rows, kept in file order; n None or >= len keeps everything."""
    if n is None or n >= len(examples):
        return list(examples)
    if n < 0:
        raise ValueError(f"subsample size must be >= 0 or None, got {n}")
    chosen = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in chosen]


# Streams of randomness drawn from one seed, kept apart so that changing one (say, the training
# subsample size) never moves another (the selection split).
_STREAM_SELECTION, _STREAM_TRAIN, _STREAM_EVAL = 0x5E1, 0x7A1, 0xE7A


def carve_selection(examples: Sequence[Example], kind: str, fraction: float, max_examples: int | None, seed: int,
                    stratify: bool = True) -> tuple[list[int], list[int]]:
    """Split the train file's row indices into (selection, pool), both sorted.

    The selection split is where every choice (learning rate, epoch) is made, so the reported split
    never influences one (Chen et al. 2022; UniPELT holds out 1,000 train examples the same way).
    Its size is round(fraction * n), capped at `max_examples`, at least 1 when fraction > 0. It
    depends on the task and the seed only, so every method of a (task, seed) sees the same one.
    Classification: stratified by label (largest-remainder allocation), so class proportions match
    the train file's within one example per class.
    """
    import numpy as np

    n = len(examples)
    if not fraction or fraction <= 0 or n == 0:
        return [], list(range(n))
    size = round(float(fraction) * n)
    if max_examples is not None:
        size = min(size, int(max_examples))
    size = max(1, min(size, n - 1))
    rng = np.random.default_rng([int(seed), _STREAM_SELECTION])
    if stratify and kind == "classification":
        by_label: dict = {}
        for i in rng.permutation(n).tolist():
            by_label.setdefault(examples[i].label, []).append(i)
        labels = sorted(by_label, key=str)
        exact = {lab: size * len(by_label[lab]) / n for lab in labels}
        take = {lab: math.floor(exact[lab]) for lab in labels}
        short = size - sum(take.values())
        for lab in sorted(labels, key=lambda lab: (-(exact[lab] - take[lab]), str(lab)))[:short]:
            take[lab] += 1
        chosen = [i for lab in labels for i in by_label[lab][:take[lab]]]
    else:
        chosen = rng.permutation(n)[:size].tolist()
    chosen_set = set(chosen)
    return sorted(chosen), [i for i in range(n) if i not in chosen_set]


def nested_subsample(pool: Sequence[int], n: int | None, seed: int, stream: int = _STREAM_TRAIN,
                     labels: Sequence | None = None) -> list[int]:
    """n indices from `pool` (sorted), seeded; nested: for one seed, the n-subsample contains every
    smaller one (a seeded permutation, cut at n), so curves over training-set sizes compare
    like with like. n None or >= len(pool) keeps the whole pool. With `labels` (one per pool
    entry) the order is `stratified_order`'s: nested *and* stratified (train.stratify_subsample)."""
    import numpy as np

    pool = list(pool)
    if n is None or n >= len(pool):
        return pool
    if n < 0:
        raise ValueError(f"subsample size must be >= 0 or None, got {n}")
    if labels is not None:
        if len(labels) != len(pool):
            raise ValueError(f"labels ({len(labels)}) must give one label per pool entry ({len(pool)})")
        return sorted(pool[i] for i in stratified_order(labels, n, seed, stream))
    order = np.random.default_rng([int(seed), stream]).permutation(len(pool))[:n]
    return sorted(pool[i] for i in order.tolist())


def stratified_order(labels: Sequence, n: int, seed: int, stream: int = _STREAM_TRAIN) -> list[int]:
    """The first n positions of a seeded order of range(len(labels)) in which *every* prefix keeps
    the class proportions: after k picks, each class has within one example of k * its share.

    Why not stratify each size separately (largest remainder, as carve_selection does): per-size
    allocation is not nested (the Alabama paradox: a class's quota can shrink as the total grows),
    and the budget curves need each K's subsample inside the next one. Here each class's examples
    are seeded-shuffled and interleaved by Tijdeman's (1980) chairman-assignment rule: pick k goes,
    among the classes whose quota k * share exceeds their count by at least 1 - c (c = 1 - 1/(2C - 2)
    for C classes), to the one whose next deadline (count + c) / share comes first (ties: class
    order). Every prefix then deviates from its quota by at most c < 1 per class (the plain
    "furthest below quota" greedy can exceed 1 with 3+ classes), so cutting the order anywhere is
    both nested and stratified.
    """
    import numpy as np

    rng = np.random.default_rng([int(seed), stream, 0x57A])
    by_label: dict = {}
    for i in rng.permutation(len(labels)).tolist():
        by_label.setdefault(labels[i], []).append(i)
    classes = sorted(by_label, key=str)
    total = len(labels)
    share = [len(by_label[c]) / total for c in classes]
    taken = [0] * len(classes)
    c_bound = 1.0 - 1.0 / (2 * (len(classes) - 1)) if len(classes) > 1 else 0.0
    order = []
    for k in range(1, min(n, total) + 1):
        best, deadline = -1, math.inf
        for j, c in enumerate(classes):
            if taken[j] < len(by_label[c]) and k * share[j] - taken[j] >= 1.0 - c_bound - 1e-9 \
                    and (taken[j] + c_bound) / share[j] < deadline - 1e-12:
                best, deadline = j, (taken[j] + c_bound) / share[j]
        if best < 0:  # float edge: fall back to the class furthest below its quota
            best = max((j for j, c in enumerate(classes) if taken[j] < len(by_label[c])),
                       key=lambda j: k * share[j] - taken[j])
        order.append(by_label[classes[best]][taken[best]])
        taken[best] += 1
    return order


def eval_subsample(n_rows: int, n: int | None, seed: int) -> list[int]:
    return nested_subsample(range(n_rows), n, seed, _STREAM_EVAL)


def fingerprint(ids: Sequence[int]) -> str:
    """Short sha256 of a list of row ids: two records with equal fingerprints used the same rows."""
    import hashlib

    return "sha256:" + hashlib.sha256(",".join(map(str, sorted(ids))).encode()).hexdigest()[:16]
