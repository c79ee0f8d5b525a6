"""What a cell's checkpointing costs its training (docs/cluster.md): the default cell's recipe (model=minilm,
task=sst2, method=lora, train=default unless overridden) set up once, then its training loop run with
`train.checkpoint_every` off, auto and every N steps, interleaved, each on a freshly built model.
Prints per run the loop's wall time (checkpoint writes included), the writes and their seconds.

    PYTHONPATH=. .venv/bin/python -m scripts.checkpoint_overhead --reps 3 --every 5 [override ...]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from bench.config.confdir import conf_dir
from bench.recipe.finetune import CellRecipe
from bench.recipe.runtime import Phase, seed_everything
from bench.training.checkpoint import CellCheckpoint
from bench.training.loop import train_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--every", default="5")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(args.overrides))
    recipe = CellRecipe(cfg, Phase(), {}, None)
    recipe.setup()
    arms = {"off": "off", "auto": "auto", f"every {args.every} steps": int(args.every)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name, every in arms.items():
                seed_everything(recipe.seed, True)
                recipe._setup_model()  # a fresh model each run
                ck = CellCheckpoint(Path(tmp) / f"{rep}-{name}.ckpt", "x", "x", every)
                t0 = time.perf_counter()
                res, timer = train_model(recipe.model, recipe.method, recipe.train_data, recipe.t, recipe.device,
                                         recipe.pad_id, precision=recipe.precision, pad_multiple=recipe.pad_multiple,
                                         checkpoint=ck)
                wall = time.perf_counter() - t0
                rows.append({"rep": rep, "arm": name, "wall_s": round(wall, 3), "train_s": round(res.train_s, 3),
                             "steps": res.steps, "saves": ck.saves, "save_s": round(ck.save_s, 4),
                             "ckpt_bytes": ck.path.stat().st_size if ck.path.exists() else 0,
                             "samples_per_s": round(timer.as_dict()["train_samples_per_s"] or 0, 2)})
                print(json.dumps(rows[-1]), flush=True)
    base = [r["wall_s"] for r in rows if r["arm"] == "off"]
    for name in arms:
        ratios = [r["wall_s"] / b for r, b in zip([r for r in rows if r["arm"] == name], base)]
        print(f"{name}: wall / off per rep = {', '.join(f'{x:.3f}' for x in ratios)}; torch threads "
              f"{torch.get_num_threads()}")


if __name__ == "__main__":
    main()
