"""torch.distributed in the few places CACL needs it; every helper is a no-op in one process.

``cacl pretrain`` under ``torchrun`` finds RANK, WORLD_SIZE and LOCAL_RANK in its environment and
joins the process group (NCCL on CUDA, gloo on CPU). MoCo needs two collective operations beyond
DDP's gradient averaging: the momentum keys of every rank go into every rank's queues (so queues
stay identical and the run behaves the same at any GPU count), and shuffle-BN permutes the
momentum encoder's batch across ranks so that a query and its key never share BN statistics.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from cacl_cli.errors import CaclError


@dataclass(frozen=True)
class Place:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def start(device: torch.device) -> tuple[Place, torch.device]:
    """Join torchrun's process group when launched by it; returns (place, this rank's device).

    Each rank of a node takes the GPU of its LOCAL_RANK. Outside torchrun: one worker, ``device``.
    A torchrun of one process still joins a group (and trains under DDP), which proves the setup.
    """
    if not launched_by_torchrun():
        return Place(), device
    place = Place(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    )
    if device.type == "cuda":
        if place.local_rank >= torch.cuda.device_count():
            raise CaclError(
                f"LOCAL_RANK {place.local_rank} but this node has "
                f"{torch.cuda.device_count()} GPUs; lower torchrun's --nproc-per-node"
            )
        device = torch.device("cuda", place.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return place, device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (same shape on every rank) over ranks, rank 0's rows first; no gradient."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def same_on_all_ranks(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's copy of x, on every rank."""
    if world_size() > 1:
        dist.broadcast(x, src=0)
    return x


def in_shuffled_batch(
    net: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MoCo's shuffle-BN across ranks: gather, permute, run ``net`` on this rank's share, undo.

    Every rank then normalises a random share of the global batch, so the BN statistics of a key
    come from other images than its query's. Output rows are this rank's own inputs, in order.
    """
    everything = gather(x)
    perm = same_on_all_ranks(torch.randperm(len(everything), device=x.device))
    mine = perm.view(world_size(), -1)[rank()]
    out = net(everything[mine])
    unperm = torch.argsort(perm).view(world_size(), -1)[rank()]
    return {k: gather(y)[unperm] for k, y in out.items()}


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on some rank (a stop signal, a NaN)."""
    if world_size() == 1:
        return flags
    values = torch.tensor([int(f) for f in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
