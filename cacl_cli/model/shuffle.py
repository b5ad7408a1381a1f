"""Pixel shuffle (eq. 7) and shuffle-BN: two tricks against information leaks.

Pixel shuffle rolls the input by (a, b), multiples of the output stride, and rolls the output map
back by (a/8, b/8): every position then meets the zero padding equally often, so the network cannot
tell where a pixel sits. Shuffle-BN runs the momentum encoder on a permuted batch split into groups
with their own BN statistics, so a query and its key never share batch statistics. Under
torchrun the permutation spans every rank (``cacl_cli.distributed.in_shuffled_batch``).
"""

from __future__ import annotations

from typing import Callable

import torch

from cacl_cli.model.backbone import OUTPUT_STRIDE


def random_roll(
    height: int, width: int, generator: torch.Generator | None = None
) -> tuple[int, int]:
    """A shift (a, b) in input pixels, each a multiple of the output stride."""
    rows, cols = max(1, height // OUTPUT_STRIDE), max(1, width // OUTPUT_STRIDE)
    a = int(torch.randint(rows, (1,), generator=generator)) * OUTPUT_STRIDE
    b = int(torch.randint(cols, (1,), generator=generator)) * OUTPUT_STRIDE
    return a, b


def rolled(
    net: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor, shift: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Run ``net`` on x rolled by ``shift`` and roll every output map back (vectors pass as is)."""
    a, b = shift
    out = net(torch.roll(x, shifts=(-a, -b), dims=(2, 3)))  # X[i, j] <- X[i + a, j + b]
    back = (a // OUTPUT_STRIDE, b // OUTPUT_STRIDE)
    return {
        k: torch.roll(y, shifts=back, dims=(2, 3)) if y.dim() == 4 else y for k, y in out.items()
    }


def in_groups(
    net: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    x: torch.Tensor,
    groups: int,
    shuffle: bool = True,
) -> dict[str, torch.Tensor]:
    """Run ``net`` per group of the batch, so each group has its own BN statistics, as on
    ``groups`` devices. ``shuffle`` permutes the batch first (shuffle-BN) and restores its order."""
    groups = min(groups, x.shape[0])
    if groups <= 1:
        return net(x)
    if not shuffle:
        parts = [net(chunk) for chunk in x.chunk(groups)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    perm = torch.randperm(x.shape[0], device=x.device)
    parts = [net(chunk) for chunk in x[perm].chunk(groups)]
    unperm = torch.argsort(perm)
    return {k: torch.cat([p[k] for p in parts])[unperm] for k in parts[0]}
