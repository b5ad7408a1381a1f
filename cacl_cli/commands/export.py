"""``cacl export``: a pretrain run's backbone as a plain torchvision-style ResNet state dict."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed


def export_command(
    run: Path = typer.Argument(..., help="A pretrain run folder or checkpoint file."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder to write into (default: RUN/export)."
    ),
    overwrite: bool = options.Overwrite,
    preset: Optional[str] = options.Preset,
    overrides: Optional[List[str]] = options.Set,
) -> None:
    """Write backbone.pt (torchvision ResNet names, no fc) and heads.pt, both plain tensors.

    A cacl run brings its own arch and width; a foreign state dict's are read from its
    tensors' shapes.
    Load with torch.load(path, weights_only=True); the backbone fits torchvision's resnet18/50
    (for the stride-8 layout give resnet50 replace_stride_with_dilation=[False, True, True]) with
    model.fc = torch.nn.Identity() and strict=True.

    Example: cacl export runs/mine --out weights/
    """
    with report_errors():
        cfg = options.settings("export", preset, overrides)
        from rich.console import Console

        from cacl_cli.pretrained import export_run

        folder = out or (run if run.is_dir() else run.parent) / "export"
        with claimed(folder, "export", overwrite):
            path, report, count = export_run(run, folder, cfg.model.arch, cfg.model.width)
        Console().print(
            f"{report['arch']} (width {report['width']}) from {report['source']}: "
            f"{count} backbone tensors -> {path}, "
            f"heads {', '.join(report.get('heads', [])) or 'none'} -> {folder / 'heads.pt'}"
        )
