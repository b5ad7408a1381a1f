"""Pixel shuffle (eq. 7) and shuffle-BN: two tricks against information leaks.

Pixel shuffle rolls the input by (a, b), multiples of the output stride, and rolls the output map
back by (a/8, b/8): every position then meets the zero padding equally often, so the network cannot
tell where a pixel sits. Shuffle-BN runs the momentum encoder on a permuted batch split into groups
with their own BN statistics, so a query and its key never share batch statistics. Under
torchrun the permutation spans every rank (``cacl_cli.distributed.in_shuffled_batch``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

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
    unroll = (a // OUTPUT_STRIDE, b // OUTPUT_STRIDE)
    return {
        k: torch.roll(y, shifts=unroll, dims=(2, 3)) if y.dim() == 4 else y for k, y in out.items()
    }


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises ``groups`` groups of its batch (image i in group i mod groups)
    each with the group's own statistics, as BN on ``groups`` devices would, while the layers
    around it see the whole batch at once. State dict and eval-mode behaviour are BatchNorm2d's;
    the running statistics take each group's update in turn, as ``groups`` calls would."""

    groups: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.groups
        if g <= 1 or not self.training:
            return super().forward(x)
        if x.shape[0] % g or self.momentum is None or not self.track_running_stats:
            raise ValueError("GroupBatchNorm2d needs a batch its groups divide, and a momentum")
        # (B, C, H, W) seen as (B/g, g*C, H, W): channel j*C + c holds channel c of group j's
        # images, so one ordinary batch norm gives every group its own statistics
        n, c = x.shape[0] // g, x.shape[1]
        # momentum 1: these receive the batch's own statistics (float32 like BN's buffers, also
        # when autocast hands the layer half-precision activations)
        means = torch.zeros(g * c, device=x.device, dtype=self.running_mean.dtype)
        variances = torch.ones(g * c, device=x.device, dtype=self.running_var.dtype)
        y = F.batch_norm(
            x.view(n, g * c, *x.shape[2:]),
            means,
            variances,
            self.weight.repeat(g),
            self.bias.repeat(g),
            True,
            1.0,
            self.eps,
        )
        self._absorb_in_turn(means.view(g, c), variances.view(g, c))
        return y.view_as(x)

    @torch.no_grad()
    def _absorb_in_turn(self, means: torch.Tensor, variances: torch.Tensor) -> None:
        """Running statistics after group 0's update, then group 1's, ...: r <- (1-m) r + m s,
        folded into r <- (1-m)^g r + sum_j m (1-m)^(g-1-j) s_j."""
        g, keep = len(means), 1.0 - self.momentum
        turns = [self.momentum * keep ** (g - 1 - j) for j in range(g)]
        weights = torch.tensor(turns, device=means.device)
        self.running_mean.addmv_(means.t(), weights, beta=keep**g)
        self.running_var.addmv_(variances.t(), weights, beta=keep**g)
        self.num_batches_tracked.add_(g)


def with_group_batch_norm(net: nn.Module) -> nn.Module:
    """Make every BatchNorm2d of ``net`` a GroupBatchNorm2d (in place; weights untouched)."""
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GroupBatchNorm2d
    return net


@contextmanager
def batch_norm_groups(net: nn.Module, groups: int) -> Iterator[None]:
    norms = [m for m in net.modules() if isinstance(m, GroupBatchNorm2d)]
    if len(norms) < sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        raise ValueError("in_groups needs a net made by with_group_batch_norm")
    for norm in norms:
        norm.groups = groups
    try:
        yield
    finally:
        for norm in norms:
            norm.groups = 1


def in_groups(
    net: nn.Module, x: torch.Tensor, groups: int, shuffle: bool = True
) -> dict[str, torch.Tensor]:
    """Run ``net`` with each of ``groups`` contiguous chunks of the batch normalised by its own BN
    statistics, as ``groups`` devices would (under torchrun the ranks hold such chunks).
    ``shuffle`` permutes the batch first (shuffle-BN); the output keeps the input's order.
    ``net``'s BN layers must be GroupBatchNorm2d (``with_group_batch_norm``).
    """
    n = x.shape[0]
    groups = min(groups, n)
    if groups <= 1:
        return net(x)
    order = torch.randperm(n, device=x.device) if shuffle else torch.arange(n, device=x.device)
    if n % groups:  # chunks of unequal size: one call each
        parts = [net(x[chunk]) for chunk in order.chunk(groups)]
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    else:
        # interleave the chunks (image j of chunk g at j * groups + g), which is how
        # GroupBatchNorm2d groups a batch, and run the net once
        order = order.view(groups, -1).t().flatten()
        with batch_norm_groups(net, groups):
            out = net(x[order])
    unorder = torch.argsort(order)
    return {k: y[unorder] for k, y in out.items()}
