"""extract-pairs against the naive baseline, on the same real clips, side by side.

Naive baseline: one process reads each clip frame by frame with OpenCV (``read()``, colour
conversion included) up to the last frame it needs. Ours: ``cacl extract-pairs``' own code with 1
and 2 worker processes, in its default exact mode and with ``--seek``. Every variant writes the same
pairs (same seeded frame indices, same JPEG settings). Reports clips/s (median of --repeats) and
the speed-up over the naive baseline.
Usage: python bench/extract_speed.py [--copies 6] [--repeats 3]   (needs ../shared/data/videos)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import cv2

from cacl_cli.api import (
    ExtractSection,
    assign_ids,
    choose_starts,
    clip_id,
    find_videos,
    process_clip,
    resize_short_side,
    section,
    worker_init,
)

SHARED_VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"


def naive(root: Path, videos: list[Path], out: Path, settings: ExtractSection) -> None:
    for path in videos:
        cid = clip_id(root, path)
        cap = cv2.VideoCapture(str(path))
        count = 0
        while True:  # count by reading: the baseline trusts nothing either
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
        cap.release()
        wanted = [
            s + k * settings.stride
            for s in choose_starts(count, settings, cid)
            for k in range(settings.frames_per_clip)
        ]
        cap, t = cv2.VideoCapture(str(path)), 0
        while t <= max(wanted):
            ok, frame = cap.read()
            if t in wanted:
                small = resize_short_side(frame, settings.short_side)
                cv2.imwrite(
                    str(out / f"{cid}_{t:06d}.jpg"),
                    small,
                    [cv2.IMWRITE_JPEG_QUALITY, settings.quality],
                )
            t += 1
        cap.release()


def ours(root: Path, videos: list[Path], out: Path, settings: ExtractSection, workers: int) -> None:
    ids = assign_ids(root, videos, {})
    clips = [(path, ids[path], out, settings) for path in videos]
    with get_context("forkserver").Pool(workers, initializer=worker_init) as pool:
        pool.starmap(partial(process_clip, root), clips)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            fn(Path(tmp))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not SHARED_VIDEOS.is_dir():
        raise SystemExit(f"needs the real clips in {SHARED_VIDEOS}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "videos"
        root.mkdir()
        for k in range(args.copies):
            for name in ("01_dog.mp4", "04_coffee.mp4", "cockatoo.mp4"):
                shutil.copy(SHARED_VIDEOS / name, root / f"{k}_{name}")
        videos = find_videos(root)
        exact = section("extract")
        seek = section("extract", seek=True)
        rows = [
            (
                "naive OpenCV, 1 process",
                timed(lambda o: naive(root, videos, o, exact), args.repeats),
            )
        ]
        for workers in (1, 2):
            rows.append(
                (
                    f"ours exact, {workers} worker(s)",
                    timed(lambda o: ours(root, videos, o, exact, workers), args.repeats),
                )
            )
            rows.append(
                (
                    f"ours --seek, {workers} worker(s)",
                    timed(lambda o: ours(root, videos, o, seek, workers), args.repeats),
                )
            )
    n = len(videos)
    print(
        f"{n} clips (1280x720 H.264, 280-289 frames; {args.copies} copies of 3 real clips), "
        f"one pair each at stride 8, short side 256; median of {args.repeats} runs"
    )
    base = n / rows[0][1]
    for name, seconds in rows:
        print(f"  {name:28s} {n / seconds:6.2f} clips/s   x{n / seconds / base:4.2f}")


if __name__ == "__main__":
    main()
