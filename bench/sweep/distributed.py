"""Launching one data-parallel cell: the cell's process becomes torchrun's agent on the
loopback interface and starts `train.nproc` workers, each running the cell's recipe; rank 0's result
is the one record, with every rank's memory and throughput (bench/training/data_parallel.py has the
rules: global batch, sharding, who evaluates).

Why in the sweep layer: the workers run the recipe (bench/recipe/finetune.py), so the launcher sits
above it, beside the isolation (bench/sweep/execute.py) that calls it."""
from __future__ import annotations

import logging
import os
import tempfile
import uuid

import torch

from bench.training.data_parallel import ADDRESS, SUMMED, nproc
from bench.training.stop import STOP, Stopped, die_with_parent, install_cell_handlers

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- launch

def run_distributed(cfg, run_id: str | None = None, launch_facts: dict | None = None) -> dict:
    """Run the cell on `train.nproc` processes and return the measured parts of its one record
    (as bench.recipe.finetune.run_cell does), with the `distributed` section; raises on a failed rank.
    `launch_facts`: what the isolation layer tells the recipe of this launch (`last_seen`, `first_launch`)."""
    from omegaconf import OmegaConf
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    n = nproc(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as logs:
        launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=str(uuid.uuid4()),
                              rdzv_backend="c10d", rdzv_endpoint=f"{ADDRESS}:0", local_addr=ADDRESS, max_restarts=0,
                              monitor_interval=0.2, start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=logs))
        STOP.forward_to_children = True  # SIGUSR1 / SIGUSR2 to this agent reach the workers
        try:
            with STOP.deferring():  # the workers stop and save; this process only waits for them
                out = elastic_launch(launch, _rank_main)(config, n, run_id, os.getpid(), launch_facts)
        except SignalException as exc:  # SIGTERM / SIGINT: torchrun's agent stopped the workers with it
            raise Stopped(int(exc.sigval)) from None
        except ChildFailedError as exc:
            if STOP.requested:
                raise Stopped(STOP.signum) from None
            rank, failure = exc.get_first_failure()
            msg = failure.message.get("message", "") if isinstance(failure.message, dict) else str(failure.message)
            first = msg.strip().splitlines()[0] if msg else exc
            raise RuntimeError(f"data-parallel rank {rank} failed: {first}") from None
    if "stopped" in out[0]:  # the ranks agreed on a stop at one step and saved the checkpoint
        raise Stopped(out[0]["stopped"], out[0]["checkpoint"])
    return merge_ranks(out, n)


def merge_ranks(out: dict, n: int) -> dict:
    """Rank 0's record content plus the `distributed` section and the summed throughput."""
    measured = dict(out[0])
    ranks = [out[r]["rank_figures"] for r in sorted(out)]
    measured.pop("rank_figures", None)
    own = dict(measured["throughput"])
    cached = bool(measured["train"]["feature_cache"])
    summed = dict(own)
    if not cached:
        for key in SUMMED:
            values = [r["throughput"].get(key) for r in ranks]
            summed[key] = sum(values) if all(v is not None for v in values) else None
    measured["throughput"] = summed
    measured["distributed"] = {
        "world_size": n, "backend": ranks[0]["backend"], "engine": "torch DistributedDataParallel",
        "launcher": "torch.distributed.launcher.elastic_launch (torchrun's agent), one node",
        "global_batch": measured["train"]["effective_batch_size"],
        "micro_batch_bound": measured["train"]["batch_size"],
        "throughput": ("rank 0's: the cached-features pass runs on every rank" if cached else
                       "summed over ranks: " + ", ".join(SUMMED)),
        "memory": "per process: the record's memory is rank 0's; per_rank lists every rank's",
        "flops": "rank 0's share (train_flops, mfu)",
        "per_rank": ranks,
    }
    return measured


def _rank_main(config: dict, n: int, run_id: str | None, agent_pid: int | None = None,
               launch_facts: dict | None = None) -> dict:
    """One worker: join the group, run the recipe; rank 0 also evaluates and returns the record's content.
    It stops with its agent (whatever kills it) and saves its share of the checkpoint on a stop signal."""
    import torch.distributed as dist
    from omegaconf import OmegaConf

    from bench.recipe.finetune import CellRecipe
    from bench.recipe.runtime import Phase, pick_device

    if agent_pid is not None:
        die_with_parent(agent_pid)
    install_cell_handlers()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = OmegaConf.create(config)
    cuda = pick_device(str(cfg.train.device)).type == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    if rank and cfg.get("progress") is not None:
        cfg.progress.mode = "off"
    phase = Phase()
    try:
        recipe = CellRecipe(cfg, phase, {"run_id": run_id, **(launch_facts or {})}, None)
        recipe._setup_runtime()
        torch.set_num_threads(max(1, torch.get_num_threads() // n))  # the cell's threads, split between its processes
        recipe.partial["env"]["torch_threads"] = torch.get_num_threads()
        recipe._setup_data()
        recipe._setup_model()
        recipe._setup_encoding()
        recipe.train()
        mine = {"rank": rank, "backend": dist.get_backend(), "memory": recipe.partial["memory"],
                "throughput": recipe.throughput, "train_s": recipe.result.train_s,
                "torch_threads": torch.get_num_threads(), "timed_steps": recipe.timer.timed_steps}
        if rank:
            return {"rank_figures": mine}
        recipe.evaluate()
        recipe.save()
        return dict(recipe.record(), rank_figures=mine)
    except Stopped as stop:  # returned, not raised: the agent tells a stop from a failed rank
        return {"stopped": stop.signum, "checkpoint": stop.checkpoint}
    except Exception as exc:
        raise RuntimeError(f"phase {phase.name}: {type(exc).__name__}: {exc}") from exc
    finally:
        dist.destroy_process_group()
