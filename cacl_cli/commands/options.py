"""Options shared by every command, spelled the same everywhere."""

from __future__ import annotations

import typer

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
