"""``cacl extract-pairs``: a video collection -> frame pairs + manifest, in parallel, resumable."""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path
from typing import List, Optional

import typer

from cacl_cli.errors import CaclError, report_errors


def extract_pairs_command(
    video_dir: Path = typer.Argument(
        ..., help="Folder of videos, e.g. Kinetics' <class>/<clip>.mp4."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Pairs folder (default: pairs/)."),
    stride: int = typer.Option(8, "--stride", min=1, help="Frames between the two of a pair."),
    pairs_per_clip: int = typer.Option(1, "--pairs-per-clip", min=1, help="Pairs drawn per clip."),
    frames_per_clip: int = typer.Option(
        2,
        "--frames-per-clip",
        min=2,
        help="Frames per draw, each STRIDE apart (>2 lets training "
        "pick a different pair each epoch).",
    ),
    short_side: int = typer.Option(256, "--short-side", min=0, help="Resize to this short side."),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG quality."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per core)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the start frames (per clip id)."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds allowed per clip."),
    extensions: Optional[List[str]] = typer.Option(
        None, "--ext", help="Video suffixes to take (repeatable; default: the common ones)."
    ),
    seek: bool = typer.Option(
        False,
        "--seek",
        help="Seek to keyframes instead of decoding from "
        "the start: faster, but wrong frames on open-GOP files.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo clips already extracted."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any file was skipped."),
) -> None:
    """Extract frame pairs from every video under VIDEO_DIR into JPEGs plus manifest.jsonl.

    A rerun skips clips already done. Bad files (empty, corrupt, truncated, too short, not a
    video) are listed with their reason in skipped.tsv; the run goes on.
    """
    with report_errors():
        from multiprocessing import get_context

        from rich.console import Console
        from rich.table import Table

        from cacl_cli.data import extract
        from cacl_cli.progress import progress_bar
        from cacl_cli.files import remove_stale_temps

        if not video_dir.is_dir():
            raise CaclError(f"{video_dir} is not a folder of videos")
        out = out or Path("pairs")
        suffixes = (
            tuple(e if e.startswith(".") else f".{e}" for e in extensions)
            if extensions
            else extract.DEFAULT_EXTENSIONS
        )
        settings = extract.ExtractSettings(
            stride, pairs_per_clip, frames_per_clip, short_side, quality, seed, timeout, seek
        )
        videos = extract.find_videos(video_dir, tuple(s.lower() for s in suffixes))
        if not videos:
            raise CaclError(f"{video_dir} holds no videos ({' '.join(suffixes)})")
        out.mkdir(parents=True, exist_ok=True)
        if (out / extract.RECORDS).is_symlink():
            raise CaclError(f"{out / extract.RECORDS} is a link; remove it, it must be a folder")
        remove_stale_temps(out, recursive=True)  # left by a killed run
        if overwrite:
            shutil.rmtree(out / extract.RECORDS, ignore_errors=True)
        finished = extract.done_clips(out)
        todo = [v for v in videos if extract.clip_id(video_dir, v) not in finished]
        console = Console()
        console.print(
            f"{len(videos)} videos, {len(videos) - len(todo)} already done, {len(todo)} to extract"
        )
        failed = []
        job = partial(_safe_process, video_dir, out, settings)
        with progress_bar(console, "extract") as progress:
            task = progress.add_task("extract", total=len(todo), status="")
            processes = workers or os.cpu_count() or 1
            context = get_context("forkserver")  # no fork of a parent that may hold codec threads
            with context.Pool(processes, initializer=extract.worker_init) as pool:
                for record in pool.imap_unordered(job, todo):
                    if record["status"] == "failed":
                        failed.append(record)
                    speed = progress.tasks[0].speed
                    status = f"{speed:.1f} clips/s" if speed else ""
                    progress.update(task, advance=1, status=status)
        done, skipped = extract.write_manifest(out, settings)
        table = Table("done", "skipped", "failed", title=f"{out / extract.MANIFEST}")
        table.add_row(str(done), str(skipped), str(len(failed)))
        console.print(table)
        if skipped:
            console.print(f"skipped files and reasons: {out / extract.REPORT}")
        for record in failed:
            console.print(
                f"[red]failed[/] {record['source']}: {record['reason']} (retried on rerun)"
            )
        if strict and (skipped or failed):
            raise SystemExit(1)


def _safe_process(root: Path, out: Path, settings, path: Path) -> dict:
    """Run one clip; an unexpected error marks it failed (no record, so a rerun retries it)."""
    from cacl_cli.data.extract import process_clip

    try:
        return process_clip(root, path, out, settings)
    except Exception as err:  # noqa: BLE001 - reported per clip, the run goes on
        return {"status": "failed", "source": str(path), "reason": repr(err)[:200]}
