"""The set-up that ``probe`` and ``finetune`` share: config, run folder, device, datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cacl_cli.config import Config, resolve, write_config
from cacl_cli.data.segmentation import SegmentationSet, open_splits
from cacl_cli.device import resolve_device
from cacl_cli.errors import CaclError


@dataclass
class EvalRun:
    cfg: Config
    run_dir: Path
    device: torch.device
    train: SegmentationSet
    val: SegmentationSet


def start_eval_run(
    default_preset: str,
    preset: str | None,
    overrides: list[str],
    checkpoint: Path | None,
    random_init: bool,
    data: Path | None,
    out: Path | None,
    device: str | None,
) -> EvalRun:
    """Check the options, resolve the config, open both splits, write config.yaml."""
    if (checkpoint is None) == (not random_init):
        raise CaclError("give --checkpoint RUN_OR_FILE, or --random-init for the floor")
    cfg = resolve(preset or default_preset, overrides)
    torch.manual_seed(cfg.run.seed)  # a random-init backbone is then a function of run.seed
    run_dir = out or Path("runs") / cfg.preset.name
    run = EvalRun(cfg, run_dir, resolve_device(device or cfg.run.device), *open_splits(cfg, data))
    write_config(cfg, run_dir / "config.yaml")
    return run
