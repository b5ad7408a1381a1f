"""Video object segmentation by label propagation: a real-video check of the features.

Given the first frame's mask of a DAVIS-format sequence, each later frame's labels are a weighted
vote of the labels of a few context frames (the first frame, with its true mask, and the last
``context`` predicted frames). The weights come from the backbone alone: for each target position,
the ``topk`` most similar context positions within ``radius`` feature cells, softmax at
``temperature`` (the protocol of Jabri et al.'s contrastive random walk). Region similarity J is
the IoU of predicted and true object masks, averaged over every frame but the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cacl_cli.data.augment import IMAGENET_MEAN, IMAGENET_STD
from cacl_cli.data.frames import frame_files, read_rgb
from cacl_cli.data.segmentation import read_index_png
from cacl_cli.errors import CaclError


@dataclass(frozen=True)
class Propagation:
    context: int = 5  # predicted frames kept as context, besides the first frame
    topk: int = 10
    radius: float = 12.0  # in feature cells; positions farther away never vote
    temperature: float = 0.07
    short_side: int = 240  # frames are resized to this before the backbone
    rows_per_chunk: int = 1024  # target positions per affinity block (bounds memory)


def sequences(root: Path) -> list[str]:
    """The sequence names of a DAVIS-format folder: JPEGImages/480p/<seq> with Annotations."""
    images = root / "JPEGImages" / "480p"
    if not images.is_dir():
        raise CaclError(f"{root} is not a DAVIS-format folder (no JPEGImages/480p/ in it)")
    names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if not names:
        raise CaclError(f"{images} holds no sequence folders")
    return names


def read_sequence(root: Path, name: str, max_frames: int = 0) -> tuple[list[np.ndarray], list]:
    """RGB frames and object masks (1 where the annotation is nonzero) of one sequence."""
    frames = frame_files(root / "JPEGImages" / "480p" / name)
    masks_dir = root / "Annotations" / "480p" / name
    if not masks_dir.is_dir():
        raise CaclError(f"{masks_dir} is missing; DAVIS folders keep masks under Annotations/480p")
    if max_frames:
        frames = frames[:max_frames]
    masks = []
    for frame in frames:
        path = masks_dir / (frame.stem + ".png")
        masks.append((read_index_png(path) > 0).astype(np.uint8) if path.is_file() else None)
    if masks[0] is None:
        raise CaclError(f"{masks_dir}: the first frame's mask {frames[0].stem}.png is missing")
    return [read_rgb(f) for f in frames], masks


@torch.no_grad()
def features(backbone: nn.Module, frame: np.ndarray, short_side: int, device) -> torch.Tensor:
    """Unit-length backbone features (C, h, w) of one frame resized to ``short_side``."""
    h, w = frame.shape[:2]
    scale = short_side / min(h, w)
    size = (max(8, round(h * scale / 8) * 8), max(8, round(w * scale / 8) * 8))
    x = torch.from_numpy(frame).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = ((x - IMAGENET_MEAN) / IMAGENET_STD).to(device)
    return F.normalize(backbone(x)[0].float(), dim=0)


def _cell_positions(h: int, w: int, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([ys.flatten(), xs.flatten()], dim=1).float().to(device)  # hw x 2


def propagate_step(
    target: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, cfg: Propagation
) -> torch.Tensor:
    """Soft labels (L, h, w) of ``target`` (C, h, w) from context ``keys`` (N, C, h, w) and their
    ``labels`` (N, L, h, w): top-k affinities within the radius, softmax-weighted."""
    c, h, w = target.shape
    n = keys.shape[0]
    query = target.flatten(1).t()  # hw x C
    key = keys.permute(1, 0, 2, 3).reshape(c, -1)  # C x (N hw)
    value = labels.permute(0, 2, 3, 1).reshape(n * h * w, -1)  # (N hw) x L
    cells = _cell_positions(h, w, target.device)
    far = (torch.cdist(cells, cells) > cfg.radius).repeat(1, n)  # hw x (N hw)
    out = []
    for rows in range(0, h * w, cfg.rows_per_chunk):
        part = slice(rows, rows + cfg.rows_per_chunk)
        affinity = (query[part] @ key).masked_fill(far[part], float("-inf"))
        top, index = affinity.topk(min(cfg.topk, affinity.shape[1]), dim=1)
        weight = torch.softmax(top / cfg.temperature, dim=1)  # rows x k
        out.append((weight.unsqueeze(2) * value[index]).sum(1))  # rows x L
    return torch.cat(out).t().reshape(-1, h, w)


def segment_sequence(
    backbone: nn.Module,
    frames: list[np.ndarray],
    first_mask: np.ndarray,
    cfg: Propagation,
    device,
) -> list[np.ndarray]:
    """Predicted object masks (H, W) uint8 for every frame, the first being the given one."""
    height, width = first_mask.shape
    feats = [features(backbone, frames[0], cfg.short_side, device)]
    h, w = feats[0].shape[1:]
    first = torch.from_numpy(first_mask).float()[None, None]
    first = F.interpolate(first, size=(h, w), mode="area")[0, 0].to(device)
    soft = [torch.stack([1 - first, first])]  # background, object
    masks = [first_mask.astype(np.uint8)]
    for frame in frames[1:]:
        feats.append(features(backbone, frame, cfg.short_side, device))
        recent = list(range(max(1, len(feats) - 1 - cfg.context), len(feats) - 1))
        context = [0] + recent
        labels = propagate_step(
            feats[-1],
            torch.stack([feats[i] for i in context]),
            torch.stack([soft[i] for i in context]),
            cfg,
        )
        soft.append(labels)
        full = F.interpolate(
            labels[None], size=(height, width), mode="bilinear", align_corners=False
        )
        masks.append(full[0].argmax(0).byte().cpu().numpy())
        if len(feats) > cfg.context + 1:  # only the first and the recent frames are needed again
            feats[len(feats) - cfg.context - 1] = None
    return masks


def region_similarity(predicted: list[np.ndarray], truth: list) -> float:
    """J: mean IoU of the object over annotated frames after the first (empty vs empty is 1)."""
    scores = []
    for p, t in zip(predicted[1:], truth[1:]):
        if t is None:
            continue
        union = np.logical_or(p, t).sum()
        scores.append(1.0 if union == 0 else np.logical_and(p, t).sum() / union)
    if not scores:
        raise CaclError("no annotated frame after the first; J needs at least two masks")
    return float(np.mean(scores))
