"""``cacl export``: a pretrain run's backbone as a plain torchvision-style ResNet state dict."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import report_errors
from cacl_cli.outputs import claimed, real_path
from cacl_cli.run_folder import RunFolder


def export_command(
    run_argument: Optional[Path] = typer.Argument(
        None, metavar="RUN", help="The same as --checkpoint (the older spelling)."
    ),
    run: Optional[Path] = options.Checkpoint,
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder to write into (default: RUN/export)."
    ),
    overwrite: bool = options.Overwrite,
    preset: Optional[str] = options.preset_option("export"),
    overrides: Optional[List[str]] = options.set_option("export"),
) -> None:
    """Write backbone.pt (torchvision ResNet names, no fc), heads.pt (plain tensors) and
    layout.json, the network the backbone needs: arch, width, and each convolution's stride,
    dilation and padding. cacl's loaders check the layout when they read backbone.pt.

    A cacl run brings its own arch and width; a foreign state dict's are read from its
    tensors' shapes. The same network from torchvision, for ResNet-18 and -50 alike (ResNet-50
    also matches resnet50(replace_stride_with_dilation=[False, True, True])):

    \b
        net = torchvision.models.resnet18()  # or resnet50()
        net.fc = torch.nn.Identity()
        for name, conv in json.load(open("layout.json"))["convs"].items():
            layer = net.get_submodule(name)
            layer.stride, layer.dilation, layer.padding = map(tuple, conv.values())
        net.load_state_dict(torch.load("backbone.pt", weights_only=True), strict=True)

    Example: cacl export --checkpoint runs/mine --out weights/
    """
    with report_errors():
        run = options.either(run_argument, run, "--checkpoint", "the run or weights to export")
        cfg = options.settings("export", preset, overrides)
        from rich.console import Console

        from cacl_cli.pretrained import export_run

        export = RunFolder(_run_folder(run)).export
        folder = out or export
        own = real_path(folder) == real_path(export)
        inputs = () if own else (run,)  # RUN/export: the one output that lies in its input
        with claimed(folder, "export", overwrite, named=out is not None, inputs=inputs):
            path, report, count = export_run(run, folder, cfg.model.arch, cfg.model.width)
        Console().print(
            f"{report['arch']} (width {report['width']}) from {report['source']}: "
            f"{count} backbone tensors -> {path}, "
            f"heads {', '.join(report.get('heads', [])) or 'none'} -> {folder / 'heads.pt'}; "
            f"the network they need -> {folder / 'layout.json'}"
        )


def _run_folder(source: Path) -> Path:
    """The run a source belongs to: the folder itself, or the run above a checkpoint file."""
    if source.is_dir():
        return source
    run = RunFolder.holding(source)
    return run.root if run else source.parent
