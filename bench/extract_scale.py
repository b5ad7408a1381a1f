"""extract-pairs on a few thousand clips: shards at once, the merge, a resume, a rerun, the index.

Exports ``--clips`` short clips of the built-in world (``cacl world``), then for each format:
two ``--shard K/2`` processes at once (one worker each), killed when about half is done and
rerun; then a rerun with nothing left, and one with ``--add`` new clips. Reports wall times,
files and bytes written per clip, and the index load time; the figures ``docs/scale-out.md``
extrapolates to Kinetics-400 from.
Usage: python bench/extract_scale.py [--clips 3000] [--out /tmp/extract-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cacl_cli.api import PairsFolder, usable_cores

ARGS = ["--workers", "1", "--short-side", "64", "--stride", "4"]


def cacl(*args: object) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cacl_cli", *map(str, args)]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
    )


def timed(*procs: subprocess.Popen) -> float:
    start = time.perf_counter()
    for proc in procs:
        output = proc.communicate()[0]
        if proc.returncode:
            raise SystemExit(f"failed ({proc.returncode}): {output[-500:]}")
    return time.perf_counter() - start


def shards_at_once(videos: Path, out: Path, form: str, kill_after: int | None) -> float:
    """Both shards at once; with ``kill_after``, killed once that many records exist."""
    start = time.perf_counter()
    procs = [
        cacl("extract-pairs", videos, "--out", out, "--shard", f"{k}/2", "--format", form, *ARGS)
        for k in (0, 1)
    ]
    if kill_after is None:
        timed(*procs)
        return time.perf_counter() - start
    while len(list((out / ".records").glob("*.json"))) < kill_after if out.is_dir() else True:
        time.sleep(0.2)
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.perf_counter() - start


def footprint(out: Path) -> tuple[int, int]:
    """Files, and the bytes they take on disk (whole blocks, as du counts)."""
    files = [p for p in out.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_blocks * 512 for p in files)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--add", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/extract-scale"))
    args = parser.parse_args()
    world = args.out / "world"
    if not (world / "videos").is_dir():
        made = timed(
            cacl(
                "world",
                "--out",
                world,
                "--clips",
                args.clips + args.add,
                "--train-images",
                0,
                "--val-images",
                0,
            )
        )
        print(f"world: {args.clips + args.add} clips exported in {made:.1f} s")
    videos, extra = args.out / "videos", args.out / "extra"
    if not videos.is_dir():  # the last --add clips come later, as new videos
        clips = sorted((world / "videos").rglob("*.mp4"))
        for path in clips:
            target = (extra if path in clips[args.clips :] else videos) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    results = {"clips": args.clips, "cores": usable_cores()}
    for form in ("folder", "tar"):
        out = args.out / f"pairs-{form}"
        shutil.rmtree(out, ignore_errors=True)
        first = shards_at_once(videos, out, form, kill_after=args.clips // 2)
        records = len(list((out / ".records").glob("*.json")))
        resumed = shards_at_once(videos, out, form, kill_after=None)
        nothing = timed(cacl("extract-pairs", videos, "--out", out, "--format", form, *ARGS))
        for path in extra.iterdir():
            shutil.copy(path, videos / path.name)
        more = timed(cacl("extract-pairs", videos, "--out", out, "--format", form, *ARGS))
        for path in extra.iterdir():
            (videos / path.name).unlink()
        start = time.perf_counter()
        folder = PairsFolder(out)
        load = time.perf_counter() - start
        files, size = footprint(out)
        results[form] = {
            "killed_after_s": round(first, 1),
            "records_at_kill": records,
            "resume_s": round(resumed, 1),
            "clips_per_s": round(args.clips / (first + resumed), 2),
            "rerun_nothing_left_s": round(nothing, 2),
            f"rerun_{args.add}_new_s": round(more, 2),
            "index_load_s": round(load, 4),
            "draws": len(folder),
            "files": files,
            "disk_bytes_per_clip": round(size / (args.clips + args.add)),
        }
        print(form, json.dumps(results[form]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
