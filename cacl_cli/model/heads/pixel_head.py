"""g_P, the pixel head (eq. 4): every cell of v contrasted with its match in v+ and the queue.

A cell's positive is the cell of v+ that the global head's dense map finds most similar (eq. 4;
``pixel_positive: position`` takes the same cell instead, the paper's pixel-head-only ablation).
Negatives are earlier images' cells in the queue, and with ``pixel_negatives: queue_and_image``
also v+'s own cells away from the positive.
"""

from __future__ import annotations

import torch

from cacl_cli.errors import CaclError
from cacl_cli.model import losses
from cacl_cli.model.diagnostics import rate, top1
from cacl_cli.model.heads.base import DenseHead, Maps


class PixelHead(DenseHead):
    name = "pixel"

    def __init__(
        self,
        weight: float,
        queue_size: int,
        tau: float,
        pixels_per_image: int,
        queue_matmul: str = "float32",
        positive: str = "global",
        image_negatives: bool = False,
    ) -> None:
        super().__init__(weight, queue_size, tau, pixels_per_image, queue_matmul)
        self.positive, self.image_negatives = positive, image_negatives

    @classmethod
    def from_config(cls, cfg) -> "PixelHead":
        loss = cfg.loss
        return cls(
            loss.pixel_weight,
            cls.queue_size_in(cfg),
            loss.tau,
            cfg.moco.pixels_per_image,
            loss.queue_matmul,
            loss.pixel_positive,
            loss.pixel_negatives == "queue_and_image",
        )

    @classmethod
    def check(cls, cfg, ranks: int) -> None:
        if cfg.loss.pixel_positive == "global" and not cfg.heads["global"]:
            raise CaclError(
                "key 'loss.pixel_positive' is 'global' but 'heads.global' is off; "
                "set loss.pixel_positive=position or heads.global=true"
            )
        super().check(cfg, ranks)

    def match(self, q: Maps, k: Maps) -> torch.Tensor:
        """Where each cell of v finds its positive in v+, (B, HW) indices."""
        space = "global" if self.positive == "global" else "pixel"
        return losses.pixel_positives(q[space], k[space], self.positive)

    def loss(self, q: Maps, k: Maps, queue: torch.Tensor, landing: Maps | None) -> torch.Tensor:
        return losses.pixel_info_nce(
            q["pixel"],
            k["pixel"],
            self.match(q, k),
            queue,
            self.tau,
            self.image_negatives,
            self.queue_dtype(q["pixel"].device),
        )

    def health(self, q: Maps, k: Maps, queue: torch.Tensor) -> dict[str, float]:
        """``same_position``: share of positives at the query's own cell (a roll code)."""
        match = self.match(q, k)
        positions = torch.arange(match.shape[1], device=match.device)
        d = q["pixel"].shape[1]
        p_q = losses.flat_pixels(q["pixel"]).reshape(-1, d)
        p_k = losses.gather_pixels(k["pixel"], match).reshape(-1, d)
        return {
            "pixel/same_position": rate(match == positions),
            "pixel/top1_queue": top1(p_q, p_k, queue, self.tau),
        }
