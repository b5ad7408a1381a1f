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
from typing import TYPE_CHECKING, Callable

from cacl_cli.errors import CaclError

if TYPE_CHECKING:
    import torch

# torch is imported where a helper runs, not here: the commands that never train (extract-pairs,
# presets) read their place among the ranks from here without paying for torch's import.


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


def launch_place() -> Place:
    """This process's place as torchrun's environment gives it (one process outside torchrun):
    the one reader of RANK, WORLD_SIZE and LOCAL_RANK."""
    if not launched_by_torchrun():
        return Place()
    try:
        return Place(*(int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")))
    except ValueError:
        raise CaclError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; launch with "
            "torchrun, which sets them"
        ) from None


def start(device: torch.device) -> tuple[Place, torch.device]:
    """Join torchrun's process group when launched by it; returns (place, this rank's device).

    Each rank of a node takes the GPU of its LOCAL_RANK. Outside torchrun: one worker, ``device``.
    A torchrun of one process still joins a group (and trains under DDP), which proves the setup.
    """
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun():
        return Place(), device
    place = launch_place()
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


def _dist():
    import torch.distributed as dist

    return dist


def stop() -> None:
    if _dist().is_initialized():
        _dist().destroy_process_group()


def world_size() -> int:
    return _dist().get_world_size() if _dist().is_initialized() else 1


def rank() -> int:
    return _dist().get_rank() if _dist().is_initialized() else 0


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (same shape on every rank) over ranks, rank 0's rows first; no gradient."""
    import torch

    if world_size() == 1:
        return x
    with torch.no_grad():
        parts = [torch.empty_like(x) for _ in range(world_size())]
        _dist().all_gather(parts, x.contiguous())
        return torch.cat(parts)


def same_on_all_ranks(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's copy of x, on every rank."""
    if world_size() > 1:
        _dist().broadcast(x, src=0)
    return x


def in_shuffled_batch(
    net: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MoCo's shuffle-BN across ranks: gather, permute, run ``net`` on this rank's share, undo.

    Every rank then normalises a random share of the global batch, so the BN statistics of a key
    come from other images than its query's. Output rows are this rank's own inputs, in order.
    """
    import torch

    everything = gather(x)
    perm = same_on_all_ranks(torch.randperm(len(everything), device=x.device))
    mine = perm.view(world_size(), -1)[rank()]
    out = net(everything[mine])
    unperm = torch.argsort(perm).view(world_size(), -1)[rank()]
    return {k: gather(y)[unperm] for k, y in out.items()}


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on some rank (a stop signal, a NaN)."""
    import torch

    if world_size() == 1:
        return flags
    values = torch.tensor([int(f) for f in flags], device=device)
    _dist().all_reduce(values, op=_dist().ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def barrier() -> None:
    if world_size() > 1:
        _dist().barrier()
