"""The linear protocol: a frozen backbone, one 1x1 convolution trained on its stride-8 features.

Because the backbone never changes, its features can be computed once: the feature cache keeps
them (float16) in memory up to ``eval.cache_gb`` and spills the rest to disk, so every epoch after
the first costs only the 1x1 convolution. After training, the backbone is checked bit for bit
against the weights that were loaded.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from cacl_cli.checkpoint import read_tensors
from cacl_cli.config import Config
from cacl_cli.data.segmentation import SegmentationSet
from cacl_cli.errors import CaclError
from cacl_cli.evaluate.common import (
    evaluate,
    fingerprint,
    linear_classifier,
    prepare,
    segment_loss,
    start_eval_run,
    write_report,
)
from cacl_cli.files import atomic_path, write_atomic
from cacl_cli.model.backbone import through_stage
from cacl_cli.optim import lr_at
from cacl_cli.pretrained import Weights, backbone_of
from cacl_cli.progress import progress_bar


def run_probe(
    cfg: Config,
    weights: Weights,
    data: Path | None,
    run_dir: Path,
    device: torch.device,
    console: Console,
) -> Path:
    """The whole protocol into ``run_dir``: config.yaml, classifier.pt, results.json (returned)."""
    run = start_eval_run(cfg, data, run_dir, device)
    train, val = run.train, run.val
    backbone, loaded = backbone_of(weights)
    console.print(
        f"probe: {loaded['source']} ({cfg.eval.layer}) on {train.name} ({len(train)} images), "
        f"evaluated on {val.name} ({len(val)})"
    )
    backbone = through_stage(backbone, cfg.eval.layer).to(run.device)
    head, facts = train_probe(cfg, backbone, train, run_dir, run.device, console)
    result = probe_scores(backbone, head, val, cfg.eval.resize, run.device)
    write_atomic(run_dir / "classifier.pt", lambda fh: torch.save(head.state_dict(), fh))
    report = fingerprint(cfg, loaded, train, val) | {"layer": cfg.eval.layer}
    path = write_report(cfg, run_dir, "linear probe", result, val.classes, report, console, facts)
    console.print(f"backbone unchanged after training: yes; results in {path}")
    return path


def _cache_key(backbone: nn.Module, dataset: SegmentationSet, short_side: int) -> str:
    """A digest of the backbone's weights and the images' protocol."""
    digest = hashlib.sha256(f"{dataset.name}|{len(dataset)}|{short_side}".encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Frozen-backbone features of every training image (and its mirror image when flipping)."""

    def __init__(
        self,
        backbone: nn.Module,
        dataset: SegmentationSet,
        short_side: int,
        device: torch.device,
        mode: str,
        limit_gb: float,
        spill_dir: Path,
    ) -> None:
        self.backbone, self.dataset, self.short_side, self.device = (
            backbone,
            dataset,
            short_side,
            device,
        )
        self.mode, self.limit = mode, int(limit_gb * 2**30)
        # Keyed by what the features depend on: a killed probe of another backbone (or of the
        # same one at another size) left files that must not be taken for these.
        self.spill_dir, self.used = spill_dir / _cache_key(backbone, dataset, short_side), 0
        for stale in spill_dir.glob("*") if spill_dir.is_dir() else []:
            if stale != self.spill_dir:
                shutil.rmtree(stale, ignore_errors=True)
        self.memory: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def _compute(self, i: int, flipped: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = prepare(*self.dataset[i], self.short_side)
        if flipped:
            x, mask = x.flip(2), mask.flip(1)
        return self.backbone(x.unsqueeze(0).to(self.device))[0].cpu(), mask

    def get(self, i: int, flipped: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, h, w) float32 features and the (H, W) mask of image i."""
        if self.mode == "off":
            return self._compute(i, flipped)
        key = (i, flipped)
        if key in self.memory:
            feat, mask = self.memory[key]
            return feat.float(), mask
        spilled = self.spill_dir / f"{i}{'-flip' if flipped else ''}.pt"
        if spilled.is_file():
            feat, mask = read_tensors(spilled, "probe feature cache file")
            return feat.float(), mask
        feat, mask = self._compute(i, flipped)
        stored = (feat.half(), mask.to(torch.uint8))  # class ids and 255 fit in a byte
        size = stored[0].numel() * 2 + stored[1].numel() * stored[1].element_size()
        if self.mode == "memory" and self.used + size <= self.limit:
            self.memory[key] = stored
            self.used += size
        else:
            with atomic_path(spilled) as tmp:
                torch.save(stored, tmp)
        return feat, mask

    def cleanup(self) -> None:
        shutil.rmtree(self.spill_dir, ignore_errors=True)


def _batch_loss(
    head: nn.Module, items: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> torch.Tensor:
    """Mean loss over a batch; items of equal size are stacked, others run one by one."""
    groups: dict[tuple, list] = {}
    for feat, mask in items:
        groups.setdefault((tuple(feat.shape), tuple(mask.shape)), []).append((feat, mask))
    total = 0.0
    for group in groups.values():
        feats = torch.stack([f for f, _ in group]).to(device)
        masks = torch.stack([m for _, m in group]).long().to(device)
        total = total + segment_loss(head(feats), masks) * len(group)
    return total / len(items)


def _probe_epoch(
    cfg: Config,
    head: nn.Module,
    optimizer,
    cache: "FeatureCache",
    rng: np.random.Generator,
    step: int,
    total: int,
    device: torch.device,
) -> tuple[int, torch.Tensor]:
    """One pass over the training images in a random order (random flips with ``eval.flip``),
    the learning rate on its cosine; returns the next step and the last batch's loss."""
    order, batch = rng.permutation(len(cache.dataset)), cfg.data.batch_size
    for first in range(0, len(order), batch):
        chosen = order[first : first + batch]
        flips = rng.random(len(chosen)) < (0.5 if cfg.eval.flip else 0)
        items = [cache.get(int(i), bool(f)) for i, f in zip(chosen, flips)]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg.optim.lr, total, warmup_steps=0)
        loss = _batch_loss(head, items, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    return step, loss


def train_probe(
    cfg: Config,
    backbone: nn.Module,
    train: SegmentationSet,
    run_dir: Path,
    device: torch.device,
    console: Console,
) -> tuple[nn.Module, dict]:
    """Train the 1x1 classifier on frozen features; returns it and timing facts."""
    backbone.eval().requires_grad_(False)  # BN statistics frozen too
    loaded = {k: v.clone() for k, v in backbone.state_dict().items()}
    torch.manual_seed(cfg.run.seed)
    channels = backbone.out_channels
    head = linear_classifier(channels, train.num_classes).to(device)
    optimizer = torch.optim.SGD(
        head.parameters(),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
    )
    cache = FeatureCache(
        backbone,
        train,
        cfg.eval.resize,
        device,
        cfg.eval.cache,
        cfg.eval.cache_gb,
        run_dir / "feature-cache",
    )
    rng = np.random.default_rng(cfg.run.seed)
    epochs = cfg.schedule.epochs
    total, step, epoch_times = epochs * math.ceil(len(train) / cfg.data.batch_size), 0, []
    with progress_bar(console, "probe") as progress:
        task = progress.add_task("probe", total=epochs, status="")
        for _ in range(epochs):
            started = progress.tasks[0].elapsed or 0.0
            step, loss = _probe_epoch(cfg, head, optimizer, cache, rng, step, total, device)
            epoch_times.append((progress.tasks[0].elapsed or 0.0) - started)
            progress.update(task, advance=1, status=f"loss {float(loss.detach()):.3f}")
    cache.cleanup()
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, loaded[k])]
    if changed:
        raise CaclError(
            f"the frozen backbone changed during the probe ({changed[0]}); "
            "this is a bug, please report it"
        )
    return head, {
        "epoch_seconds": epoch_times,
        "backbone_unchanged": True,
        "cache_in_memory_mb": cache.used / 2**20,
    }


def probe_scores(
    backbone: nn.Module,
    head: nn.Module,
    val: SegmentationSet,
    short_side: int,
    device: torch.device,
) -> dict:
    return evaluate(lambda x: head(backbone(x)), val, short_side, device)
