"""A FIFO queue of negatives, one per head, as in MoCo.

The queue and its pointer are buffers, so they travel with the model's state dict into every
checkpoint. It starts as random unit vectors; ``enqueue`` overwrites the oldest entries and wraps
around, so any number of keys per step works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureQueue(nn.Module):
    """``size`` unit vectors of ``dim`` channels, oldest overwritten first."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))  # Q x D
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N x D) at the pointer and advance it."""
        keys = keys.detach().to(self.features.dtype)[-self.size :]
        n = keys.shape[0]
        slots = (self.ptr + torch.arange(n, device=keys.device)) % self.size
        self.features[slots] = keys
        self.ptr.copy_((self.ptr + n) % self.size)

    def forward(self) -> torch.Tensor:
        return self.features.clone().detach()  # Q x D, a snapshot: later enqueues won't alter it
