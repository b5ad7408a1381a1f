"""The projection heads ``g_G``, ``g_P``, ``g_C``: one shape, three jobs.

Each is the paper's per-pixel MLP: 1x1 conv (C -> C), ReLU, 1x1 conv (C -> dim). Heads return the
raw dense map; the CACL model normalises it where a loss needs unit vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_NAMES = ("global", "pixel", "cycle")


class ProjectionHead(nn.Sequential):
    """Per-pixel two-layer MLP from backbone channels to the contrastive space."""

    def __init__(self, in_channels: int, dim: int = 128) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, dim, 1),
        )


def normalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """l2-normalise a (B, D, H, W) map along D at every pixel."""
    return F.normalize(x, dim=1)


def global_vector(x: torch.Tensor) -> torch.Tensor:
    """The global head's image vector: normalize(GAP(u)), (B, D, H, W) -> (B, D)."""
    return F.normalize(x.mean(dim=(2, 3)), dim=1)
