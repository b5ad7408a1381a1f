"""The ``cacl`` command line: one Typer app, one thin module per command."""

from __future__ import annotations

from importlib import metadata

import typer

from cacl_cli.commands import (
    export,
    extract_pairs,
    finetune,
    presets,
    pretrain,
    probe,
    propagate,
    visualize,
    world,
)
from cacl_cli.memory import reuse_freed_memory

DISTRIBUTION = "cacl-video"  # what pip installs; the command stays `cacl`

app = typer.Typer(
    name="cacl",
    help="Cycle-Attention Contrastive Learning: learn segmentation features from unlabeled video.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cacl {version()} ({DISTRIBUTION})")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Cycle-Attention Contrastive Learning: learn segmentation features from unlabeled video."""
app.command("extract-pairs")(extract_pairs.extract_pairs_command)
app.command("pretrain")(pretrain.pretrain_command)
app.command("probe")(probe.probe_command)
app.command("finetune")(finetune.finetune_command)
app.command("visualize")(visualize.visualize_command)
app.command("propagate")(propagate.propagate_command)
app.command("export")(export.export_command)
app.command("presets")(presets.presets_command)
app.command("world")(world.world_command)


def main() -> None:
    reuse_freed_memory()  # large tensors come and go every step: keep their pages
    app()
