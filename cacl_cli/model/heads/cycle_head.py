"""g_C, the cycle-attention head (eqs. 5-6): a walk v -> v+ -> [v ; queue] that should return.

Each cell of v jumps to v+ by attention, then back to v or to the queue's earlier cells. The
soft cycle (the paper's) asks the return to follow the global head's affinities between v and
v+; the hard cycle (eq. 6) asks each cell to come back to itself, or with ``cycle_target_sigma``
to a Gaussian of cells around itself. ``cycle_pool`` runs the walk on regions of N x N cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cacl_cli.config.keys import ABOVE_ZERO, key
from cacl_cli.errors import CaclError
from cacl_cli.model import losses
from cacl_cli.model.backbone import OUTPUT_STRIDE
from cacl_cli.model.diagnostics import first_jumps, jump_quality, roll_offset_cells
from cacl_cli.model.heads.base import DenseHead, Maps

# This head's preset keys (section.key -> its declaration); cacl_cli/config/head_keys.py holds
# them rendered, so that the config never imports torch.
KEYS = {
    "heads.cycle": key(True, "train g_C, the cycle-attention head (eqs. 5-6)"),
    "loss.cycle_weight": key(1.0, "w_C, the cycle term's weight in the total loss", span=(0, 1e6)),
    "loss.soft_cycle": key(
        True, "KL to the global head's affinities instead of the identity target"
    ),
    "loss.soft_target_tau": key(
        0.07,
        "temperature of the soft cycle's target (the paper uses tau)",
        span=(ABOVE_ZERO, 100),
    ),
    "loss.soft_target_head": key(
        "global",
        "whose affinities the soft target is: global (the paper, v to v+) or cycle (the cycle "
        "head's own among v's cells; docs/method.md)",
        choices=("global", "cycle"),
    ),
    "loss.cycle_tau": key(
        0.0, "temperature of the cycle's two jumps; 0: tau (the paper)", span=(0, 100)
    ),
    "loss.cycle_pool": key(
        1,
        "the cycle runs on regions of N x N cells (average-pooled maps; its queue holds pooled "
        "keys); 1: on cells, as the paper (docs/method.md)",
        span=(1, 64),
    ),
    "loss.cycle_target_sigma": key(
        0.0,
        "hard cycle only: 0 returns each pixel to itself (eq. 6); s > 0 accepts a Gaussian of s"
        " cells around it (not in the paper; docs/method.md)",
        span=(0, 100),
    ),
    "loss.cycle_memory_mb": key(
        0.0,
        "budget for the cycle's queue logits (B x HW x Q floats); over it they are computed in "
        "chunks of rows, with the same result. 0: no budget",
        span=(0, 1e9),
    ),
    "loss.cycle_return": key(
        "self",
        "where the cycle's second jump lands in v: self (the paper: v's online features) or "
        "reroll (momentum features of v under a fresh roll, so a code of the padding's place "
        "cannot close the loop; docs/method.md)",
        choices=("self", "reroll"),
    ),
    "moco.cycle_queue_size": key(
        16384, "negatives in the cycle head's second jump", span=(1, 10**8)
    ),
}


class CycleHead(DenseHead):
    """``soft_target_head``: whose affinities make the soft target, ``global`` (the paper) or
    ``cycle`` (its own among v's cells where the return lands, no gradient). ``reroll``: the
    return lands on the momentum encoder's v under a fresh roll, not on v's online map.
    ``memory_mb``: a budget for the second jump's HW x Q logits, over which they are computed
    in chunks of rows (0: none)."""

    name = "cycle"
    queue_key = "moco.cycle_queue_size"

    def __init__(
        self,
        weight: float,
        queue_size: int,
        tau: float,
        pixels_per_image: int,
        queue_matmul: str = "float32",
        soft: bool = True,
        soft_target_tau: float = 0.07,
        soft_target_head: str = "global",
        target_sigma: float = 0.0,
        pool: int = 1,
        reroll: bool = False,
        memory_mb: float = 0.0,
    ) -> None:
        super().__init__(weight, queue_size, tau, pixels_per_image, queue_matmul)
        self.soft, self.soft_target_tau = soft, soft_target_tau
        self.soft_target_head = soft_target_head
        self.target_sigma, self.pool, self.reroll = target_sigma, pool, reroll
        self.memory_mb = memory_mb

    @classmethod
    def from_config(cls, cfg) -> "CycleHead":
        loss = cfg.loss  # this head's keys (``KEYS``) and the ones every dense head shares
        return cls(
            weight=loss.cycle_weight,
            queue_size=cls.queue_size_in(cfg),
            tau=loss.cycle_tau or loss.tau,
            pixels_per_image=cfg.moco.pixels_per_image,
            queue_matmul=loss.queue_matmul,
            soft=loss.soft_cycle,
            soft_target_tau=loss.soft_target_tau,
            soft_target_head=loss.soft_target_head,
            target_sigma=loss.cycle_target_sigma,
            pool=loss.cycle_pool,
            reroll=loss.cycle_return == "reroll",
            memory_mb=loss.cycle_memory_mb,
        )

    @classmethod
    def check(cls, cfg, ranks: int) -> None:
        loss = cfg.loss
        if loss.soft_cycle and loss.soft_target_head == "global" and not cfg.heads["global"]:
            raise CaclError(
                "key 'loss.soft_cycle' needs the global head's affinities but "
                "'heads.global' is off; set loss.soft_cycle=false, loss.soft_target_head=cycle "
                "or heads.global=true"
            )
        super().check(cfg, ranks)

    @classmethod
    def queue_size_in(cls, cfg) -> int:
        return cfg.moco.cycle_queue_size

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """A unit-vector map average-pooled to ``pool``-cell regions, as unit vectors."""
        if self.pool == 1:
            return x
        return F.normalize(F.avg_pool2d(x, self.pool, ceil_mode=True), dim=1)

    def view(self, x: Maps) -> Maps:
        """The maps the cycle reads (its own and the global head's), at its pooling."""
        return {h: self.pooled(x[h]) for h in ("cycle", "global") if h in x}

    def wants_landing(self) -> bool:
        return self.reroll

    def queued_map(self, k: Maps) -> torch.Tensor:
        return self.pooled(k["cycle"])

    def target(self, q: Maps, k: Maps, landing: torch.Tensor | None = None) -> torch.Tensor | None:
        """The target (B, HW, HW) for maps q, k (``view``) and the landing map: soft, a
        neighbourhood of each cell, or None for eq. 6's identity."""
        if self.soft and self.soft_target_head == "cycle":
            landing = q["cycle"] if landing is None else landing
            return losses.soft_cycle_target(landing, landing, self.soft_target_tau)
        if self.soft:
            return losses.soft_cycle_target(q["global"], k["global"], self.soft_target_tau)
        if not self.target_sigma:
            return None
        b, _, h, w = q["cycle"].shape
        target = losses.neighbourhood_target(h, w, self.target_sigma, q["cycle"].device)
        return target.expand(b, -1, -1)

    def loss(self, q: Maps, k: Maps, queue: torch.Tensor, landing: Maps | None) -> torch.Tensor:
        qc, kc = self.view(q), self.view(k)
        back = None if landing is None else self.pooled(landing["cycle"])
        return losses.cycle_loss(
            qc["cycle"],
            kc["cycle"],
            queue,
            self.tau,
            self.target(qc, kc, back),
            chunk_rows=self._chunk_rows(),
            c_back=back,
            matmul_dtype=self.queue_dtype(q["cycle"].device),
        )

    def _chunk_rows(self) -> int:
        """Rows (cells of the batch) of the second jump whose queue logits fit the budget."""
        if not self.memory_mb:
            return 0
        # float32 logits and their exp while a block is computed: about 2 copies of rows x Q
        return max(1, int(self.memory_mb * 2**20 // (2 * 4 * self.queue_size)))

    def truth(self, q: Maps, k: Maps, truth: torch.Tensor, shifts, grid) -> dict[str, float]:
        """Where the cycle's first jumps land: near the true point, or on the place a code of
        the padding's roll would send them (a position shortcut)."""
        offset = roll_offset_cells(shifts, *grid, OUTPUT_STRIDE)
        jumps = jump_quality(first_jumps(q["cycle"], k["cycle"]), truth, offset, grid[1])
        return {f"truth/cycle_jump_{n}": x for n, x in jumps.items()}

    def health(self, q: Maps, k: Maps, queue: torch.Tensor, images: int = 4) -> dict[str, float]:
        """``back_rate``: cells whose most likely return is themselves (on ``images`` images)."""
        c, c_plus = (self.pooled(x["cycle"][:images]) for x in (q, k))
        return {"cycle/back_rate": float(losses.cycle_back_rate(c, c_plus, queue, self.tau))}

    def chance(self, q: Maps, k: Maps) -> float:
        """M is uniform over HW + Q columns: log(HW + Q) for the hard cycle, less the target's
        mean entropy for a soft one."""
        q, k = self.view(q), self.view(k)
        chance = math.log(q["cycle"].shape[2] * q["cycle"].shape[3] + self.queue_size)
        target = self.target(q, k)
        if target is not None:
            chance -= float(-torch.special.xlogy(target, target).sum(2).mean())
        return chance
