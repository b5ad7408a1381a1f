"""``cacl visualize``: the paper's Figure 3 for any pixel of any video, from any checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from cacl_cli.commands import options
from cacl_cli.errors import CaclError, report_errors


def visualize_command(
    frames: Path = typer.Argument(..., help="A folder of frames or a video file."),
    pixel: Optional[List[str]] = typer.Option(
        None, "--pixel", help="X,Y in frame pixels (repeatable)."
    ),
    pixels: Optional[str] = typer.Option(
        None, "--pixels", help="Several points 'X,Y X,Y' or a grid 'grid:3x2'."
    ),
    frame: int = typer.Option(0, "--frame", min=0, help="Index T of the source frame."),
    stride: int = typer.Option(8, "--stride", min=0, help="Compare with frame T + STRIDE."),
    checkpoint: Optional[Path] = options.Checkpoint,
    compare: Optional[Tuple[Path, Path]] = typer.Option(
        None,
        "--compare",
        help="Two checkpoints (runs or files) side by side, e.g. with and without pixel shuffle.",
    ),
    size: int = typer.Option(256, "--size", min=8, help="Working short side in pixels."),
    out: Optional[Path] = options.Out,
    preset: Optional[str] = options.Preset,
    overrides: Optional[List[str]] = options.Set,
) -> None:
    """Heat-maps of cosine similarity between a pixel of frame T and every pixel of frame T+S.

    One panel per feature space (backbone and each head), one row per pixel and checkpoint.
    Without --checkpoint the model is a random init, labelled so. Writes similarity.png and one
    .npy array per panel into --out (default runs/visualize).
    """
    with report_errors():
        if checkpoint and compare:
            raise CaclError("give either --checkpoint or --compare, not both")
        cfg = options.settings("visualize", preset, overrides)
        from rich.console import Console

        from cacl_cli.evaluate.visualize import run_visualize

        sources = list(compare or [checkpoint])
        out = out or Path("runs") / "visualize"
        figure, rows = run_visualize(
            cfg.model, frames, pixel or [], pixels, frame, stride, sources, size, out
        )
        Console().print(f"{figure}: {rows} row(s), frames {frame} and {frame + stride}")
