"""What the probe and fine-tuning share: the run's set-up (options, folder, device, datasets),
input preparation, the linear classifier, evaluation, and the report (rich table + results.json
with the protocol's fingerprint)."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from cacl_cli.config import Config, write_config
from cacl_cli.data.images import to_input
from cacl_cli.data.segmentation import SegmentationSet, open_splits
from cacl_cli.evaluate.metrics import CONVENTION, IGNORE_INDEX, confusion_matrix, scores
from cacl_cli.files import write_text_atomic
from cacl_cli.run_folder import CONFIG, RESULTS


@dataclass
class EvalRun:
    cfg: Config
    run_dir: Path
    device: torch.device
    train: SegmentationSet
    val: SegmentationSet


def start_eval_run(cfg: Config, data: Path | None, run_dir: Path, device: torch.device) -> EvalRun:
    """Seed the random state and open both splits; nothing is written until the report."""
    torch.manual_seed(cfg.run.seed)  # a random-init backbone is then a function of run.seed
    train, val = open_splits(cfg.eval, cfg.world, data)
    return EvalRun(cfg, run_dir, device, train, val)


def prepare(
    image: np.ndarray, mask: np.ndarray, short_side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """An image as network input (``images.to_input``: short side ``short_side``, 0 = its own,
    sides multiples of the stride) and its mask resampled to the same size (nearest): ->
    (3, H, W) float and (H, W) long."""
    x = to_input(image, short_side)[0]
    if mask.shape != x.shape[1:]:
        mask = cv2.resize(mask, (x.shape[2], x.shape[1]), interpolation=cv2.INTER_NEAREST)
    return x, torch.from_numpy(mask.astype(np.int64))


def linear_classifier(channels: int, classes: int) -> nn.Conv2d:
    """The paper's probe: one 1x1 convolution from backbone channels to classes."""
    return nn.Conv2d(channels, classes, kernel_size=1)


def segment_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross entropy of stride-8 logits upsampled bilinearly to the label size; 255 ignored."""
    up = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, mask, ignore_index=IGNORE_INDEX)


@torch.no_grad()
def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor],
    dataset: SegmentationSet,
    short_side: int,
    device: torch.device,
) -> dict:
    """Scores of ``predict`` (image batch -> stride-8 logits) over every image of ``dataset``."""
    confusion = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.long)
    for i in range(len(dataset)):
        x, mask = prepare(*dataset[i], short_side)
        logits = predict(x.unsqueeze(0).to(device))
        up = F.interpolate(logits.float(), size=mask.shape, mode="bilinear", align_corners=False)
        confusion += confusion_matrix(up.argmax(1)[0].cpu(), mask, dataset.num_classes)
    return scores(confusion)


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("cacl-video", "torchvision", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "unknown"
    return found


def write_report(
    cfg: Config,
    run_dir: Path,
    protocol: str,
    result: dict,
    classes: list[str],
    fingerprint: dict,
    console: Console,
    extra: dict | None = None,
) -> Path:
    """Print the per-class table and write config.yaml and results.json (atomically); returns
    the results' path."""
    table = Table(title=protocol)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("acc", justify="right")
    fmt = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for name, iou, acc in zip(classes, result["iou"], result["acc"]):
        table.add_row(name, fmt(iou), fmt(acc))
    console.print(table)
    console.print(f"[dim]{CONVENTION}[/]")
    console.print(
        f"[bold]{protocol}: mIoU {100 * result['miou']:.1f}  mAcc {100 * result['macc']:.1f}[/]"
    )
    payload = {
        "protocol": protocol,
        "miou": result["miou"],
        "macc": result["macc"],
        "pixel_acc": result["pixel_acc"],
        "per_class": {
            n: {"iou": i, "acc": a} for n, i, a in zip(classes, result["iou"], result["acc"])
        },
        "convention": CONVENTION,
        "precision": "float32",  # the probe and fine-tuning never autocast
        "fingerprint": {**fingerprint, "versions": versions()},
        **(extra or {}),
    }
    write_config(cfg, run_dir / CONFIG)
    path = run_dir / RESULTS
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
    return path


def fingerprint(cfg, loaded: dict, train: SegmentationSet, val: SegmentationSet) -> dict:
    """What a result depends on, so two numbers can be told comparable or not."""
    return {
        "checkpoint": loaded,
        "dataset": cfg.eval.dataset,
        "train_split": train.name,
        "val_split": val.name,
        "train_images": len(train),
        "val_images": len(val),
        "epochs": cfg.schedule.epochs,
        "lr": cfg.optim.lr,
        "batch_size": cfg.data.batch_size,
        "resize": cfg.eval.resize,
        "crop_size": cfg.data.size,
        "seed": cfg.run.seed,
    }
