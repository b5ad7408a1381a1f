"""Options shared by every command, spelled the same everywhere."""

from __future__ import annotations

import typer

Preset = typer.Option(None, "--preset", help="Preset name (see `cacl presets`) or a YAML file.")
Set = typer.Option(None, "--set", help="Override one key, e.g. --set optim.lr=0.5 (repeatable).")
Out = typer.Option(None, "--out", help="Run folder to write into.")
Device = typer.Option(None, "--device", help="auto, cpu or cuda [default: the preset's run.device].")
