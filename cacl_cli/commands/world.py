"""``cacl world``: write the built-in world to disk as mp4 clips, a VOC-style labelled set and
held-out clips in DAVIS's layout."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed


def world_command(
    out_argument: Optional[Path] = typer.Argument(
        None, metavar="OUT", help="The same as --out (the older spelling)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder to write videos/, voc/ and davis/ into."
    ),
    clips: int = typer.Option(20, "--clips", min=0, help="Training clips to write as mp4."),
    train_images: int = typer.Option(200, "--train-images", min=0, help="Labelled train images."),
    val_images: int = typer.Option(100, "--val-images", min=0, help="Labelled val images."),
    davis_clips: int = typer.Option(
        0, "--davis-clips", min=0, help="Held-out clips to write as DAVIS sequences (davis/)."
    ),
    overwrite: bool = options.Overwrite,
    preset: Optional[str] = options.preset_option("world"),
    overrides: Optional[List[str]] = options.set_option("world"),
) -> None:
    """Export the built-in world (the `world` section of the preset) to disk.

    Example: cacl world --out exported/ --clips 20, then cacl extract-pairs exported/videos;
    cacl world --out exported/ --davis-clips 20, then cacl propagate exported/davis --checkpoint RUN
    """
    with report_errors():
        from rich.console import Console

        from cacl_cli.data.world import World
        from cacl_cli.data.world_export import export_davis, export_labelled, export_videos

        out = options.either(out_argument, out, "--out", "the folder to write into")
        cfg = options.settings("world", preset, overrides)
        world = World(cfg.world)
        console = Console()
        with claimed(out, "world", overwrite):
            with console.status("writing clips"):
                videos = export_videos(world, out / "videos", clips)
            with console.status("writing labelled images"):
                split = {"train": train_images, "val": val_images}
                voc = export_labelled(world, out / "voc", split)
            if davis_clips:
                with console.status("writing DAVIS-layout clips"):
                    export_davis(world, out / "davis", davis_clips)
        davis = f"; {davis_clips} DAVIS-layout clips in {out / 'davis'}" if davis_clips else ""
        console.print(f"{len(videos)} clips in {out / 'videos'}; labelled set in {voc}{davis}")
