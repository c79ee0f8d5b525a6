"""The operations: soup (uniform, greedy) and multi-task merge, each ending in ordinary records."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.compose.combine import adds_as_lora, merge_cells, soup_cell
from bench.compose.core import (
    ComposeError,
    Evaluator,
    Source,
    check_same_base,
    reload,
    rows_of,
    save_composed,
    write_composed_record,
)
from bench.data.sampling import fingerprint
from bench.records.build import now


def _finish(out: Path, src0: Source, label: str, sources: list[Source], composition: dict, cell, settings: dict,
            ev: Evaluator, started: str, t0: float) -> Path:
    """Save the composed delta, rebuild from it, evaluate, write the record."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".composing-", dir=out))
    save_composed(cell, src0, tmp / "delta", "pending", label)
    rebuilt = reload(src0, tmp / "delta", settings)
    result = ev.evaluate(rebuilt)
    composition["method_settings"] = settings or None
    path = write_composed_record(out, src0, label, sources, composition, rebuilt, result, tmp / "delta", started, t0)
    tmp.rmdir() if tmp.exists() and not any(tmp.iterdir()) else None
    return path


def soup_selection(sources: list[Source]):
    """The first source's selection split minus every row any ingredient trained on: a seed's
    selection rows may be another seed's training rows, and a choice must not see trained rows."""
    sel0, _, train_all = rows_of(sources[0])
    trained: set[int] = set()
    for s in sources:
        trained |= set(rows_of(s)[1])
    sel = [i for i in sel0 if i not in trained]
    return sel, train_all, {"from_seed": int(sources[0].record["seed"]), "rows_of_that_split": len(sel0),
                            "dropped_as_trained_by_an_ingredient": len(sel0) - len(sel),
                            "fingerprint": fingerprint(sel)}


def soup(refs: list[Source], out: Path, kind: str = "uniform", lora_combination: str = "cat") -> Path:
    """Uniform soup (mean of all) or greedy soup (Wortsman et al. 2022: ingredients sorted by their
    selection-split score, each added while the soup's selection score does not drop)."""
    t0, started = time.perf_counter(), now()
    sources = list(refs)
    if len({s.record["task"] for s in sources}) != 1:
        raise ComposeError("soup: the deltas are of different tasks; a soup is one task's seeds (use merge)")
    check_same_base(sources, "soup")
    sel, train_all, sel_info = soup_selection(sources)
    if kind == "greedy" and not sel:
        raise ComposeError("greedy soup: the selection split is empty after dropping trained rows; a greedy soup "
                           "chooses on the selection split only")
    ev = Evaluator(sources[0], sel, train_all)
    ingredients = [{"run_id": s.run_id, "seed": int(s.record["seed"]),
                    "dev_headline": s.record["metrics"].get(s.headline)} for s in sources]
    if sel:
        for ing, s in zip(ingredients, sources):
            cell, _ = soup_cell([s], lora_combination=lora_combination)
            ing["selection_headline"] = ev.selection_score(cell)
    used = list(range(len(sources)))
    if kind == "greedy":
        order = sorted(used, key=lambda i: -ingredients[i]["selection_headline"])
        used, best = [order[0]], ingredients[order[0]]["selection_headline"]
        for i in order[1:]:
            cell, _ = soup_cell([sources[j] for j in used + [i]], lora_combination=lora_combination)
            score = ev.selection_score(cell)
            if score >= best:
                used, best = used + [i], score
    elif kind != "uniform":
        raise ComposeError(f"--kind {kind}: expected uniform or greedy")
    chosen = [sources[i] for i in used]
    cell, settings = soup_cell(chosen, lora_combination=lora_combination)
    devs = [ing["dev_headline"] for ing in ingredients if ing["dev_headline"] is not None]
    best_sel = max(ingredients, key=lambda g: g.get("selection_headline", float("-inf"))) if sel else None
    composition = {
        "op": "soup", "kind": kind, "ingredients": ingredients, "used": [sources[i].run_id for i in used],
        "weights": [1.0 / len(chosen)] * len(chosen),
        "lora_combination": lora_combination if adds_as_lora(sources[0]) else None,
        "heads": "averaged like the delta (one task)",
        "selection_split": sel_info,
        "baselines": {"mean_of_seeds_dev": sum(devs) / len(devs) if devs else None,
                      "best_seed_by_selection": best_sel and best_sel["run_id"],
                      "best_seed_by_selection_dev": best_sel and best_sel["dev_headline"]},
    }
    label = f"{sources[0].record.get('method_label') or sources[0].record['method']}+soup[{kind}]"
    return _finish(out, chosen[0], label, sources, composition, cell, settings, ev, started, t0)


def merge(refs: list[Source], out: Path, combination: str, weights: list[float] | None = None,
          density: float | None = None, seed: int = 0) -> list[Path]:
    """Multi-task merge: one shared delta from one delta per task, each task evaluated with its
    own head on its own source's selection split and dev split; retention = merged / own."""
    sources = list(refs)
    tasks = [s.record["task"] for s in sources]
    if len(set(tasks)) != len(tasks):
        raise ComposeError(f"merge: one delta per task expected, got tasks {tasks}")
    check_same_base(sources, "merge")
    if weights is not None and len(weights) != len(sources):
        raise ComposeError(f"--weights: {len(weights)} given for {len(sources)} deltas")
    paths = []
    for src, cell, settings, used_w in merge_cells(sources, combination, weights, density, seed):
        t0, started = time.perf_counter(), now()
        sel, _, train_all = rows_of(src)
        ev = Evaluator(src, sel, train_all)
        composition = {"op": "merge", "kind": combination, "tasks": tasks, "weights": used_w, "density": density,
                       "dare_seed": seed if combination.startswith("dare") else None,
                       "heads": "each task's own head, from its own source delta; only the backbone delta is merged",
                       "selection_split": {"from_seed": int(src.record["seed"]), "own_source_split": True},
                       "evaluated_task": src.record["task"], "own_run_id": src.run_id}
        label = f"{src.record.get('method_label') or src.record['method']}+merge[{combination}:{'+'.join(tasks)}]"
        path = _finish(out, src, label, sources, composition, cell, settings, ev, started, t0)
        import json

        from bench.records import schema as R

        rec = json.loads(path.read_text())
        own = src.record["metrics"].get(src.headline)
        got = rec["metrics"].get(src.headline)
        rec["composition"]["retention"] = {"metric": src.headline, "own": own, "merged": got,
                                           "ratio": (got / own) if own else None}
        R.write_record(path, rec)
        paths.append(path)
    return paths
