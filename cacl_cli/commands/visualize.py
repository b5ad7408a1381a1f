"""``cacl visualize``: the paper's Figure 3 for any pixel of any video, from any checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer
from typer.core import TyperCommand

from cacl_cli.commands import options
from cacl_cli.errors import CaclError, report_errors
from cacl_cli.outputs import claimed
from cacl_cli.run_folder import judged_name

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
    False, "--html", help="Write OUT/explorer.html, one interactive page, instead of the PNG."
)
# The former spelling ``--html PAGE.html`` names the page itself; VisualizeCommand maps it here.
HtmlFileOption = typer.Option(None, "--html-file", hidden=True)
TargetsOption = typer.Option(
    1, "--targets", min=1, help="Target frames T+S, T+2S ... shown by the --html page."
)
ChannelsOption = typer.Option(
    24,
    "--channels",
    min=1,
    max=2048,  # a ResNet-50's widest stage: no space has more
    help="Feature channels kept per space in the --html page.",
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
    html: bool = HtmlOption,
    html_file: Optional[Path] = HtmlFileOption,
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
        options.one_weights_source(
            False, checkpoint=checkpoint, compare=compare, random_init=random_init
        )
        sources = list(compare or [checkpoint])
        view = (frames, frame, stride, sources, size, device or cfg.run.device)
        if html_file is not None:
            return _write_page(cfg, view, (targets, channels), html_file, overwrite)
        subject = "-vs-".join(judged_name(source) for source in sources)
        folder = options.out_folder(out, "visualize", cfg, subject)
        with claimed(folder, "visualize", overwrite, inputs=(frames, *sources)):
            if html:
                return _write_page(cfg, view, (targets, channels), folder / "explorer.html", True)
            _write_figure(cfg, view, pixel or [], same_scale, folder)


def _write_figure(cfg, view, pixels, same_scale, folder) -> None:
    """similarity.png and its arrays into ``folder``."""
    from rich.console import Console

    from cacl_cli.device import resolve_device
    from cacl_cli.evaluate.visualize import run_visualize

    frames, frame, stride, sources, size, device = view
    console = Console()
    figure, rows = run_visualize(
        cfg.model,
        frames,
        pixels,
        frame,
        stride,
        sources,
        size,
        folder,
        resolve_device(device),
        same_scale,
        console.print,
    )
    console.print(f"{figure}: {rows} row(s), frames {frame} and {frame + stride}")


def _write_page(cfg, view, page, path, overwrite) -> None:
    """``--html``: the correspondence explorer (evaluate/explorer.py) into one file."""
    from rich.console import Console

    from cacl_cli.device import resolve_device
    from cacl_cli.evaluate.explorer import run_explorer

    if path.exists() and not overwrite:
        raise CaclError(f"--html {path} exists; pass --overwrite to replace it")
    frames, frame, stride, sources, size, device = view
    targets, channels = page
    size_bytes, shown = run_explorer(
        cfg.model,
        frames,
        frame,
        stride,
        targets,
        sources,
        size,
        channels,
        path,
        resolve_device(device),
    )
    Console().print(f"{path}: {size_bytes / 1e6:.1f} MB, frames {', '.join(map(str, shown))}")


class VisualizeCommand(TyperCommand):
    """Keeps the former ``--html PAGE.html`` spelling working: ``--html`` is now a flag like
    propagate's, and a following ``*.html`` argument (never a frames folder or a video) is the
    page's own path, as it was."""

    def parse_args(self, ctx, args: List[str]) -> List[str]:
        return super().parse_args(ctx, former_html_spelling(args))


def former_html_spelling(args: List[str]) -> List[str]:
    """``--html X.html`` and ``--html=X.html`` -> ``--html-file X.html``; all else as given."""
    mapped = []
    for arg in args:
        if arg.startswith("--html="):
            mapped += ["--html-file", arg.split("=", 1)[1]]
        elif mapped[-1:] == ["--html"] and arg.lower().endswith(".html"):
            mapped[-1:] = ["--html-file", arg]
        else:
            mapped.append(arg)
    return mapped
