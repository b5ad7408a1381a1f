"""``cacl probe``: the linear protocol on a frozen backbone."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import CaclError, report_errors


def probe_command(
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = typer.Option(False, "--random-init",
                                     help="Probe a randomly initialised backbone (the floor)."),
    preset: Optional[str] = options.Preset,
    overrides: Optional[List[str]] = options.Set,
    data: Optional[Path] = options.Data,
    out: Optional[Path] = options.Out,
    device: Optional[str] = options.Device,
) -> None:
    """Train a 1x1 conv on frozen stride-8 features and report mIoU, mAcc and per-class IoU.

    Writes config.yaml, results.json (with the protocol's fingerprint) and classifier.pt.
    """
    with report_errors():
        import torch
        from rich.console import Console

        from cacl_cli.config import resolve, write_config
        from cacl_cli.data.segmentation import open_splits
        from cacl_cli.device import resolve_device
        from cacl_cli.files import write_atomic
        from cacl_cli.probe import probe_scores, train_probe
        from cacl_cli.segeval import fingerprint, write_report
        from cacl_cli.weights import load_backbone

        if (checkpoint is None) == (not random_init):
            raise CaclError("give --checkpoint RUN_OR_FILE, or --random-init for the floor")
        cfg = resolve(preset or "probe-world", overrides or [])
        run_dir = out or Path("runs") / f"{cfg.preset.name}"
        dev = resolve_device(device or cfg.run.device)
        train, val = open_splits(cfg, data)
        backbone, weights = load_backbone(checkpoint, cfg.model.arch, cfg.model.width)
        console = Console()
        console.print(f"probe: {weights['source']} on {train.name} ({len(train)} images), "
                      f"evaluated on {val.name} ({len(val)})")
        write_config(cfg, run_dir / "config.yaml")
        backbone = backbone.to(dev)
        head, facts = train_probe(cfg, backbone, train, run_dir, dev, console)
        result = probe_scores(backbone, head, val, cfg.eval.resize, dev)
        write_atomic(run_dir / "classifier.pt", lambda fh: torch.save(head.state_dict(), fh))
        path = write_report(run_dir, "linear probe", result, val.classes,
                            fingerprint(cfg, weights, train, val), console, extra=facts)
        console.print(f"backbone unchanged after training: yes; results in {path}")
