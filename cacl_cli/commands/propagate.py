"""``cacl propagate``: DAVIS-style label propagation with a backbone's features (region J)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import CaclError, report_errors


def propagate_command(
    davis: Path = typer.Argument(
        ..., help="A DAVIS-format folder (JPEGImages/480p, Annotations/480p)."
    ),
    sequence: Optional[List[str]] = typer.Option(
        None, "--seq", help="Sequence name (repeatable; default: every sequence)."
    ),
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    arch: str = typer.Option(
        "resnet18", "--arch", help="Backbone for --random-init or a foreign file."
    ),
    width: int = typer.Option(64, "--width", min=1, help="First-stage channels, as --arch."),
    seed: int = typer.Option(0, "--seed", help="Seeds a --random-init backbone."),
    short_side: int = typer.Option(
        240, "--size", min=16, help="Short side of frames fed to the backbone."
    ),
    context: int = typer.Option(
        5, "--context", min=0, help="Recent predicted frames used as context."
    ),
    topk: int = typer.Option(10, "--topk", min=1, help="Context positions voting per position."),
    radius: float = typer.Option(12.0, "--radius", min=0.0, help="Vote radius in feature cells."),
    frames: int = typer.Option(0, "--frames", min=0, help="Use only the first N frames (0: all)."),
    out: Optional[Path] = options.Out,
    device: Optional[str] = options.Device,
) -> None:
    """Propagate each sequence's first mask through its frames; report J (mean IoU) per sequence.

    Writes results.json and the predicted masks (PNG, 255 = object) into --out
    (default runs/propagate).
    """
    with report_errors():
        import json

        import cv2
        import torch
        from rich.console import Console
        from rich.table import Table

        from cacl_cli.device import resolve_device
        from cacl_cli.files import write_atomic, write_text_atomic
        from cacl_cli.progress import progress_bar
        from cacl_cli.propagate import (
            Propagation,
            read_sequence,
            region_similarity,
            segment_sequence,
            sequences,
        )
        from cacl_cli.weights import load_backbone

        if (checkpoint is None) == (not random_init):
            raise CaclError("give --checkpoint RUN_OR_FILE, or --random-init for the floor")
        names = sequence or sequences(davis)
        known = set(sequences(davis))
        for name in names:
            if name not in known:
                raise CaclError(f"--seq {name}: not in {davis}/JPEGImages/480p")
        torch.manual_seed(seed)
        backbone, weights = load_backbone(checkpoint, arch, width)
        run_device = resolve_device(device or "auto")
        backbone = backbone.to(run_device).eval()
        cfg = Propagation(context, topk, radius, short_side=short_side)
        out = out or Path("runs") / "propagate"
        console = Console()
        scores = {}
        with progress_bar(console, "propagate") as progress:
            task = progress.add_task("", total=len(names), status="")
            for name in names:
                images, masks = read_sequence(davis, name, frames)
                predicted = segment_sequence(backbone, images, masks[0], cfg, run_device)
                scores[name] = region_similarity(predicted, masks)
                for i, mask in enumerate(predicted):
                    ok, png = cv2.imencode(".png", mask * 255)
                    write_atomic(out / name / f"{i:05d}.png", lambda fh: fh.write(png.tobytes()))
                progress.update(task, advance=1, status=f"{name} J {scores[name]:.3f}")
        result = {
            "J_mean": sum(scores.values()) / len(scores),
            "J": scores,
            "weights": {k: v for k, v in weights.items() if k != "unused"},
            "protocol": {**cfg.__dict__, "frames": frames or "all"},
        }
        write_text_atomic(out / "results.json", json.dumps(result, indent=2) + "\n")
        table = Table(title=f"label propagation, {weights['source']}")
        table.add_column("sequence")
        table.add_column("J (mean IoU)", justify="right")
        for name, j in scores.items():
            table.add_row(name, f"{j:.3f}")
        table.add_row("mean", f"{result['J_mean']:.3f}")
        console.print(table)
        console.print(f"results in {out / 'results.json'}")
