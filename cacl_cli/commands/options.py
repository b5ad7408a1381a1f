"""Options shared by every command, spelled the same everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cacl_cli.config import DEFAULT_PRESETS, Config, check_run, resolve

Preset = typer.Option(None, "--preset", help="Preset name (see `cacl presets`) or a YAML file.")
Set = typer.Option(None, "--set", help="Override one key, e.g. --set optim.lr=0.5 (repeatable).")
Out = typer.Option(None, "--out", help="Run folder to write into.")
Device = typer.Option(
    None, "--device", help="auto, cpu or cuda [default: the preset's run.device]."
)
Data = typer.Option(None, "--data", help="Dataset folder (default: the built-in world).")
Checkpoint = typer.Option(
    None,
    "--checkpoint",
    help="A pretrain run folder or checkpoint file, or a torchvision / MoCo-v2 state dict.",
)
RandomInit = typer.Option(
    False, "--random-init", help="Use a randomly initialised backbone (the floor to beat)."
)


def settings(
    command: str,
    preset: str | None,
    overrides: list[str] | None,
    values: dict | None = None,
    data: Path | None = None,
) -> Config:
    """The command's config: its preset (or the default one), ``--set``, then the option values,
    checked key by key and between keys. Imports no torch, so a typo is refused at once."""
    values = {k: v for k, v in (values or {}).items() if v is not None}
    cfg = resolve(preset or DEFAULT_PRESETS[command], overrides or [], values)
    check_run(cfg, command, ranks=int(os.environ.get("WORLD_SIZE", "1")), data=data)
    return cfg
