"""``cacl finetune``: the limited-sample protocol, one run per training fraction."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed

ARCH, WIDTH, SEED = options.shape_options("finetune")


def finetune_command(
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    arch: Optional[str] = ARCH,
    width: Optional[int] = WIDTH,
    seed: Optional[int] = SEED,
    preset: Optional[str] = options.preset_option("finetune"),
    overrides: Optional[List[str]] = options.set_option("finetune"),
    data: Optional[Path] = options.Data,
    out: Optional[Path] = options.Out,
    overwrite: bool = options.Overwrite,
    device: Optional[str] = options.Device,
    save: bool = typer.Option(
        True, "--save/--no-save", help="Keep each fine-tuned network as model-F.pt in --out."
    ),
) -> None:
    """Fine-tune backbone + linear classifier on 1/5/10/100 % of the training images.

    The fractions come from eval.fractions; subsets are nested and seeded by eval.subset_seed, and
    each is written to subset-F.txt. Prints Table 4's layout; writes results.json and, unless
    --no-save, each fine-tuned network (backbone.* and classifier.* tensors) as model-F.pt.

    Example: cacl finetune --checkpoint runs/mine --preset finetune-cityscapes --data cityscapes/
    """
    with report_errors():
        shape = options.shape_values(arch, width, seed)
        cfg = options.settings("finetune", preset, overrides, shape, data=data)
        options.one_weights_source(checkpoint=checkpoint, random_init=random_init)
        weights, on = options.weights(cfg, checkpoint), options.device(device, cfg)
        from rich.console import Console

        from cacl_cli.evaluate.finetune import run_finetune

        run_dir = options.out_folder(out, "finetune", cfg, weights.name)
        with claimed(run_dir, "finetune", overwrite, inputs=(data, checkpoint)):
            run_finetune(cfg, weights, data, run_dir, on, Console(), save)
