"""Transfer matrix through the existing `train.init_from` (bench/recipe/init_from.py): no new loading code.

Three invocations of `python -m bench` into one sweep: (1) the sources, every task at the full
budget with `save_delta=true`; (2) every task from scratch at the small budget (`train.max_train_samples`);
(3) for each source task, every other task at the small budget with `train.init_from=<source>`
(init_from finds the source's record in the same sweep, same model, method and seed, checks it
and loads its exact weights; the head only where the label spaces match). Labels tell the arms apart
in the report: `<method>_n<budget>` (scratch) and `<method>_n<budget>_from_<source>`.
"""
from __future__ import annotations

import subprocess
import sys


def commands(tasks: list[str], method: str, seeds: list[int], budget: int, sweep: str, extra: list[str],
             min_steps: int | None = None, head: str = "never") -> list[list[str]]:
    """The sources' command, the scratch arm's, then one per source task. `min_steps` (train.min_steps,
    the length rule) applies to both small-budget arms alike; `head` is train.init_head of the
    transfer arm (never: only the backbone delta moves, every head starts fresh as in scratch)."""
    base = [sys.executable, "-m", "bench", "-m", f"method={method}", f"train.seed={','.join(map(str, seeds))}",
            f"sweep_name={sweep}", *extra]
    # The small arms keep no delta: init_from by task name takes the newest record of that task with a
    # kept delta in the sweep, which must stay the full-budget source, not a small arm.
    small = [f"train.max_train_samples={budget}", "save_delta=false"] + (
        [f"++train.min_steps={min_steps}"] if min_steps else [])
    cmds = [base + [f"task={','.join(tasks)}", "save_delta=true"],
            base + [f"task={','.join(tasks)}", *small, f"label={method}_n{budget}"]]
    for src in tasks:
        targets = [t for t in tasks if t != src]
        cmds.append(base + [f"task={','.join(targets)}", *small, f"train.init_from={src}",
                            f"++train.init_head={head}", f"label={method}_n{budget}_from_{src}"])
    return cmds


def run(tasks, method, seeds, budget, sweep, extra, dry_run: bool = False, min_steps: int | None = None,
        head: str = "never") -> int:
    worst = 0
    for cmd in commands(tasks, method, seeds, budget, sweep, extra, min_steps, head):
        print("+ " + " ".join(cmd[1:]), flush=True)
        if not dry_run:
            worst = max(worst, subprocess.run(cmd, check=False).returncode)
    return worst
