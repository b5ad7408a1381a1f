"""What every head of CACL is: a projection, a queue of negatives, a loss term, health signals.

A head's projection is the paper's per-pixel MLP (1x1 conv C -> C, ReLU, 1x1 conv C -> dim); it
lives in both encoders, so the ``Encoder`` builds it from ``Head.projection``. Everything else a
head knows (its loss, which keys it enqueues, its chance level, its signals, the rules between
its keys) is a method of its ``Head`` subclass, one module per head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cacl_cli import distributed
from cacl_cli.device import bf16_matmul_pays
from cacl_cli.errors import CaclError
from cacl_cli.model import losses

Maps = dict[str, torch.Tensor]  # an encoder's output: "backbone" and each head's unit vectors


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


class Head:
    """One head: ``name`` is its key under ``heads.*``, in the metrics and in the state dict.

    ``weight`` scales its term in the total loss; ``queue_size`` is its queue's length; ``tau``
    the temperature of its softmax. ``dense`` heads read the dense stage, the others the last.
    """

    name = ""
    dense = True
    queue_key = "moco.queue_size"  # the key that sets its queue's size (for messages)

    def __init__(self, weight: float, queue_size: int, tau: float) -> None:
        self.weight, self.queue_size, self.tau = weight, queue_size, tau

    @classmethod
    def from_config(cls, cfg) -> "Head":
        """The head as a resolved :class:`cacl_cli.config.Config` describes it."""
        raise NotImplementedError

    @classmethod
    def check(cls, cfg, ranks: int) -> None:
        """Refuse (``CaclError``) a config on which this head cannot train, naming the keys."""
        size, arriving = cls.queue_size_in(cfg), cls.keys_per_step(cfg, ranks)
        if size % arriving and arriving % size:
            # Each key must stay the same number of steps, so the pointer never splits a batch.
            raise CaclError(
                f"key '{cls.queue_key}' is {size} but the {cls.name} queue receives {arriving} "
                f"keys at once ({cls._arrivals(cfg, ranks)}); use a multiple of {arriving}"
            )

    @classmethod
    def queue_size_in(cls, cfg) -> int:
        return cfg.moco.queue_size

    @classmethod
    def keys_per_step(cls, cfg, ranks: int) -> int:
        return cfg.data.batch_size * ranks  # one key per image

    @classmethod
    def _arrivals(cls, cfg, ranks: int) -> str:
        return f"data.batch_size {cfg.data.batch_size} x {ranks} process(es)"

    def projection(self, in_channels: int, dim: int) -> nn.Module:
        return ProjectionHead(in_channels, dim)

    def outputs(self, raw: torch.Tensor) -> Maps:
        """What the encoder returns for this head from its projection's raw map."""
        return {self.name: normalize_pixels(raw)}

    def loss(self, q: Maps, k: Maps, queue: torch.Tensor, landing: Maps | None) -> torch.Tensor:
        """The head's term for online maps q of one frame and keys k of the other; ``landing``
        is the momentum encoder's view of the first frame when a head asked for it."""
        raise NotImplementedError

    def wants_landing(self) -> bool:
        return False

    def keys(self, k: Maps) -> torch.Tensor:
        """This rank's keys (N, D) that join the queue after the step."""
        raise NotImplementedError

    def health(self, q: Maps, k: Maps, queue: torch.Tensor) -> dict[str, float]:
        """The head's own signals (``diagnostics.health`` adds the spread and the chance)."""
        return {}

    def truth(self, q: Maps, k: Maps, truth: torch.Tensor, shifts, grid) -> dict[str, float]:
        """``truth/*`` signals of the head on pairs whose true correspondence ``truth`` is known
        (the world's; ``shifts``: the rolls q and k were made with, ``grid``: (h, w) cells)."""
        return {}

    def chance(self, q: Maps, k: Maps) -> float:
        """The loss when every feature is equal: log(Q + 1) for a contrastive head."""
        return math.log(self.queue_size + 1)


class DenseHead(Head):
    """A head on the dense map whose queue receives ``pixels_per_image`` cells of each image.

    ``queue_matmul``: the dtype of the products with the queue, the largest of a step
    (``float32``, ``bfloat16``, or ``auto``: bfloat16 where ``device.bf16_matmul_pays``).
    """

    def __init__(
        self,
        weight: float,
        queue_size: int,
        tau: float,
        pixels_per_image: int,
        queue_matmul: str = "float32",
    ) -> None:
        super().__init__(weight, queue_size, tau)
        self.pixels_per_image, self.queue_matmul = pixels_per_image, queue_matmul

    @classmethod
    def keys_per_step(cls, cfg, ranks: int) -> int:
        return super().keys_per_step(cfg, ranks) * cfg.moco.pixels_per_image

    @classmethod
    def _arrivals(cls, cfg, ranks: int) -> str:
        return super()._arrivals(cfg, ranks) + (
            f" x moco.pixels_per_image {cfg.moco.pixels_per_image}"
        )

    def queue_dtype(self, device: torch.device) -> torch.dtype:
        if self.queue_matmul == "auto":
            return torch.bfloat16 if bf16_matmul_pays(device) else torch.float32
        return torch.bfloat16 if self.queue_matmul == "bfloat16" else torch.float32

    def queued_map(self, k: Maps) -> torch.Tensor:
        """The (B, D, H, W) map whose cells are enqueued."""
        return k[self.name]

    def keys(self, k: Maps) -> torch.Tensor:
        keys = self.queued_map(k)
        b, d, h, w = keys.shape
        # Drawn for the global batch, so every rank's generator stays in step.
        ranks, me = distributed.world_size(), distributed.rank()
        picks = torch.randint(h * w, (ranks * b, self.pixels_per_image), device=keys.device)
        return losses.gather_pixels(keys, picks[me * b : (me + 1) * b]).reshape(-1, d)
