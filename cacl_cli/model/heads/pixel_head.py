"""g_P, the pixel head (eq. 4): every cell of v contrasted with its match in v+ and the queue.

A cell's positive is the cell of v+ that the global head's dense map finds most similar (eq. 4;
``pixel_positive: position`` takes the same cell instead, the paper's pixel-head-only ablation).
Negatives are earlier images' cells in the queue, and with ``pixel_negatives: queue_and_image``
also v+'s own cells away from the positive.
"""

from __future__ import annotations

import torch

from cacl_cli.config.keys import key
from cacl_cli.errors import CaclError
from cacl_cli.model import losses
from cacl_cli.model.diagnostics import match_quality, rate, top1
from cacl_cli.model.heads.base import DenseHead, Maps

# This head's preset keys (section.key -> its declaration); cacl_cli/config/head_keys.py holds
# them rendered, so that the config never imports torch.
KEYS = {
    "heads.pixel": key(True, "train g_P, the pixel head (eq. 4)"),
    "loss.pixel_weight": key(1.0, "w_P, the pixel term's weight in the total loss", span=(0, 1e6)),
    "loss.pixel_positive": key(
        "global",
        "global: eq. 4's argmax over the global head; position: the same cell",
        choices=("global", "position"),
    ),
    "loss.pixel_negatives": key(
        "queue",
        "queue: other images' pixels (the paper); queue_and_image: also the cells of v+'s own "
        "image outside the 3x3 block around the positive",
        choices=("queue", "queue_and_image"),
    ),
}


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
        loss = cfg.loss  # this head's keys (``KEYS``) and the ones every dense head shares
        return cls(
            weight=loss.pixel_weight,
            queue_size=cls.queue_size_in(cfg),
            tau=loss.tau,
            pixels_per_image=cfg.moco.pixels_per_image,
            queue_matmul=loss.queue_matmul,
            positive=loss.pixel_positive,
            image_negatives=loss.pixel_negatives == "queue_and_image",
        )

    @classmethod
    def check(cls, cfg, ranks: int) -> None:
        if cfg.loss.pixel_positive == "global" and not cfg.heads["global"]:
            raise CaclError(
                "key 'loss.pixel_positive' is 'global' but 'heads.global' is off; "
                "set loss.pixel_positive=position or heads.global=true"
            )
        super().check(cfg, ranks)

    def truth(self, q: Maps, k: Maps, truth: torch.Tensor, shifts, grid) -> dict[str, float]:
        """How often eq. 4's positives lie at (``exact``) or within one cell of (``near``) the
        true point."""
        quality = match_quality(self.match(q, k), truth, grid[1])
        return {f"truth/pixel_positive_{n}": x for n, x in quality.items()}

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
