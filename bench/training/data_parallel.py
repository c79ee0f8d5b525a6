"""Data parallel for one cell: `train.nproc=N` runs the cell on N processes, one record.

The engine is PyTorch's own: the cell's process (the forked child of bench/sweep/execute.py, or the
process itself with isolate=false) becomes a torchrun agent (`torch.distributed.launcher.elastic_launch`,
what `torchrun --standalone --nproc_per_node=N` runs) on the loopback address, which spawns N
workers; each joins the process group (gloo on CPU, nccl on CUDA, one GPU per worker by LOCAL_RANK)
and runs the cell's recipe with the model wrapped in `DistributedDataParallel`. Why re-launch from
inside the cell rather than `torchrun -m bench`: the sweep, resume, claims, failure records and the
record stay exactly one process's job (the agent's), and every launcher (basic, joblib, SLURM) runs a
data-parallel cell the same way, with no environment to prepare.

What stays one cell's:
- the global batch: every rank draws the same optimizer steps (same seed); each step's rows are split
  into N contiguous shares (sizes differ by at most one), each share into micro-batches of at most
  `train.batch_size`. Steps, warm-up, the schedule and `effective_batch_size` are those of one process;
  each micro-batch's loss is scaled by N x its share of the step's rows, so DDP's average of the ranks'
  gradients is the gradient of the step's mean loss, exactly as on one process. A rank whose share is
  empty (a last step with fewer rows than ranks) runs one zero-weight pass so the collectives stay in step;
- the selection and the evaluation: only rank 0 evaluates (per epoch and at the end), keeps the best
  epoch, measures storage and inference and returns the record's content; the other ranks return their
  memory and throughput and write nothing. The agent writes the one record (`distributed` section);
- dropout: ranks > 0 reseed their generator (seed + 7919 x rank) after the model is built, so their
  masks differ from rank 0's; the weights start identical (built from the same seed; DDP also
  broadcasts rank 0's). With dropout off, N processes reproduce one process up to float rounding
  (tests/test_distributed.py); with it on, they are the same experiment, not the same numbers.

Reported: `distributed.world_size`, the backend, per-rank peak memory and throughput, and the record's
`throughput` summed over ranks (the samples every rank trained on per second of its timed steps).
`memory` stays rank 0's: memory is per process. A head trained on cached features computes the
features on every rank (not sharded), so its throughput is rank 0's, not a sum.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import nullcontext

import torch

from bench.errors import ConfigError

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.1"  # one node: the rendezvous and the process group on the loopback interface
RESEED = 7919
SUMMED = ("train_samples_per_s", "train_tokens_per_s", "train_padded_tokens_per_s")


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def nproc(cfg) -> int:
    """`train.nproc` (absent: 1)."""
    t = cfg.get("train") if hasattr(cfg, "get") else None
    return int((t.get("nproc") if t is not None else None) or 1)


def _uses_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def check_nproc(train) -> None:
    """`train.nproc=N`, checked before any work: enough GPUs on CUDA, not on MPS. `train` is the checked
    TrainSettings of the cell (bench.config.schema.settings), so its defaults are the schema's."""
    n, device = train.nproc, train.device
    if n == 1:
        return
    if device == "mps":
        raise ConfigError(f"train.nproc={n}: data parallel runs on CPU (gloo) or CUDA (nccl), not on MPS")
    if _uses_cuda(device) and torch.cuda.device_count() < n:
        raise ConfigError(f"train.nproc={n}: one GPU per process, but this machine has {torch.cuda.device_count()}; "
                          f"lower train.nproc or ask the launcher for more (hydra.launcher.gpus_per_node={n})")


class DataParallel:
    """The loop's side: the model wrapped in DDP, this rank's share of a step, the step's loss."""

    def __init__(self, module, seed: int):
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.size = world()
        on_cuda = next(module.parameters()).device.type == "cuda"
        with warnings.catch_warnings():  # DDP asks the old name of transformers' checkpointing flag
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            self.module = DistributedDataParallel(module, device_ids=[torch.cuda.current_device()] if on_cuda else None)
        if self.rank:
            torch.manual_seed(int(seed) + RESEED * self.rank)  # this rank's own dropout masks

    def shard(self, ids: list[int]) -> list[int]:
        """This rank's contiguous share of a step's rows (shares differ in size by at most one)."""
        base, extra = divmod(len(ids), self.size)
        start = self.rank * base + min(self.rank, extra)
        return ids[start:start + base + (1 if self.rank < extra else 0)]

    def no_sync(self, last: bool):
        """Gradients are reduced once per optimizer step, in the last micro-batch's backward."""
        return nullcontext() if last else self.module.no_sync()

    def step_sync(self, value: float, *flags: bool) -> tuple:
        """One all-reduce per step: the mean over ranks of `value` (the step's loss: each rank holds N x its
        share) and, for each flag, whether any rank raised it (a stop signal, a checkpoint due), so every
        rank acts at the same step."""
        import torch.distributed as dist

        t = torch.tensor([float(value), *(1.0 if f else 0.0 for f in flags)], dtype=torch.float64,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        out = t.tolist()
        return (out[0] / self.size, *(v > 0 for v in out[1:]))

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (the ranks' RNG streams for a checkpoint)."""
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def data_parallel(model, cached: bool, seed: int) -> DataParallel | None:
    """DDP over what the loop calls forward on (the model, or the head on cached features); None on one process."""
    if world()[1] == 1:
        return None
    return DataParallel(model.head if cached else model, seed)
