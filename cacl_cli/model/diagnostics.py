"""Health signals of a CACL step: they tell a learning head from a collapsed or cheating one.

Computed without gradient on the steps the loop logs, from the step's own features; never used
for training. The README's table says what healthy and dead values look like.
"""

from __future__ import annotations

import math

import torch

from cacl_cli.model import losses


@torch.no_grad()
def health(
    model, q: dict[str, torch.Tensor], k: dict[str, torch.Tensor], max_cycle_images: int = 4
) -> dict[str, float]:
    """Per head: ``spread``, ``top1_queue``, ``chance``; plus the head-specific signals.

    ``top1_queue``: the positive outranks every queued negative. ``top1_batch``: q_i's nearest key
    in the batch is k_i (chance 1/B, independent of the queue's state). ``spread``: mean
    per-channel std of the unit vectors times sqrt(D): about 1 for well-spread features, 0 when
    collapsed. ``same_position``: share of pixel positives at the query's own cell.
    ``back_rate``: pixels whose most likely cycle return is themselves.

    ``model`` is a :class:`cacl_cli.model.cacl.CACL` (its heads, queues, tau and pixel rule).
    """
    out: dict[str, float] = {}
    for head in model.heads:
        out[f"{head}/spread"] = spread(q[head])
    if "global" in model.heads:
        g_q, g_k = q["global_vector"], k["global_vector"]
        out["global/top1_queue"] = _top1(g_q, g_k, model.queues["global"].features, model.tau)
        out["global/top1_batch"] = _rate(
            (g_q @ g_k.t()).argmax(1) == torch.arange(len(g_q), device=g_q.device)
        )
    if "pixel" in model.heads:
        match = model.pixel_match(q, k)
        positions = torch.arange(match.shape[1], device=match.device)
        out["pixel/same_position"] = _rate(match == positions)
        d = q["pixel"].shape[1]
        p_q = losses.flat_pixels(q["pixel"]).reshape(-1, d)
        p_k = losses.gather_pixels(k["pixel"], match).reshape(-1, d)
        out["pixel/top1_queue"] = _top1(p_q, p_k, model.queues["pixel"].features, model.tau)
    if "cycle" in model.heads:
        n = max_cycle_images
        out["cycle/back_rate"] = float(
            losses.cycle_back_rate(
                q["cycle"][:n], k["cycle"][:n], model.queues["cycle"].features, model.tau
            )
        )
    out.update(chance_losses(model, q, k))
    return out


def chance_losses(
    model, q: dict[str, torch.Tensor], k: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Per head, the loss when all features are equal: a term near it has learned nothing.

    Contrastive heads: log(Q + 1). Cycle head: M is uniform over HW + Q columns, so the hard loss
    is log(HW + Q) and the soft one that minus the target's mean entropy.
    """
    out = {
        f"{h}/chance": math.log(model.queues[h].size + 1) for h in model.heads if h != "cycle"
    }
    if "cycle" in model.heads:
        hw = q["cycle"].shape[2] * q["cycle"].shape[3]
        chance = math.log(hw + model.queues["cycle"].size)
        if model.soft_cycle:
            target = losses.soft_cycle_target(q["global"], k["global"], model.soft_target_tau)
            chance -= float(-torch.special.xlogy(target, target).sum(2).mean())
        out["cycle/chance"] = chance
    return out


def spread(x: torch.Tensor) -> float:
    """Mean per-channel std of unit vectors (B, D, H, W) or (N, D), times sqrt(D)."""
    flat = x.float().transpose(0, 1).reshape(x.shape[1], -1)  # D x (B*H*W)
    return float(flat.std(dim=1).mean() * math.sqrt(x.shape[1]))


def _rate(hits: torch.Tensor) -> float:
    return float(hits.float().mean())


def _top1(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    return _rate(losses.contrast_logits(q, k, queue, tau).argmax(dim=1) == 0)
