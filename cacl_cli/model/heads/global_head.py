"""g_G, the global head (eq. 3): MoCo-v2's image-level contrast, read from the last stage.

The image vector is normalize(GAP(u)) of the head's dense map u; its positive is the other
frame's vector, its negatives the queue of earlier images' vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cacl_cli.config.keys import key
from cacl_cli.model import losses
from cacl_cli.model.diagnostics import rate, top1
from cacl_cli.model.heads.base import Head, Maps, normalize_pixels

# This head's preset keys (section.key -> its declaration); cacl_cli/config/head_keys.py holds
# them rendered, so that the config never imports torch.
KEYS = {
    "heads.global": key(True, "train g_G, the global head (eq. 3)"),
    "loss.global_weight": key(
        1.0, "w_G, the global term's weight in the total loss", span=(0, 1e6)
    ),
}


def global_vector(x: torch.Tensor) -> torch.Tensor:
    """The global head's image vector: normalize(GAP(u)), (B, D, H, W) -> (B, D)."""
    return F.normalize(x.mean(dim=(2, 3)), dim=1)


class GlobalHead(Head):
    name = "global"
    dense = False

    @classmethod
    def from_config(cls, cfg) -> "GlobalHead":
        return cls(cfg.loss.global_weight, cls.queue_size_in(cfg), cfg.loss.tau)

    def outputs(self, raw: torch.Tensor) -> Maps:
        # The dense map serves the pixel head's matching (eq. 4) and the soft cycle's target.
        return {"global": normalize_pixels(raw), "global_vector": global_vector(raw)}

    def loss(self, q: Maps, k: Maps, queue: torch.Tensor, landing: Maps | None) -> torch.Tensor:
        return losses.info_nce(q["global_vector"], k["global_vector"], queue, self.tau)

    def keys(self, k: Maps) -> torch.Tensor:
        return k["global_vector"]

    def health(self, q: Maps, k: Maps, queue: torch.Tensor) -> dict[str, float]:
        """``top1_queue``: the positive outranks every queued negative. ``top1_batch``: q_i's
        nearest key in the batch is k_i (chance 1/B, whatever the queue holds)."""
        g_q, g_k = q["global_vector"], k["global_vector"]
        in_batch = (g_q @ g_k.t()).argmax(1) == torch.arange(len(g_q), device=g_q.device)
        return {
            "global/top1_queue": top1(g_q, g_k, queue, self.tau),
            "global/top1_batch": rate(in_batch),
        }
