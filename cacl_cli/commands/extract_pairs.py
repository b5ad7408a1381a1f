"""``cacl extract-pairs``: a video collection -> frame pairs + manifest, in parallel, resumable."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.commands import options
from cacl_cli.errors import CaclError, report_errors
from cacl_cli.outputs import claimed

VideoDirArgument = typer.Argument(..., help="Folder of videos, e.g. Kinetics' <class>/<clip>.mp4.")


def _key(key: str, *flags: str, help: str, **limits):
    return options.key_option("extract-pairs", key, *flags, help=help, **limits)


StrideOption = _key("extract.stride", "--stride", min=1, help="Frames between the two of a pair")
PairsPerClipOption = _key(
    "extract.pairs_per_clip", "--pairs-per-clip", min=1, help="Pairs drawn per clip"
)
FramesPerClipOption = _key(
    "extract.frames_per_clip",
    "--frames-per-clip",
    min=2,
    help="Frames per draw, each STRIDE apart (>2 lets training pick a different pair each epoch)",
)
ShortSideOption = _key(
    "extract.short_side", "--short-side", min=0, help="Resize to this short side (0: keep)"
)
QualityOption = _key("extract.quality", "--quality", min=1, max=100, help="JPEG quality")
WorkersOption = _key(
    "extract.workers", "--workers", min=0, help="Processes (0: one per core this process may use)"
)
SeedOption = _key("extract.seed", "--seed", help="Seeds the start frames (per clip id)")
TimeoutOption = _key("extract.timeout", "--timeout", min=1.0, help="Seconds allowed per clip")
ExtensionsOption = typer.Option(
    None, "--ext", help="Video suffixes to take (repeatable; default: the common ones)."
)
SeekOption = typer.Option(
    None,
    "--seek/--no-seek",
    help="Seek to keyframes instead of decoding from "
    "the start: faster, but wrong frames on open-GOP files.",
)
FormatOption = _key(
    "extract.format", "--format", help="folder (a JPEG per frame) or tar (WebDataset shards)"
)
ShardSizeOption = _key(
    "extract.shard_size", "--shard-size", min=0.01, help="Tar format: a new shard past this many MB"
)
ShardOption = typer.Option(
    None,
    "--shard",
    help="K/N: extract only shard K (0 .. N-1) of N, split by a hash of each video's path; "
    "'slurm' takes K and N from SLURM_ARRAY_TASK_ID/_MIN/_COUNT. Shards may share one --out.",
)
MergeOption = typer.Option(
    False, "--merge", help="Only merge what the shards recorded into the manifest and index."
)
OverwriteOption = typer.Option(
    False, "--overwrite", help="Redo clips already extracted (needed to change the settings)."
)


def extract_pairs_command(
    video_dir: Path = VideoDirArgument,
    out: Optional[Path] = typer.Option(None, "--out", help="Pairs folder (default: pairs/)."),
    preset: Optional[str] = options.preset_option("extract-pairs"),
    overrides: Optional[List[str]] = options.set_option("extract-pairs"),
    stride: Optional[int] = StrideOption,
    pairs_per_clip: Optional[int] = PairsPerClipOption,
    frames_per_clip: Optional[int] = FramesPerClipOption,
    short_side: Optional[int] = ShortSideOption,
    quality: Optional[int] = QualityOption,
    workers: Optional[int] = WorkersOption,
    seed: Optional[int] = SeedOption,
    timeout: Optional[float] = TimeoutOption,
    extensions: Optional[List[str]] = ExtensionsOption,
    seek: Optional[bool] = SeekOption,
    data_format: Optional[str] = FormatOption,
    shard_size: Optional[float] = ShardSizeOption,
    shard: Optional[str] = ShardOption,
    merge_only: bool = MergeOption,
    overwrite: bool = OverwriteOption,
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any file was skipped."),
) -> None:
    """Extract frame pairs from every video under VIDEO_DIR into JPEGs (or tar shards) plus
    manifest.jsonl and its index.

    The settings are the preset's `extract` section (default preset extract-kinetics); each flag
    sets one of its keys. A rerun skips clips already done. Bad files (empty, corrupt, truncated,
    too short, not a video) are listed with their reason in skipped.tsv; the run goes on. Clips
    that failed for the machine's sake (disk full) are named, retried by a rerun, and make the
    exit code 1. With --shard K/N, N processes or machines split the collection and may write
    into one --out at once; the last to finish leaves the whole manifest (--merge redoes it).

    Example: cacl extract-pairs kinetics/ --out kinetics-pairs --stride 8
    """
    with report_errors():
        flags = {"stride": stride, "pairs_per_clip": pairs_per_clip, "seek": seek, "seed": seed}
        flags |= {"frames_per_clip": frames_per_clip, "short_side": short_side, "quality": quality}
        flags |= {"workers": workers, "timeout": timeout, "extensions": extensions}
        flags |= {"format": data_format, "shard_size": shard_size}
        values = {f"extract.{k}": v for k, v in flags.items()}
        cfg = options.settings("extract-pairs", preset, overrides, values)
        part = parse_shard(shard, overwrite)
        from rich.console import Console

        from cacl_cli.data.extract import extract_folder, merge_folder, print_summary

        console, out = Console(), out or Path("pairs")
        lock = _lock_part(part)
        with claimed(out, "extract-pairs", continues=True, part=lock, inputs=[video_dir]):
            if merge_only:
                summary = merge_folder(video_dir, out, cfg.extract)
            else:
                summary = extract_folder(video_dir, out, cfg.extract, overwrite, console, part)
        print_summary(out, summary, console)
        if summary["failed"] or (strict and summary["skipped"]):
            raise SystemExit(1)  # failed clips (disk full ...) are retried by the same command


def parse_shard(text: Optional[str], overwrite: bool) -> tuple[int, int]:
    """``--shard K/N`` (or ``slurm``) -> (K, N); (0, 1) without it."""
    if text is None:
        return 0, 1
    if text == "slurm":
        task, first, count = (
            _slurm(name, default)
            for name, default in (
                ("SLURM_ARRAY_TASK_ID", None),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_COUNT", None),
            )
        )
        text = f"{task - first}/{count}"
    match = re.fullmatch(r"(\d{1,9})/(\d{1,9})", text.strip())  # a billion shards at most
    if not match or not int(match[1]) < int(match[2]):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise CaclError(f"--shard {shown}: give K/N with 0 <= K < N, e.g. --shard 3/16")
    if overwrite and int(match[2]) > 1:
        raise CaclError("--overwrite redoes the whole folder; run it without --shard")
    return int(match[1]), int(match[2])


def _slurm(name: str, default: str | None) -> int:
    """A SLURM array variable, checked as an option is: a whole number of at most 9 digits."""
    value = os.environ.get(name, default)
    if value is None:
        raise CaclError(
            f"--shard slurm: {name} is not set; run it in a SLURM job array "
            "(sbatch --array=0-N) or pass --shard K/N"
        )
    if not re.fullmatch(r"\d{1,9}", value.strip()):
        raise CaclError(
            f"--shard slurm: {name} is {value[:20]!r}, not a whole number; run it in "
            "a SLURM job array or pass --shard K/N"
        )
    return int(value)


def _lock_part(shard: tuple[int, int]) -> str:
    return f"shard-{shard[0]}-of-{shard[1]}" if shard[1] > 1 else ""
