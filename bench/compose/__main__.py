"""`python -m bench.compose soup|merge|transfer ...` (docs/compose.md)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compose", description="Combine kept deltas.")
    sub = ap.add_subparsers(dest="op", required=True)
    s = sub.add_parser("soup", help="soup of one task's deltas across seeds (uniform or greedy)")
    s.add_argument("deltas", nargs="+", help="source record files (<run_id>.json) or kept delta folders")
    s.add_argument("--kind", default="uniform", choices=["uniform", "greedy", "both"])
    s.add_argument("--task", help="expected task of every delta (checked)")
    s.add_argument("--lora-combination", default="cat", help="LoRA: cat (exact mean of updates, default) or linear")
    s.add_argument("--out", required=True, help="folder for the composed records (a sweep folder)")
    m = sub.add_parser("merge", help="multi-task merge: one delta per task, each task with its own head")
    m.add_argument("deltas", nargs="+", help="one source (record or delta folder) per task")
    m.add_argument("--method", action="append", dest="methods", default=None,
                   help="LoRA: linear, ties, dare_ties, ... (repeatable); other methods: linear")
    m.add_argument("--weights", help="comma-separated, one per delta (default 1/n; 1 for TIES types)")
    m.add_argument("--density", type=float, default=None, help="kept fraction for ties/dare/magnitude_prune")
    m.add_argument("--seed", type=int, default=0, help="seed of DARE's random drops")
    m.add_argument("--out", required=True)
    t = sub.add_parser("transfer", help="source x target matrix through train.init_from")
    t.add_argument("--tasks", required=True, help="comma-separated, e.g. sst2,mrpc,stsb,rte")
    t.add_argument("--method", default="lora")
    t.add_argument("--seeds", default="0")
    t.add_argument("--budget", type=int, default=200, help="train.max_train_samples of the transfer and scratch arms")
    t.add_argument("--sweep", default="compose_transfer")
    t.add_argument("--min-steps", type=int, default=None,
                   help="train.min_steps of the scratch and transfer arms (at least this many optimizer steps)")
    t.add_argument("--head", default="never", choices=["never", "auto"],
                   help="train.init_head of the transfer arm: never (default: the delta moves, the head starts "
                        "fresh) or auto (the source head too where the label spaces have the same shape)")
    t.add_argument("--dry-run", action="store_true")
    t.add_argument("overrides", nargs="*", help="further Hydra overrides for every cell (model=..., results_dir=...)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.op == "transfer":
        from bench.compose.transfer import run

        return run(args.tasks.split(","), args.method, [int(x) for x in args.seeds.split(",")], args.budget,
                   args.sweep, list(args.overrides), args.dry_run, args.min_steps, args.head)
    import transformers

    transformers.logging.set_verbosity_error()
    from bench.compose.core import ComposeError, load_source
    from bench.compose.ops import merge, soup

    try:
        sources = [load_source(d) for d in args.deltas]
        out = Path(args.out)
        if args.op == "soup":
            if args.task and any(s.record["task"] != args.task for s in sources):
                bad = next(s for s in sources if s.record["task"] != args.task)
                raise ComposeError(f"{bad.path}: task {bad.record['task']}, --task {args.task}")
            for kind in (["uniform", "greedy"] if args.kind == "both" else [args.kind]):
                print(soup(sources, out, kind, args.lora_combination))
        else:
            weights = [float(w) for w in args.weights.split(",")] if args.weights else None
            for method in args.methods or ["linear"]:
                for p in merge(sources, out, method, weights, args.density, args.seed):
                    print(p)
    except ComposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
