"""``cacl finetune``: the limited-sample protocol, one run per training fraction."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed


def finetune_command(
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    preset: Optional[str] = options.Preset,
    overrides: Optional[List[str]] = options.Set,
    data: Optional[Path] = options.Data,
    out: Optional[Path] = options.Out,
    overwrite: bool = options.Overwrite,
    device: Optional[str] = options.Device,
) -> None:
    """Fine-tune backbone + linear classifier on 1/5/10/100 % of the training images.

    The fractions come from eval.fractions; subsets are nested and seeded by eval.subset_seed, and
    each is written to subset-F.txt. Prints Table 4's layout; writes results.json.

    Example: cacl finetune --checkpoint runs/mine --preset finetune-cityscapes --data cityscapes/
    """
    with report_errors():
        cfg = options.settings("finetune", preset, overrides, data=data)
        options.one_weights_source(checkpoint=checkpoint, random_init=random_init)
        from rich.console import Console

        from cacl_cli.evaluate.finetune import run_finetune

        with claimed(options.out_folder(out, "finetune", cfg), "finetune", overwrite) as run_dir:
            run_finetune(cfg, checkpoint, random_init, data, run_dir, device, Console())
