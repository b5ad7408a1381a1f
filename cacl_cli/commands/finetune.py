"""``cacl finetune``: the limited-sample protocol, one run per training fraction."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cacl_cli.commands import options
from cacl_cli.errors import report_errors


def finetune_command(
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    preset: Optional[str] = options.Preset,
    overrides: Optional[List[str]] = options.Set,
    data: Optional[Path] = options.Data,
    out: Optional[Path] = options.Out,
    device: Optional[str] = options.Device,
) -> None:
    """Fine-tune backbone + linear classifier on 1/5/10/100 % of the training images.

    The fractions come from eval.fractions; subsets are nested and seeded by eval.subset_seed, and
    each is written to subset-F.txt. Prints Table 4's layout; writes results.json.
    """
    with report_errors():
        from rich.console import Console
        from rich.table import Table

        from cacl_cli.evaluation import start_eval_run
        from cacl_cli.finetune import finetune_once, subset, write_subset
        from cacl_cli.segeval import fingerprint, write_report
        from cacl_cli.weights import load_backbone

        run = start_eval_run(
            "finetune-world", preset, overrides or [], checkpoint, random_init, data, out, device
        )
        cfg, train, val = run.cfg, run.train, run.val
        console = Console()
        rows, weights = {}, {}
        for fraction in cfg.eval.fractions:
            indices = subset(len(train), fraction, cfg.eval.subset_seed)
            write_subset(run.run_dir / f"subset-{fraction:g}.txt", train, indices)
            backbone, weights = load_backbone(checkpoint, cfg.model.arch, cfg.model.width)
            result = finetune_once(
                cfg,
                backbone,
                train,
                indices,
                val,
                run.device,
                console,
                f"finetune {fraction:g}% ({len(indices)} images)",
            )
            rows[f"{fraction:g}%"] = {"images": len(indices), **result}
        table = Table("", *rows, title=f"fine-tuning from {weights['source']}: mIoU (mAcc)")
        table.add_row(
            "mIoU", *(f"{100 * r['miou']:.1f} ({100 * r['macc']:.1f})" for r in rows.values())
        )
        console.print(table)
        summary = {
            k: {"images": r["images"], "miou": r["miou"], "macc": r["macc"], "iou": r["iou"]}
            for k, r in rows.items()
        }
        write_report(
            run.run_dir,
            f"fine-tuning {list(rows)[-1]}",
            list(rows.values())[-1],
            val.classes,
            fingerprint(cfg, weights, train, val),
            console,
            extra={"fractions": summary, "subset_seed": cfg.eval.subset_seed},
        )
