"""``cacl probe``: the linear protocol on a frozen backbone."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed

ARCH, WIDTH, SEED = options.shape_options("probe")


def probe_command(
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    arch: Optional[str] = ARCH,
    width: Optional[int] = WIDTH,
    seed: Optional[int] = SEED,
    preset: Optional[str] = options.preset_option("probe"),
    overrides: Optional[List[str]] = options.set_option("probe"),
    data: Optional[Path] = options.Data,
    out: Optional[Path] = options.Out,
    overwrite: bool = options.Overwrite,
    device: Optional[str] = options.Device,
) -> None:
    """Train a 1x1 conv on frozen stride-8 features and report mIoU, mAcc and per-class IoU.

    Writes config.yaml, results.json (with the protocol's fingerprint) and classifier.pt.
    With --data and no eval.dataset in the preset, the dataset's layout decides it.

    Example: cacl probe --checkpoint runs/mine --data VOCdevkit/VOC2012
    """
    with report_errors():
        shape = options.shape_values(arch, width, seed)
        cfg = options.settings("probe", preset, overrides, shape, data=data)
        options.one_weights_source(checkpoint=checkpoint, random_init=random_init)
        weights, on = options.weights(cfg, checkpoint), options.device(device, cfg)
        from rich.console import Console

        from cacl_cli.evaluate.probe import run_probe

        run_dir = options.out_folder(out, "probe", cfg, weights.name)
        with claimed(run_dir, "probe", overwrite, inputs=(data, checkpoint)):
            run_probe(cfg, weights, data, run_dir, on, Console())
