"""Video object segmentation by label propagation: a real-video check of the features.

Given the first frame's mask of a DAVIS-format sequence, each later frame's labels are a weighted
vote of the labels of a few context frames (the first frame, with its true mask, and the last
``context`` predicted frames). The weights come from the backbone alone: for each target position,
the ``topk`` most similar context positions within ``radius`` feature cells, softmax at
``temperature`` (the protocol of Jabri et al.'s contrastive random walk). Region similarity J is
the IoU of predicted and true object masks, averaged over every frame but the first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cacl_cli.data.frames import frame_files
from cacl_cli.data.images import read_rgb, to_input
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
    return F.normalize(backbone(to_input(frame, short_side).to(device))[0].float(), dim=0)


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


def run_propagation(
    cfg,
    davis: Path,
    names: list[str] | None,
    checkpoint: Path | None,
    random_init: bool,
    out: Path,
    device: str | None,
    console,
) -> Path:
    """Propagate every chosen sequence, write its masks and results.json (returned) into ``out``.

    ``cfg`` gives the ``propagate`` section, and ``model`` / ``run.seed`` for a random init.
    """
    import cv2
    from rich.table import Table

    from cacl_cli.device import resolve_device
    from cacl_cli.files import write_atomic, write_text_atomic
    from cacl_cli.progress import progress_bar
    from cacl_cli.weights import load_backbone

    if (checkpoint is None) == (not random_init):
        raise CaclError("give --checkpoint RUN_OR_FILE, or --random-init for the floor")
    known = sequences(davis)
    for name in names or []:
        if name not in known:
            raise CaclError(f"--seq {name}: not in {davis}/JPEGImages/480p")
    names = names or known
    section = cfg.propagate
    torch.manual_seed(cfg.run.seed)
    backbone, weights = load_backbone(checkpoint, cfg.model.arch, cfg.model.width)
    run_device = resolve_device(device or cfg.run.device)
    backbone = backbone.to(run_device).eval()
    protocol = Propagation(section.context, section.topk, section.radius, short_side=section.size)
    scores = {}
    with progress_bar(console, "propagate") as progress:
        task = progress.add_task("", total=len(names), status="")
        for name in names:
            images, masks = read_sequence(davis, name, section.frames)
            predicted = segment_sequence(backbone, images, masks[0], protocol, run_device)
            scores[name] = region_similarity(predicted, masks)
            for i, mask in enumerate(predicted):
                ok, png = cv2.imencode(".png", mask * 255)
                write_atomic(out / name / f"{i:05d}.png", lambda fh: fh.write(png.tobytes()))
            progress.update(task, advance=1, status=f"{name} J {scores[name]:.3f}")
    result = {
        "J_mean": sum(scores.values()) / len(scores),
        "J": scores,
        "weights": {k: v for k, v in weights.items() if k != "unused"},
        "protocol": {**protocol.__dict__, "frames": section.frames or "all"},
    }
    path = out / "results.json"
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    table = Table(title=f"label propagation, {weights['source']}")
    table.add_column("sequence")
    table.add_column("J (mean IoU)", justify="right")
    for name, j in scores.items():
        table.add_row(name, f"{j:.3f}")
    table.add_row("mean", f"{result['J_mean']:.3f}")
    console.print(table)
    return path
