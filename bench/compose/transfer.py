"""Transfer matrix through the existing `train.init_from` (bench/init_from.py): no new loading code.

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


def commands(tasks: list[str], method: str, seeds: list[int], budget: int, sweep: str, extra: list[str]) -> list[list[str]]:
    base = [sys.executable, "-m", "bench", "-m", f"method={method}", f"train.seed={','.join(map(str, seeds))}",
            f"sweep_name={sweep}", *extra]
    cmds = [base + [f"task={','.join(tasks)}", "save_delta=true"],
            base + [f"task={','.join(tasks)}", f"train.max_train_samples={budget}", f"label={method}_n{budget}"]]
    for src in tasks:
        targets = [t for t in tasks if t != src]
        cmds.append(base + [f"task={','.join(targets)}", f"train.max_train_samples={budget}",
                            f"train.init_from={src}", f"label={method}_n{budget}_from_{src}"])
    return cmds


def run(tasks, method, seeds, budget, sweep, extra, dry_run: bool = False) -> int:
    worst = 0
    for cmd in commands(tasks, method, seeds, budget, sweep, extra):
        print("+ " + " ".join(cmd[1:]), flush=True)
        if not dry_run:
            worst = max(worst, subprocess.run(cmd, check=False).returncode)
    return worst
