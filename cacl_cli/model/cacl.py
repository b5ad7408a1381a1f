"""The CACL model: Figure 2 of the paper in one module.

An online network (backbone ``f`` + heads ``g_G``, ``g_P``, ``g_C``) sees frame v; its momentum
copy sees v+ (a later frame of the same video, same crop box). Each head has its own queue of
negatives and its own loss term (``cacl_cli.model.heads``, one module per head). The total loss is
w_G L_G + w_P L_P + w_C L_C (eqs. 3, 4, 6); ``symmetric`` adds the v+ -> v direction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from cacl_cli import distributed
from cacl_cli.model.backbone import build_backbone, extra_blocks, stage_channels, through_stage
from cacl_cli.model.diagnostics import health
from cacl_cli.model.heads import Head, Maps
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

    def __init__(self, model, heads: Sequence[Head]) -> None:
        super().__init__()
        self.backbone = build_backbone(model.arch, model.width)
        self.dense_stage = model.dense_stage
        # Without a dense head a neck would be parameters no loss reaches (DDP refuses those).
        neck = model.dense_neck if any(head.dense for head in heads) else 0
        self.neck = extra_blocks(self.backbone, model.dense_stage, neck)
        channels = {
            False: self.backbone.out_channels,
            True: stage_channels(self.backbone, model.dense_stage),
        }
        self.heads = nn.ModuleDict(
            {head.name: head.projection(channels[head.dense], model.dim) for head in heads}
        )
        self.reads_dense = {head.name: head.dense for head in heads}
        self.outputs = {head.name: head.outputs for head in heads}
        with_group_batch_norm(self)  # per-group BN statistics in one pass (shuffle-BN)

    def forward(self, x: torch.Tensor) -> Maps:
        if self.dense_stage == "layer4":
            h = dense = self.backbone(x)  # B x C x H/8 x W/8
        else:
            dense = through_stage(self.backbone, self.dense_stage)(x)
            h = self.backbone.layer4(dense)
        dense = self.neck(dense)
        out = {"backbone": h}
        for name, projection in self.heads.items():
            out.update(self.outputs[name](projection(dense if self.reads_dense[name] else h)))
        return out


class CACL(nn.Module):
    """Cycle-Attention Contrastive Learning on top of MoCo.

    ``model`` (a ``ModelSection``) shapes the backbone and the pixel-shuffle rolls, ``moco``
    (the ``moco`` section) the momentum encoder; ``heads`` are the heads trained, in order.
    ``symmetric`` also computes the losses with v and v+ swapped, and averages.
    """

    def __init__(self, model, moco, heads: Sequence[Head], symmetric: bool = False) -> None:
        super().__init__()
        self.heads = {head.name: head for head in heads}
        self.online = Encoder(model, heads)
        self.momentum_encoder = copy.deepcopy(self.online)
        for p in self.momentum_encoder.parameters():
            p.requires_grad = False
        self.queues = nn.ModuleDict(
            {head.name: FeatureQueue(head.queue_size, model.dim) for head in heads}
        )
        self.m, self.symmetric = moco.momentum, symmetric
        self.pixel_shuffle, self.online_bn_groups = model.pixel_shuffle, model.bn_groups
        self.shuffle_bn_groups, self.batch_shuffle = moco.shuffle_bn_groups, moco.batch_shuffle

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
    ) -> tuple[Maps, Maps]:
        """Online features of v and momentum features (keys, no gradient) of v+; ``shifts``
        (each frame's roll in input pixels) default to a draw of the pixel-shuffle scheme."""
        shift, shift_plus = shifts or self.draw_shifts(v)
        q = rolled(
            lambda x: in_groups(self.online, x, self.online_bn_groups, shuffle=False), v, shift
        )
        with torch.no_grad():
            k = rolled(self._momentum_keys, v_plus, shift_plus)
        return q, k

    def _momentum_keys(self, x: torch.Tensor) -> Maps:
        def grouped(y: torch.Tensor) -> Maps:
            return in_groups(self.momentum_encoder, y, self.shuffle_bn_groups, self.batch_shuffle)

        if self.batch_shuffle and distributed.world_size() > 1:
            return distributed.in_shuffled_batch(grouped, x)
        return grouped(x)

    @torch.no_grad()
    def landing_view(self, x: torch.Tensor) -> Maps | None:
        """Momentum features of frame x under a roll of their own, for a head that lands there
        (the cycle's ``cycle_return: reroll``); None when no head asks."""
        if not any(head.wants_landing() for head in self.heads.values()):
            return None
        return rolled(self._momentum_keys, x, random_roll(*x.shape[2:]))

    # ------------------------------------------------------------ one step

    def _terms(self, q: Maps, k: Maps, landing: Maps | None = None) -> dict[str, torch.Tensor]:
        """Each head's loss for online features q of one frame and keys k of the other."""
        return {
            name: head.loss(q, k, self.queues[name](), landing) for name, head in self.heads.items()
        }

    @torch.no_grad()
    def _enqueue(self, k: Maps) -> None:
        """After the loss: every rank's keys become negatives, for the next steps only."""
        for name, head in self.heads.items():
            self.queues[name].enqueue(distributed.gather(head.keys(k)))

    def forward(self, v: torch.Tensor, v_plus: torch.Tensor, diagnose: bool = True) -> CACLOutput:
        """Loss for a batch of frame pairs (B, 3, H, W) each; enqueues the keys.

        The momentum encoder is not updated here: the training loop calls ``momentum_update``
        once per optimiser step, before its first micro-batch (as DINO's loop does), so the
        micro-batches of an accumulated step share one momentum encoder. ``diagnose`` False skips
        the health signals (they cost a few percent of a step; the loop computes them only on
        the steps it logs).
        """
        q, k = self.encode(v, v_plus)
        terms = self._terms(q, k, self.landing_view(v))
        keys = [k]
        if self.symmetric:
            q2, k2 = self.encode(v_plus, v)
            swapped = self._terms(q2, k2, self.landing_view(v_plus))
            terms = {h: (t + t2) / 2 for (h, t), t2 in zip(terms.items(), swapped.values())}
            keys.append(k2)
        # terms are logged as they are (comparable with each head's chance level); the weights
        # enter the total only
        loss = sum(self.heads[h].weight * t for h, t in terms.items())
        diagnostics = health(self, q, k) if diagnose else {}
        for key in keys:
            self._enqueue(key)
        return CACLOutput(loss, terms, diagnostics)
