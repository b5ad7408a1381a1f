"""extract-pairs against the naive baseline, on the same real clips, side by side.

Naive baseline: one process reads each clip frame by frame with OpenCV (``read()``, colour
conversion included), counting its frames, then again up to the last frame it needs, and writes
those frames resized. Ours: ``cacl extract-pairs`` itself (a fresh process, its start included)
with 1 and 2 workers, in its default exact mode and with ``--seek``. The baseline writes the frames
the command chose (read from the command's own manifest.jsonl) with the same resize and JPEG
quality. Reports clips/s (median of --repeats) and the speed-up over the naive baseline.
Usage: python bench/extract_speed.py [--copies 6] [--repeats 3]   (needs ../shared/data/videos)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from command import cacl  # bench/ is this script's own folder

SHARED_VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"
SHORT_SIDE, QUALITY = 256, 90  # extract-pairs' defaults (presets/defaults.yaml)


def chosen_frames(pairs: Path) -> dict[str, list[int]]:
    """Source (relative to the videos folder) -> the frame numbers the command wrote."""
    lines = (pairs / "manifest.jsonl").read_text().splitlines()[1:]
    records = [json.loads(line) for line in lines]
    return {r["source"]: sorted({t for draw in r["indices"] for t in draw}) for r in records}


def naive(root: Path, wanted: dict[str, list[int]], out: Path) -> None:
    for number, (source, frames) in enumerate(wanted.items()):
        cap = cv2.VideoCapture(str(root / source))
        while cap.read()[0]:  # count by reading: the baseline trusts nothing either
            pass
        cap.release()
        cap, t = cv2.VideoCapture(str(root / source)), 0
        while t <= frames[-1]:
            ok, frame = cap.read()
            if t in frames:
                h, w = frame.shape[:2]
                scale = SHORT_SIDE / min(h, w)
                size = (round(w * scale), round(h * scale))
                small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                name = str(out / f"{number}_{t:06d}.jpg")
                cv2.imwrite(name, small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
            t += 1
        cap.release()


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
        settings = ["--short-side", SHORT_SIDE, "--quality", QUALITY]
        cacl("extract-pairs", root, "--out", Path(tmp) / "chosen", *settings)
        wanted = chosen_frames(Path(tmp) / "chosen")
        rows = [("naive OpenCV, 1 process", timed(lambda o: naive(root, wanted, o), args.repeats))]
        for workers in (1, 2):
            for mode in ("exact", "--seek"):
                flags = [*settings, "--workers", workers] + ([mode] if mode != "exact" else [])
                run = lambda o: cacl("extract-pairs", root, "--out", o, *flags)  # noqa: E731
                rows.append((f"ours {mode}, {workers} worker(s)", timed(run, args.repeats)))
    n = len(wanted)
    print(
        f"{n} clips ({args.copies} copies of 3 real 1280x720 H.264 clips), the command's "
        f"default pairs, short side {SHORT_SIDE}; median of {args.repeats} runs"
    )
    base = n / rows[0][1]
    for name, seconds in rows:
        print(f"  {name:28s} {n / seconds:6.2f} clips/s   x{n / seconds / base:4.2f}")


if __name__ == "__main__":
    main()
