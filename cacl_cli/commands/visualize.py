"""``cacl visualize``: the paper's Figure 3 for any pixel of any video, from any checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from cacl_cli.commands import options
from cacl_cli.errors import CaclError, report_errors
from cacl_cli.outputs import claimed

ARCH, WIDTH, SEED = options.shape_options("visualize")


PixelOption = typer.Option(
    None,
    "--pixel",
    help="Source pixel X,Y in frame pixels (repeatable); also 'X,Y X,Y' or a grid 'grid:3x2'.",
)
CompareOption = typer.Option(
    None,
    "--compare",
    help="Two checkpoints (runs or files) side by side, e.g. with and without pixel shuffle.",
)
SizeOption = typer.Option(
    256, "--size", min=8, help="Short side, in pixels, of the frames fed to the backbone."
)
HtmlOption = typer.Option(
    None, "--html", help="Write an interactive page (one self-contained HTML file) instead."
)
TargetsOption = typer.Option(
    1, "--targets", min=1, help="Target frames T+S, T+2S ... shown by the --html page."
)
ChannelsOption = typer.Option(
    24, "--channels", min=1, help="Feature channels kept per space in the --html page."
)
SameScaleOption = typer.Option(
    False, "--same-scale", help="One colour scale for every panel (default: each its own)."
)


def visualize_command(
    frames: Path = typer.Argument(..., help="A folder of frames or a video file."),
    pixel: Optional[List[str]] = PixelOption,
    frame: int = typer.Option(0, "--frame", min=0, help="Index T of the source frame."),
    stride: int = typer.Option(8, "--stride", min=0, help="Compare with frame T + STRIDE."),
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    arch: Optional[str] = ARCH,
    width: Optional[int] = WIDTH,
    seed: Optional[int] = SEED,
    compare: Optional[Tuple[Path, Path]] = CompareOption,
    size: int = SizeOption,
    html: Optional[Path] = HtmlOption,
    targets: int = TargetsOption,
    channels: int = ChannelsOption,
    same_scale: bool = SameScaleOption,
    out: Optional[Path] = options.Out,
    overwrite: bool = options.Overwrite,
    preset: Optional[str] = options.preset_option("visualize"),
    overrides: Optional[List[str]] = options.set_option("visualize"),
    device: Optional[str] = options.Device,
) -> None:
    """Heat-maps of cosine similarity between a pixel of frame T and every pixel of frame T+S.

    One panel per feature space (backbone and each head), one row per pixel and checkpoint.
    Without --checkpoint or --compare the network is a random init, labelled so. Writes
    similarity.png and one .npy array per panel into --out.

    With --html the same maps become one interactive page: point at any pixel of frame T and
    every head's map redraws on frames T+S ... T+K*S (--targets K), for each checkpoint.

    Example: cacl visualize frames/ --pixel 120,80 --pixel grid:3x2 --checkpoint runs/mine
    """
    with report_errors():
        shape = options.shape_values(arch, width, seed)
        cfg = options.settings("visualize", preset, overrides, shape)
        options.one_weights_source(False, checkpoint=checkpoint, compare=compare,
                                   random_init=random_init)  # fmt: skip
        from rich.console import Console

        from cacl_cli.device import resolve_device
        from cacl_cli.evaluate.visualize import run_visualize

        sources = list(compare or [checkpoint])
        subject = "-vs-".join(options.evaluated(source) for source in sources)
        if html is not None:
            page = (html, targets, channels)
            return _write_page(cfg, frames, frame, stride, sources, size, page, overwrite, device)
        console = Console()
        folder = options.out_folder(out, "visualize", cfg, subject)
        with claimed(folder, "visualize", overwrite):
            figure, rows = run_visualize(
                cfg.model, frames, pixel or [], frame, stride, sources, size, folder,
                resolve_device(device or cfg.run.device), same_scale, console.print,
            )  # fmt: skip
        console.print(f"{figure}: {rows} row(s), frames {frame} and {frame + stride}")


def _write_page(cfg, frames, frame, stride, sources, size, page, overwrite, device) -> None:
    """``--html``: the correspondence explorer (evaluate/explorer.py) into one file."""
    from rich.console import Console

    from cacl_cli.device import resolve_device
    from cacl_cli.evaluate.explorer import run_explorer

    path, targets, channels = page
    if path.exists() and not overwrite:
        raise CaclError(f"--html {path} exists; pass --overwrite to replace it")
    size_bytes, shown = run_explorer(
        cfg.model, frames, frame, stride, targets, sources, size, channels, path,
        resolve_device(device or cfg.run.device),
    )  # fmt: skip
    Console().print(f"{path}: {size_bytes / 1e6:.1f} MB, frames {', '.join(map(str, shown))}")
