"""The limited-sample protocol: backbone + linear classifier trained end to end on a seeded
subset of the training images.

Subsets are nested: one seeded permutation of the training set, and a fraction f keeps its first
max(1, round(n * f / 100)) images, so the 1 % subset lies inside the 5 % one and so on, and the same
seed picks the same images on any machine.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from cacl_cli.config import Config
from cacl_cli.data.segmentation import SegmentationSet
from cacl_cli.evaluate.common import (
    evaluate,
    fingerprint,
    linear_classifier,
    prepare,
    segment_loss,
    start_eval_run,
    write_report,
)
from cacl_cli.evaluate.metrics import IGNORE_INDEX
from cacl_cli.files import write_atomic, write_text_atomic
from cacl_cli.optim import lr_at
from cacl_cli.pretrained import Weights, backbone_of
from cacl_cli.progress import progress_bar


def run_finetune(
    cfg: Config,
    weights: Weights,
    data: Path | None,
    run_dir: Path,
    device: torch.device,
    console: Console,
    save: bool = True,
) -> Path:
    """One fine-tuning run per ``eval.fractions`` entry, each from the same weights; prints
    Table 4's layout and writes subset-F.txt files, with ``save`` the fine-tuned network of each
    (model-F.pt: ``backbone.*`` and ``classifier.*`` tensors), and results.json (returned) into
    ``run_dir``."""
    run = start_eval_run(cfg, data, run_dir, device)
    train, val = run.train, run.val
    rows, loaded = {}, {}
    for fraction in cfg.eval.fractions:
        indices = subset(len(train), fraction, cfg.eval.subset_seed)
        write_subset(run_dir / f"subset-{fraction:g}.txt", train, indices)
        backbone, loaded = backbone_of(weights)
        label = f"finetune {fraction:g}% ({len(indices)} images)"
        tuned = run_dir / f"model-{fraction:g}.pt" if save else None
        result = finetune_once(
            cfg, backbone, train, indices, val, run.device, console, label, tuned
        )
        rows[f"{fraction:g}%"] = {"images": len(indices), **result}
    table = Table("", *rows, title=f"fine-tuning from {loaded['source']}: mIoU (mAcc)")
    table.add_row(
        "mIoU", *(f"{100 * r['miou']:.1f} ({100 * r['macc']:.1f})" for r in rows.values())
    )
    console.print(table)
    summary = {
        k: {"images": r["images"], "miou": r["miou"], "macc": r["macc"], "iou": r["iou"]}
        for k, r in rows.items()
    }
    return write_report(
        cfg,
        run_dir,
        f"fine-tuning {list(rows)[-1]}",
        list(rows.values())[-1],
        val.classes,
        fingerprint(cfg, loaded, train, val),
        console,
        extra={"fractions": summary, "subset_seed": cfg.eval.subset_seed},
    )


def subset(n: int, fraction: float, seed: int) -> list[int]:
    """Indices of the nested, seeded subset holding ``fraction`` percent of n images."""
    order = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in order[: max(1, round(n * fraction / 100))])


def write_subset(path: Path, dataset: SegmentationSet, indices: list[int]) -> None:
    write_text_atomic(path, "".join(dataset.ids[i] + "\n" for i in indices))


def random_crop(
    x: torch.Tensor, mask: torch.Tensor, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A size x size crop, padded (image 0, mask ignore) where the image is smaller; random flip."""
    h, w = mask.shape
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    top = int(rng.integers(mask.shape[0] - size + 1))
    left = int(rng.integers(mask.shape[1] - size + 1))
    x, mask = x[:, top : top + size, left : left + size], mask[top : top + size, left : left + size]
    if rng.random() < 0.5:
        x, mask = x.flip(2), mask.flip(1)
    return x, mask


class Segmenter(nn.Module):
    def __init__(self, backbone: nn.Module, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = linear_classifier(backbone.out_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


def finetune_once(
    cfg: Config,
    backbone: nn.Module,
    train: SegmentationSet,
    indices: list[int],
    val: SegmentationSet,
    device: torch.device,
    console: Console,
    label: str,
    weights: Path | None = None,
) -> dict:
    """Train backbone + classifier on ``indices`` of ``train``; return the val scores, and write
    the trained network's tensors to ``weights`` when given."""
    torch.manual_seed(cfg.run.seed)
    model = Segmenter(backbone, train.num_classes).to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
    )
    rng = np.random.default_rng(cfg.run.seed)
    batch = min(cfg.data.batch_size, len(indices))
    steps_per_epoch = math.ceil(len(indices) / batch)
    total, step = cfg.schedule.epochs * steps_per_epoch, 0
    prepared = [prepare(*train[i], cfg.eval.resize) for i in indices]
    with progress_bar(console, label) as progress:
        task = progress.add_task(label, total=cfg.schedule.epochs, status="")
        for _ in range(cfg.schedule.epochs):
            order = rng.permutation(len(indices))
            for first in range(0, len(order), batch):
                crops = [
                    random_crop(*prepared[j], cfg.data.size, rng)
                    for j in order[first : first + batch]
                ]
                x = torch.stack([c[0] for c in crops]).to(device)
                mask = torch.stack([c[1] for c in crops]).to(device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, cfg.optim.lr, total, warmup_steps=0)
                loss = segment_loss(model(x), mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
            progress.update(task, advance=1, status=f"loss {float(loss.detach()):.3f}")
    model.eval()
    if weights is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_atomic(weights, lambda fh: torch.save(state, fh))
    return evaluate(model, val, cfg.eval.resize, device)
