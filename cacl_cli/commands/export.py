"""``cacl export``: a pretrain run's backbone as a plain torchvision-style ResNet state dict."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cacl_cli.errors import report_errors


def export_command(
    run: Path = typer.Argument(..., help="A pretrain run folder or checkpoint file."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder to write into (default: RUN/export)."
    ),
) -> None:
    """Write backbone.pt (torchvision ResNet names, no fc) and heads.pt, both plain tensors.

    Load with torch.load(path, weights_only=True); the backbone fits torchvision's resnet18/50
    (for the stride-8 layout give resnet50 replace_stride_with_dilation=[False, True, True]) with
    model.fc = torch.nn.Identity() and strict=True.
    """
    with report_errors():
        import torch
        from rich.console import Console

        from cacl_cli.files import write_atomic
        from cacl_cli.weights import load_encoder

        encoder, report = load_encoder(run, "resnet18", 64)
        folder = out or (run if run.is_dir() else run.parent) / "export"
        backbone = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
        heads = {k: v.clone() for k, v in encoder.heads.state_dict().items()}
        write_atomic(folder / "backbone.pt", lambda fh: torch.save(backbone, fh))
        write_atomic(folder / "heads.pt", lambda fh: torch.save(heads, fh))
        Console().print(
            f"{report['arch']} (width {report['width']}) from {report['source']}: "
            f"{len(backbone)} backbone tensors -> {folder / 'backbone.pt'}, "
            f"heads {', '.join(report.get('heads', [])) or 'none'} -> {folder / 'heads.pt'}"
        )
