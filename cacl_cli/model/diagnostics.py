"""Health signals of a CACL step: they tell a learning head from a collapsed or cheating one.

Computed without gradient on the steps the loop logs, from the step's own features; never used
for training. The README's table says what healthy and dead values look like.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

from cacl_cli.model import losses
from cacl_cli.model.backbone import OUTPUT_STRIDE


@torch.no_grad()
def health(model, q: dict[str, torch.Tensor], k: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per head of ``model`` (a :class:`cacl_cli.model.cacl.CACL`): ``spread``, the head's own
    signals (``Head.health``) and ``chance``, the loss when all features are equal: a term near
    it has learned nothing.

    ``spread``: mean per-channel std of the unit vectors times sqrt(D): about 1 for well-spread
    features, 0 when collapsed.
    """
    out = {f"{name}/spread": spread(q[name]) for name in model.heads}
    for name, head in model.heads.items():
        out.update(head.health(q, k, model.queues[name].features))
    out.update({f"{name}/chance": head.chance(q, k) for name, head in model.heads.items()})
    return out


def spread(x: torch.Tensor) -> float:
    """Mean per-channel std of unit vectors (B, D, H, W) or (N, D), times sqrt(D)."""
    flat = x.float().transpose(0, 1).reshape(x.shape[1], -1)  # D x (B*H*W)
    return float(flat.std(dim=1).mean() * math.sqrt(x.shape[1]))


def rate(hits: torch.Tensor) -> float:
    return float(hits.float().mean())


def top1(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    return rate(losses.contrast_logits(q, k, queue, tau).argmax(dim=1) == 0)


# ---------------------------------------------------------------- against ground truth
# On frame pairs whose true correspondence is known (the built-in world), these say whether a
# head matches scene points or a code of where the padding was. ``truth`` is (B, HW): the true
# cell in v+ of each cell of v, -1 where the point is hidden.


def match_quality(match: torch.Tensor, truth: torch.Tensor, width: int) -> dict[str, float]:
    """Share of matches (B, HW) on the true cell (``exact``) or within one cell (``near``)."""
    valid = truth >= 0
    rows = (match // width - truth // width).abs()
    cols = (match % width - truth % width).abs()
    near = (torch.maximum(rows, cols) <= 1) & valid
    exact = (match == truth) & valid
    count = valid.sum().clamp(min=1)
    return {"exact": float(exact.sum() / count), "near": float(near.sum() / count)}


def roll_offset_cells(
    shifts: tuple[tuple[int, int], tuple[int, int]], height: int, width: int, stride: int
) -> torch.Tensor:
    """For each cell i of v, the cell of v+ whose rolled place equals i's: where a content-blind
    code of the padding's place sends it. (HW,)"""
    (a, b), (a_plus, b_plus) = shifts
    rows = (torch.arange(height) + (a_plus - a) // stride) % height
    cols = (torch.arange(width) + (b_plus - b) // stride) % width
    return (rows[:, None] * width + cols[None, :]).flatten()


def first_jumps(c: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
    """The cycle's most likely first jump v -> v+ of every cell, (B, HW)."""
    return (losses.flat_pixels(c) @ losses.flat_pixels(c_plus).transpose(1, 2)).argmax(2)


def jump_quality(
    jumps: torch.Tensor, truth: torch.Tensor, offset: torch.Tensor, width: int
) -> dict[str, float]:
    """Where first jumps land: near the true point, on the same cell, on the roll offset."""
    cells = torch.arange(jumps.shape[1], device=jumps.device)
    return {
        "near": match_quality(jumps, truth, width)["near"],
        "same_cell": rate(jumps == cells),
        "roll_offset": rate(jumps == offset.to(jumps.device)),
    }


def position_r2(features: torch.Tensor) -> float:
    """How much of a cell's (row, column) a linear map of its features explains (R^2, 0 to 1),
    fitted by least squares over every cell of the batch (B, C, H, W)."""
    b, c, h, w = features.shape
    x = features.float().permute(0, 2, 3, 1).reshape(-1, c)
    x = torch.cat([x - x.mean(0), torch.ones(len(x), 1, device=x.device)], dim=1)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    y = torch.stack([rows, cols], dim=-1).reshape(1, h * w, 2).expand(b, -1, -1).reshape(-1, 2)
    y = y.float().to(x.device)
    fit = x @ torch.linalg.lstsq(x.cpu(), y.cpu()).solution.to(x.device)
    residual = ((y - fit) ** 2).sum(0)
    total = ((y - y.mean(0)) ** 2).sum(0).clamp(min=1e-12)
    return float((1 - residual / total).clamp(0, 1).mean())


@torch.no_grad()
def truth_health(
    model, v: torch.Tensor, v_plus: torch.Tensor, truth: torch.Tensor, seed: int
) -> dict[str, float]:
    """``truth/*`` signals of ``model`` on frame pairs with known correspondence ``truth``.

    Rolls are drawn as training draws them, from ``seed``; neither the training random stream,
    the BN statistics nor the queues are changed.
    """
    out: dict[str, float] = {}
    h, w = v.shape[2] // OUTPUT_STRIDE, v.shape[3] // OUTPUT_STRIDE
    with _untouched(model, v.device):
        torch.manual_seed(seed)
        shifts = model.draw_shifts(v)
        q, k = model.encode(v, v_plus, shifts)
        for head in model.heads.values():  # each head's own checks against the truth
            out.update(head.truth(q, k, truth, shifts, (h, w)))
        plain, plain_plus = model.encode(v, v_plus, ((0, 0), (0, 0)))
        backbone = first_jumps(plain["backbone"], plain_plus["backbone"])
        out["truth/backbone_match_near"] = match_quality(backbone, truth, w)["near"]
        out["truth/backbone_position_r2"] = position_r2(plain["backbone"])
    return out


@contextlib.contextmanager
def _untouched(model, device: torch.device) -> Iterator[None]:
    """Run the encoders without leaving a trace: the random state and every BN buffer are put
    back as they were."""
    encoders = (model.online, model.momentum_encoder)
    saved = [(b, b.clone()) for e in encoders for b in e.buffers()]
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
    for buffer, before in saved:
        buffer.copy_(before)


SPREAD_WARNING = 0.1  # below this a head's outputs are close to one point: collapse
CHANCE_NEAR = 0.124  # a random cell lies within one cell of the true point this often (8x8 map)
# At tiny-world's peak learning rate the backbone's true matches dip for the first few hundred
# steps (0.45 -> 0.35 by step 300 in each 3000-step CACL run) and pass their start by step
# 600-1200 (docs/results.md); before this step a drop is no sign of a dead run.
MATCH_SETTLES_AT = 1000


def verdict(first: dict[str, float], last: dict[str, float], batch_size: int) -> list[str]:
    """The README's health tables applied to a run's first and last logged records: one short
    sentence per sign of a dead or cheating head, none for a healthy run."""
    problems = [
        f"{key.split('/')[0]} head collapsed ({key} {value:.3f} < {SPREAD_WARNING})"
        for key, value in last.items()
        if key.endswith("/spread") and value < SPREAD_WARNING
    ]
    if "global/top1_batch" in last and last["global/top1_batch"] <= 1.5 / batch_size:
        problems.append(
            f"the global head tells no video from another (global/top1_batch "
            f"{last['global/top1_batch']:.3f}, chance {1 / batch_size:.3f})"
        )
    if last.get("truth/cycle_jump_roll_offset", 0.0) > 0.2:
        problems.append(
            f"the cycle head follows the padding, not the content (truth/cycle_jump_roll_offset "
            f"{last['truth/cycle_jump_roll_offset']:.2f})"
        )
    if "truth/pixel_positive_near" in last and last["truth/pixel_positive_near"] < 2 * CHANCE_NEAR:
        problems.append(
            f"pixel positives are near chance (truth/pixel_positive_near "
            f"{last['truth/pixel_positive_near']:.2f}, chance {CHANCE_NEAR})"
        )
    key = "truth/backbone_match_near"
    settled = last.get("step", 0) >= MATCH_SETTLES_AT
    if settled and key in first and key in last and last[key] < first[key] - 0.05:
        problems.append(f"backbone matching got worse ({key} {first[key]:.2f} -> {last[key]:.2f})")
    return problems
