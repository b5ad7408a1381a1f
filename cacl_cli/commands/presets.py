"""``cacl presets``: list the shipped presets, or print one fully resolved."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from cacl_cli.commands import options
from cacl_cli.config import dump, preset_description, preset_names, resolve
from cacl_cli.errors import report_errors


def presets_command(
    name: Optional[str] = typer.Argument(None, help="Print this preset resolved (name or file)."),
    overrides: Optional[List[str]] = options.set_option("presets"),
) -> None:
    """List presets; with a NAME, print it with every default and --set applied, as YAML.

    Example: cacl presets tiny-world --set optim.lr=2.0 > mine.yaml
    """
    with report_errors():
        if name is None:
            table = Table("preset", "description")
            for preset in preset_names():
                table.add_row(preset, preset_description(preset))
            Console().print(table)
            return
        typer.echo(dump(resolve(name, overrides or [])), nl=False)
