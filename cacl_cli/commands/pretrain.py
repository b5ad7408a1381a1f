"""``cacl pretrain``: train CACL (or an ablation) from a preset."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.config import Config, resolve, resumed_config
from cacl_cli.errors import CaclError, report_errors
from cacl_cli.files import present, read_text
from cacl_cli.outputs import claimed
from cacl_cli.run_folder import RunFolder


def pretrain_command(
    preset: Optional[str] = options.preset_option("pretrain"),
    overrides: Optional[List[str]] = options.set_option("pretrain"),
    out: Optional[Path] = options.Out,
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="A pairs folder (cacl extract-pairs) or an image folder; default: the built-in world.",
    ),
    init: Optional[Path] = typer.Option(
        None,
        "--init",
        help="Start the backbone from a MoCo-v2 checkpoint or a torchvision ResNet state dict "
        "(sets model.init).",
    ),
    device: Optional[str] = options.Device,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its newest good checkpoint."
    ),
) -> None:
    """Pretrain a backbone with CACL on frame pairs (default: the built-in world).

    Writes config.yaml, metrics.jsonl, metrics.csv and checkpoints/ into --out. With --resume
    the same command starts the run or continues it, so a requeued job needs no change.

    If a run collapses (a */spread near 0, global/top1_batch at 1/batch), try a lower optim.lr.

    Example: cacl pretrain --preset tiny-world --out runs/mine --resume
    """
    with report_errors():
        cfg = _config(preset, overrides or [], out, resume, data, init)
        folder, pairs = options.out_folder(out, "pretrain", cfg), cfg.data.path
        with claimed(folder, "pretrain", resume, inputs=[pairs and Path(pairs)]) as run_dir:
            from cacl_cli.device import resolve_device
            from cacl_cli.training import pretrain

            pretrain(cfg, run_dir, resolve_device(device or cfg.run.device), resume=resume)


def _data_checked(
    cfg: Config, preset: Optional[str], data: Optional[Path], overrides: list[str]
) -> Config:
    """Say which preset trains on --data when none was named; refuse a data.path that is not
    here, saying where it came from (the preset, or --set)."""
    if data is not None and preset is None:
        typer.echo(
            f"--data {data}: training with preset {cfg.preset.name} (model.arch "
            f"{cfg.model.arch}, model.width {cfg.model.width}, data.size {cfg.data.size});"
            " give --preset to choose another"
        )
    path = cfg.data.path
    if data is None and path and not Path(path).is_dir():
        set_here = any(o.partition("=")[0].strip() == "data.path" for o in overrides)
        source = "--set data.path" if set_here else f"preset {cfg.preset.name}'s data.path"
        raise CaclError(
            f"{source} names '{path}' for the pairs, which is not a folder here; make it with "
            f"`cacl extract-pairs VIDEOS --out {path}`, give --data "
            "PAIRS, or --set data.path=null for the built-in world"
        )
    return cfg


def _config(
    preset: Optional[str],
    overrides: list[str],
    out: Optional[Path],
    resume: bool,
    data: Optional[Path],
    init: Optional[Path],
) -> Config:
    """A new run's config from the preset (and --data, --init). A resumed run keeps its own; the
    same options again (a requeued job) are accepted, and only ``SAFE_ON_RESUME`` keys may
    differ from the saved ones."""
    saved = RunFolder(out).config if out else None
    if resume and not out:
        raise CaclError("--resume needs --out RUN_FOLDER, the run to continue")
    paths = {"data.path": data and str(data), "model.init": init and str(init)}
    if not (resume and present(saved)):
        cfg = options.settings("pretrain", preset, overrides, paths)
        return _data_checked(cfg, preset, data, overrides)
    if not read_text(saved, "the run's config.yaml").strip():
        raise CaclError(
            f"{saved} is empty (damaged?); restore the run's config, or move the run "
            "aside to start it over"
        )
    kept = resolve(str(saved))
    if preset or overrides or data or init:
        # Without --preset, --set changes the saved config itself: only its keys can differ.
        asked = options.settings("pretrain", preset or str(saved), overrides, paths, check=False)
        kept = resumed_config(kept, asked, saved)
    return options.checked(kept, "pretrain")
