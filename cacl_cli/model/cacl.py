"""The CACL model: Figure 2 of the paper in one module.

An online network (backbone ``f`` + heads ``g_G``, ``g_P``, ``g_C``) sees frame v; its momentum
copy sees v+ (a later frame of the same video, same crop box). Each head has its own queue of
negatives. The total loss is w_G L_G + w_P L_P + w_C L_C (eqs. 3, 4, 6); each term can be switched
off for the ablations, and ``symmetric`` adds the v+ -> v direction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cacl_cli import distributed
from cacl_cli.device import bf16_matmul_pays
from cacl_cli.model import losses
from cacl_cli.model.backbone import build_backbone, extra_blocks, stage_channels, through_stage
from cacl_cli.model.diagnostics import health
from cacl_cli.model.heads import HEAD_NAMES, ProjectionHead, global_vector, normalize_pixels
from cacl_cli.model.queues import FeatureQueue
from cacl_cli.model.shuffle import in_groups, random_roll, rolled, with_group_batch_norm


@dataclass
class CACLOutput:
    loss: torch.Tensor  # sum over heads of weight x term
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # each head's loss, unweighted
    diagnostics: dict[str, float] = field(default_factory=dict)  # health signals, no gradient


class Encoder(nn.Module):
    """Backbone plus the heads in use; returns the backbone map and each head's unit-vector map.

    The global head reads the last stage; the pixel and cycle heads read ``dense_stage``, through
    ``dense_neck`` residual blocks of their own (not part of the backbone).
    """

    def __init__(
        self,
        arch: str,
        width: int,
        dim: int,
        heads: tuple[str, ...],
        dense_stage: str = "layer4",
        dense_neck: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(arch, width)
        self.dense_stage = dense_stage
        # Without a dense head a neck would be parameters no loss reaches (DDP refuses those).
        has_dense_head = any(name != "global" for name in heads)
        self.neck = extra_blocks(self.backbone, dense_stage, dense_neck if has_dense_head else 0)
        channels = self.backbone.out_channels
        dense_channels = stage_channels(self.backbone, dense_stage)
        self.heads = nn.ModuleDict({
            name: ProjectionHead(channels if name == "global" else dense_channels, dim)
            for name in heads
        })  # fmt: skip
        with_group_batch_norm(self)  # per-group BN statistics in one pass (shuffle-BN)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.dense_stage == "layer4":
            h = dense = self.backbone(x)  # B x C x H/8 x W/8
        else:
            dense = through_stage(self.backbone, self.dense_stage)(x)
            h = self.backbone.layer4(dense)
        dense = self.neck(dense)
        out = {"backbone": h}
        for name, head in self.heads.items():
            raw = head(h if name == "global" else dense)  # B x D x H/8 x W/8
            out[name] = normalize_pixels(raw)
            if name == "global":
                out["global_vector"] = global_vector(raw)  # B x D
        return out


class CACL(nn.Module):
    """Cycle-Attention Contrastive Learning on top of MoCo.

    Args:
        arch, width: the backbone (``resnet18``/``resnet50``, first-stage channels).
        dim: channels of the contrastive space (128).
        heads: which of ``global``, ``pixel``, ``cycle`` are trained.
        weights: loss weight per head.
        queue_size: Q, negatives of the global and pixel heads.
        cycle_queue_size: negatives of the cycle head's second jump.
        momentum: m of the momentum encoder's EMA.
        tau: temperature of every softmax.
        soft_cycle: KL to the global head's affinities instead of the hard identity target.
        soft_target_tau: temperature of those affinities (lower: a sharper target).
        soft_target_head: whose affinities make the soft target: ``global`` (the paper: the
            global head's, between v and v+) or ``cycle`` (the cycle head's own, among the
            cells of v where the return lands, without gradient).
        cycle_target_sigma: with the hard cycle, 0 asks each pixel to return to itself (eq. 6);
            s > 0 accepts returns within a Gaussian of s cells around it (``losses.
            neighbourhood_target``).
        pixel_positive: ``global`` (eq. 4, match by the global head) or ``position`` (same cell).
        pixel_shuffle: ``off``, ``shared`` (one roll for v and v+) or ``independent``.
        dense_stage: the backbone stage the pixel and cycle heads read: ``layer4`` (the paper:
            the last, as the global head) or ``layer3``; ``layer4`` then learns from the global
            head alone.
        dense_neck: residual blocks shaped like ``dense_stage``'s last, between it and the pixel
            and cycle heads (0: the paper, none).
        shuffle_bn_groups: groups (per process) with their own BN statistics in the momentum
            encoder.
        batch_shuffle: permute the momentum encoder's batch before grouping it (shuffle-BN); under
            torchrun the permutation spans all ranks.
        online_bn_groups: groups with their own BN statistics in the online encoder: N emulates
            the per-device BN of N devices on one.
        cycle_memory_mb: a budget for the cycle's HW x Q queue logits per step (0: none); over
            it they are computed in chunks of rows, recomputed in the backward pass.
        pixels_per_image: momentum pixels per image fed to the pixel and cycle queues each step.
        symmetric: also compute the losses with v and v+ swapped (and average).
        pixel_image_negatives: the pixel head also contrasts each pixel with the other cells of
            v+'s own image (not only with other images' pixels in the queue).
        cycle_return: where the cycle's second jump lands in v: ``self`` (the paper: the online
            features of v) or ``reroll`` (the momentum encoder's features of v under a fresh
            pixel-shuffle roll; a code of where the padding is then cannot close the loop).
        queue_matmul: dtype of the pixel and cycle heads' products with their queues, the
            largest of a step: ``float32``, ``bfloat16``, or ``auto`` (bfloat16 where it is
            fast: ``device.bf16_matmul_pays``). Positives, sums and losses stay float32.
        cycle_tau: temperature of the cycle's two jumps (0: ``tau``).
        cycle_pool: the cycle runs on its maps average-pooled over ``cycle_pool`` x
            ``cycle_pool`` cells (regions instead of cells; 1: the paper's per-cell cycle). Its
            queue then holds pooled keys.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        width: int = 64,
        dim: int = 128,
        heads: tuple[str, ...] = HEAD_NAMES,
        weights: dict[str, float] | None = None,
        queue_size: int = 16384,
        cycle_queue_size: int = 16384,
        momentum: float = 0.999,
        tau: float = 0.07,
        soft_cycle: bool = True,
        soft_target_tau: float = 0.07,
        soft_target_head: str = "global",
        cycle_target_sigma: float = 0.0,
        pixel_positive: str = "global",
        pixel_shuffle: str = "independent",
        dense_stage: str = "layer4",
        dense_neck: int = 0,
        shuffle_bn_groups: int = 4,
        batch_shuffle: bool = True,
        online_bn_groups: int = 1,
        cycle_memory_mb: float = 0.0,
        pixels_per_image: int = 8,
        symmetric: bool = False,
        cycle_return: str = "self",
        pixel_image_negatives: bool = False,
        queue_matmul: str = "float32",
        cycle_tau: float = 0.0,
        cycle_pool: int = 1,
    ) -> None:
        super().__init__()
        self.heads = tuple(h for h in HEAD_NAMES if h in heads)
        self.online = Encoder(arch, width, dim, self.heads, dense_stage, dense_neck)
        self.momentum_encoder = copy.deepcopy(self.online)
        for p in self.momentum_encoder.parameters():
            p.requires_grad = False
        sizes = {"global": queue_size, "pixel": queue_size, "cycle": cycle_queue_size}
        self.queues = nn.ModuleDict({h: FeatureQueue(sizes[h], dim) for h in self.heads})
        self.weights = {h: 1.0 for h in self.heads} | (weights or {})
        self.m, self.tau = momentum, tau
        self.soft_cycle, self.soft_target_tau = soft_cycle, soft_target_tau
        self.soft_target_head = soft_target_head
        self.cycle_target_sigma = cycle_target_sigma
        self.pixel_positive = pixel_positive
        self.pixel_shuffle, self.shuffle_bn_groups = pixel_shuffle, shuffle_bn_groups
        self.batch_shuffle, self.online_bn_groups = batch_shuffle, online_bn_groups
        self.cycle_memory_mb = cycle_memory_mb
        self.pixels_per_image, self.symmetric = pixels_per_image, symmetric
        self.cycle_return = cycle_return
        self.pixel_image_negatives = pixel_image_negatives
        self.queue_matmul = queue_matmul
        self.cycle_tau, self.cycle_pool = cycle_tau or tau, cycle_pool

    # ------------------------------------------------------------ the two encoders

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q; BN running statistics stay the momentum net's."""
        online = [p.detach() for p in self.online.parameters()]
        momentum = list(self.momentum_encoder.parameters())
        torch._foreach_mul_(momentum, self.m)  # one fused update, not a loop over parameters
        torch._foreach_add_(momentum, online, alpha=1.0 - self.m)

    def draw_shifts(self, x: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
        """The rolls of v and v+ under ``pixel_shuffle`` (off: none; shared: one for both)."""
        h, w = x.shape[2:]
        if self.pixel_shuffle == "off":
            return (0, 0), (0, 0)
        first = random_roll(h, w)
        return first, first if self.pixel_shuffle == "shared" else random_roll(h, w)

    def encode(
        self,
        v: torch.Tensor,
        v_plus: torch.Tensor,
        shifts: tuple[tuple[int, int], tuple[int, int]] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Online features of v and momentum features (keys, no gradient) of v+; ``shifts``
        (each frame's roll in input pixels) default to a draw of the pixel-shuffle scheme."""
        shift, shift_plus = shifts or self.draw_shifts(v)
        q = rolled(
            lambda x: in_groups(self.online, x, self.online_bn_groups, shuffle=False), v, shift
        )
        with torch.no_grad():
            k = rolled(self._momentum_keys, v_plus, shift_plus)
        return q, k

    def _momentum_keys(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        def grouped(y: torch.Tensor) -> dict[str, torch.Tensor]:
            return in_groups(self.momentum_encoder, y, self.shuffle_bn_groups, self.batch_shuffle)

        if self.batch_shuffle and distributed.world_size() > 1:
            return distributed.in_shuffled_batch(grouped, x)
        return grouped(x)

    # ------------------------------------------------------------ the losses

    @torch.no_grad()
    def return_view(self, x: torch.Tensor) -> torch.Tensor | None:
        """The cycle's landing features of frame x: None (its own online features) or, with
        ``cycle_return`` ``reroll``, momentum features under a roll of their own."""
        if "cycle" not in self.heads or self.cycle_return == "self":
            return None
        return rolled(self._momentum_keys, x, random_roll(*x.shape[2:]))["cycle"]

    def _terms(
        self,
        q: dict[str, torch.Tensor],
        k: dict[str, torch.Tensor],
        landing_view: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each head's loss for online features q of one frame and keys k of the other;
        ``landing_view`` is the cycle's landing view of the first frame (``return_view``)."""
        terms, queue_dtype = {}, self.queue_matmul_dtype(q["backbone"].device)
        if "global" in self.heads:
            terms["global"] = losses.info_nce(
                q["global_vector"], k["global_vector"], self.queues["global"](), self.tau
            )
        if "pixel" in self.heads:
            terms["pixel"] = losses.pixel_info_nce(
                q["pixel"],
                k["pixel"],
                self.pixel_match(q, k),
                self.queues["pixel"](),
                self.tau,
                self.pixel_image_negatives,
                queue_dtype,
            )
        if "cycle" in self.heads:
            qc, kc = self.cycle_view(q), self.cycle_view(k)
            landing = None if landing_view is None else self.pooled(landing_view)
            terms["cycle"] = losses.cycle_loss(
                qc["cycle"],
                kc["cycle"],
                self.queues["cycle"](),
                self.cycle_tau,
                self.cycle_target(qc, kc, landing),
                chunk_rows=self._cycle_chunk_rows(),
                c_back=landing,
                matmul_dtype=queue_dtype,
            )
        return terms

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """A unit-vector map average-pooled to ``cycle_pool``-cell regions, as unit vectors."""
        if self.cycle_pool == 1:
            return x
        return F.normalize(F.avg_pool2d(x, self.cycle_pool, ceil_mode=True), dim=1)

    def cycle_view(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The maps the cycle loss reads (its own and the global head's), at its pooling."""
        return {h: self.pooled(x[h]) for h in ("cycle", "global") if h in x}

    def cycle_target(
        self,
        q: dict[str, torch.Tensor],
        k: dict[str, torch.Tensor],
        landing_view: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The cycle's target (B, HW, HW) for its maps q, k (``cycle_view``) and landing view
        ``landing_view``: soft (``soft_target_head``'s affinities), a neighbourhood of each pixel
        (``cycle_target_sigma``), or None for eq. 6's identity."""
        if self.soft_cycle and self.soft_target_head == "cycle":
            landing = q["cycle"] if landing_view is None else landing_view
            return losses.soft_cycle_target(landing, landing, self.soft_target_tau)
        if self.soft_cycle:
            return losses.soft_cycle_target(q["global"], k["global"], self.soft_target_tau)
        if not self.cycle_target_sigma:
            return None
        b, _, h, w = q["cycle"].shape
        target = losses.neighbourhood_target(h, w, self.cycle_target_sigma, q["cycle"].device)
        return target.expand(b, -1, -1)

    def queue_matmul_dtype(self, device: torch.device) -> torch.dtype:
        if self.queue_matmul == "auto":
            return torch.bfloat16 if bf16_matmul_pays(device) else torch.float32
        return torch.bfloat16 if self.queue_matmul == "bfloat16" else torch.float32

    def _cycle_chunk_rows(self) -> int:
        """Rows (pixels of the batch) of the second jump whose queue logits fit the budget."""
        if not self.cycle_memory_mb:
            return 0
        # float32 logits and their exp while a block is computed: about 2 copies of rows x Q
        per_row = 2 * 4 * self.queues["cycle"].size
        return max(1, int(self.cycle_memory_mb * 2**20 // per_row))

    def pixel_match(self, q: dict[str, torch.Tensor], k: dict[str, torch.Tensor]) -> torch.Tensor:
        """Positives of the pixel head: eq. (4)'s rule or the same cell (``pixel_positive``)."""
        space = "global" if self.pixel_positive == "global" else "pixel"
        return losses.pixel_positives(q[space], k[space], self.pixel_positive)

    @torch.no_grad()
    def _enqueue(self, k: dict[str, torch.Tensor]) -> None:
        """After the loss: every rank's keys become negatives, for the next steps only."""
        for head in self.heads:
            if head == "global":
                self.queues[head].enqueue(distributed.gather(k["global_vector"]))
                continue
            keys = self.pooled(k[head]) if head == "cycle" else k[head]
            b, d, h, w = keys.shape
            # Drawn for the global batch, so every rank's generator stays in step.
            ranks, me = distributed.world_size(), distributed.rank()
            picks = torch.randint(h * w, (ranks * b, self.pixels_per_image), device=k[head].device)
            mine = losses.gather_pixels(keys, picks[me * b : (me + 1) * b]).reshape(-1, d)
            self.queues[head].enqueue(distributed.gather(mine))

    # ------------------------------------------------------------ one step

    def forward(
        self,
        v: torch.Tensor,
        v_plus: torch.Tensor,
        update_momentum: bool = True,
        diagnose: bool = True,
    ) -> CACLOutput:
        """Loss for a batch of frame pairs (B, 3, H, W) each; updates momentum net and queues.

        ``update_momentum`` False skips the EMA step: the inner micro-batches of an accumulated
        step share one momentum encoder. ``diagnose`` False skips the health signals (they cost
        a few percent of a step; the loop computes them only on the steps it logs).
        """
        if update_momentum:
            self.momentum_update()
        q, k = self.encode(v, v_plus)
        terms = self._terms(q, k, self.return_view(v))
        keys = [k]
        if self.symmetric:
            q2, k2 = self.encode(v_plus, v)
            swapped = self._terms(q2, k2, self.return_view(v_plus))
            terms = {h: (t + t2) / 2 for (h, t), t2 in zip(terms.items(), swapped.values())}
            keys.append(k2)
        # terms are logged as they are (comparable with each head's chance level); the weights
        # enter the total only
        loss = sum(self.weights[h] * t for h, t in terms.items())
        diagnostics = health(self, q, k) if diagnose else {}
        for key in keys:
            self._enqueue(key)
        return CACLOutput(loss, terms, diagnostics)
