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
        from rich.console import Console

        from cacl_cli import visualize as vis
        from cacl_cli.config import resolve
        from cacl_cli.data.frames import read_frames
        from cacl_cli.weights import load_encoder

        if checkpoint and compare:
            raise CaclError("give either --checkpoint or --compare, not both")
        cfg = resolve(preset or "tiny-world", overrides or [])
        frame_t, frame_s = read_frames(frames, [frame, frame + stride])
        height, width = frame_t.shape[:2]
        points = [vis.parse_pixel(p) for p in pixel or []]
        if pixels:
            points += (
                vis.grid_pixels(pixels, width, height)
                if pixels.startswith("grid:")
                else [vis.parse_pixel(p) for p in pixels.split()]
            )
        if not points:
            raise CaclError("give --pixel X,Y (or --pixels) to choose the source pixel")
        for p in points:
            vis.check_pixel(p, width, height)
        out_dir = out or Path("runs") / "visualize"
        work = vis.working_size(width, height, size)
        rows = []
        for run_index, source in enumerate(compare or [checkpoint]):
            encoder, report = load_encoder(source, cfg.model.arch, cfg.model.width, cfg.model.dim)
            encoder.eval()
            name = "random init" if source is None else source.name
            maps_t = vis.feature_maps(encoder, frame_t, work)
            maps_s = vis.feature_maps(encoder, frame_s, work)
            for k, point in enumerate(points):
                maps = vis.similarity_maps(maps_t, maps_s, point, (width, height))
                for m in maps:
                    vis.save_npy(out_dir / f"sim-r{run_index}-p{k}-{m.space}.npy", m.values)
                rows.append(
                    vis.figure_row(
                        frame_t, frame_s, point, maps, f"{name}: T={frame}, ({point[0]},{point[1]})"
                    )
                )
        figure = out_dir / "similarity.png"
        vis.save_png(figure, vis.stack_rows(rows))
        Console().print(f"{figure}: {len(rows)} row(s), frames {frame} and {frame + stride}")
