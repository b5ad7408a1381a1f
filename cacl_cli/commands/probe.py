"""``cacl probe``: the linear protocol on a frozen backbone."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cacl_cli.commands import options
from cacl_cli.errors import report_errors


def probe_command(
    checkpoint: Optional[Path] = options.Checkpoint,
    random_init: bool = options.RandomInit,
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

        from cacl_cli.evaluation import start_eval_run
        from cacl_cli.files import write_atomic
        from cacl_cli.probe import probe_scores, train_probe
        from cacl_cli.segeval import fingerprint, write_report
        from cacl_cli.weights import load_backbone

        run = start_eval_run(
            "probe-world", preset, overrides or [], checkpoint, random_init, data, out, device
        )
        cfg, train, val = run.cfg, run.train, run.val
        backbone, weights = load_backbone(checkpoint, cfg.model.arch, cfg.model.width)
        console = Console()
        console.print(
            f"probe: {weights['source']} on {train.name} ({len(train)} images), "
            f"evaluated on {val.name} ({len(val)})"
        )
        backbone = backbone.to(run.device)
        head, facts = train_probe(cfg, backbone, train, run.run_dir, run.device, console)
        result = probe_scores(backbone, head, val, cfg.eval.resize, run.device)
        write_atomic(run.run_dir / "classifier.pt", lambda fh: torch.save(head.state_dict(), fh))
        path = write_report(
            run.run_dir,
            "linear probe",
            result,
            val.classes,
            fingerprint(cfg, weights, train, val),
            console,
            extra=facts,
        )
        console.print(f"backbone unchanged after training: yes; results in {path}")
