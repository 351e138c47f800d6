"""Multi-process training with ``torchrun`` (DistributedDataParallel).

    torchrun --standalone --nproc_per_node N -m training.train --data ... --work ...

``torchrun`` starts N copies of ``training.train`` and tells each its rank through the
launcher's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): without them (a plain
``python -m training.train``) everything below is a no-op for a single process.

- Backend: NCCL with one GPU per process (``LOCAL_RANK``), gloo on CPU.
- Data: the training cases are split across ranks like ``DistributedSampler`` does
  (rank r takes cases r, r+N, ...), and each rank draws its patches with its own seed, so the
  ranks see different data; the effective batch is N × ``--batch``.
- Gradients are averaged by DDP in backward; every rank then takes the same optimiser step,
  so the weights stay identical (checked and stored in the checkpoint, see :func:`param_digest`).
- Rank 0 alone validates, logs and writes checkpoints; the others wait at a barrier.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


#: A plain run's context (no torchrun): one process, rank 0.
SINGLE_PROCESS = DistContext()


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun set up; a single process when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cpu":  # the processes share the cores: do not oversubscribe them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    log.info("rank %d of %d (%s backend)", ctx.rank, world, dist.get_backend())
    return ctx


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    return torch.device("cuda", ctx.local_rank) if device.type == "cuda" and ctx.active else device


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share of the training cases (all of them when there are fewer than ranks)."""
    if not ctx.active or len(items) < ctx.world:
        return list(items)
    return list(items[ctx.rank :: ctx.world])


def wrap(net: torch.nn.Module, ctx: DistContext, device: torch.device, find_unused: bool = False) -> torch.nn.Module:
    """DDP around ``net`` (which broadcasts rank 0's weights to all ranks); ``find_unused``
    when some parameters get no gradient in a step (DDP then waits for none of theirs)."""
    if not ctx.active:
        return net
    if device.type == "cuda":  # SyncBatchNorm needs CUDA; on CPU each rank normalises its own batch
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=find_unused
    )


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    if not ctx.active:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def sum_over_ranks(values, ctx: DistContext):
    """Element-wise sum of a numpy array over the ranks (the array itself for one process)."""
    if not ctx.active:
        return values
    t = torch.as_tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.numpy()


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """``obj`` from every rank, in rank order (``[obj]`` for a single process)."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def param_digest(net: torch.nn.Module) -> str:
    """sha256 over the parameters in name order. Buffers are left out: DDP copies rank 0's
    batch-norm statistics to the others at each forward, but each rank's last forward updates
    its own, so they differ by design at any moment between steps."""
    h = hashlib.sha256()
    for name, t in sorted(unwrap(net).named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group. NCCL wants an explicit destroy; with gloo under torchrun
    (torch 2.13) a destroy after the final barrier aborted the second rank (SIGABRT) while the
    process exit alone is clean, so gloo groups are left to the exit."""
    if ctx.active and dist.is_initialized() and dist.get_backend() == "nccl":
        dist.destroy_process_group()
