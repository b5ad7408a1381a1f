"""``cacl propagate``: DAVIS-style label propagation with a backbone's features (region J)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed

DavisArgument = typer.Argument(
    ..., help="A DAVIS-format folder (JPEGImages/480p, Annotations/480p)."
)
SequenceOption = typer.Option(
    None, "--seq", help="Sequence name (repeatable; default: every sequence)."
)
ArchOption, WidthOption, SeedOption = options.shape_options("propagate")
ContextOption = options.key_option(
    "propagate",
    "propagate.context",
    "--context",
    min=0,
    help="Recent predicted frames used as context",
)
TopkOption = options.key_option(
    "propagate", "propagate.topk", "--topk", min=1, help="Context positions voting per position"
)
RadiusOption = options.key_option(
    "propagate", "propagate.radius", "--radius", min=0.0, help="Vote radius in feature cells"
)
FramesOption = options.key_option(
    "propagate", "propagate.frames", "--frames", min=0, help="Use only the first N frames (0: all)"
)
LayerOption = options.key_option(
    "propagate",
    "propagate.layer",
    "--layer",
    help="Backbone stage whose features vote: layer4 (last), layer3, layer2",
)
BaselineOption = typer.Option(
    None, "--baseline", help="No network: 'copy' the first mask, or 'colour' features."
)
SplitOption = typer.Option(
    None, "--split", help="File of sequence names [default: ImageSets/*/val.txt if present]."
)
HtmlOption = typer.Option(
    False,
    "--html",
    help="Also write OUT/SEQUENCE.html, one interactive page per sequence: masks, J and F.",
)


def propagate_command(
    davis: Path = DavisArgument,
    sequence: Optional[List[str]] = SequenceOption,
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
    preset: Optional[str] = options.preset_option("propagate"),
    overrides: Optional[List[str]] = options.set_option("propagate"),
    arch: Optional[str] = ArchOption,
    width: Optional[int] = WidthOption,
    seed: Optional[int] = SeedOption,
    size: Optional[int] = options.Size,
    context: Optional[int] = ContextOption,
    topk: Optional[int] = TopkOption,
    radius: Optional[float] = RadiusOption,
    frames: Optional[int] = FramesOption,
    layer: Optional[str] = LayerOption,
    baseline: Optional[str] = BaselineOption,
    split: Optional[Path] = SplitOption,
    html: bool = HtmlOption,
    out: Optional[Path] = options.Out,
    overwrite: bool = options.Overwrite,
    device: Optional[str] = options.Device,
) -> None:
    """Propagate each sequence's first annotation through its frames; report DAVIS J, F, J&F.

    The protocol is the preset's `propagate` section (default propagate-dino; propagate-crw and
    propagate-cpu also ship); each flag sets one of its keys. Writes results.json and indexed
    PNGs with the DAVIS palette, named like the annotations, into --out.

    Example: cacl propagate DAVIS --checkpoint runs/mine --preset propagate-crw
    """
    with report_errors():
        flags = options.shape_values(arch, width, seed)
        flags |= {"propagate.size": size, "propagate.context": context, "propagate.topk": topk}
        flags |= {"propagate.radius": radius, "propagate.frames": frames, "propagate.layer": layer}
        cfg = options.settings("propagate", preset, overrides, flags)
        options.one_weights_source(
            checkpoint=checkpoint, random_init=random_init, baseline=baseline
        )
        weights, on = options.weights(cfg, checkpoint, baseline), options.device(device, cfg)
        from rich.console import Console

        from cacl_cli.evaluate.propagate import run_propagation

        console = Console()
        folder = options.out_folder(out, "propagate", cfg, weights.name)
        with claimed(folder, "propagate", overwrite, inputs=(davis, checkpoint, split)):
            path = run_propagation(
                cfg, davis, sequence, split, weights, folder, on, console, pages=html
            )
        console.print(f"results in {path}")
