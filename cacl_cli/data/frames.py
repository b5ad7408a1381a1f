"""Reading chosen frames from a frame folder or a video file.

Folders are sorted naturally (``frame_2.jpg`` before ``frame_10.jpg``). Videos are read with decord
when it can open them and with OpenCV otherwise (decord refuses some containers); OpenCV decodes
sequentially up to the last wanted frame, which is exact where seeking is not.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from cacl_cli.errors import CaclError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what FFmpeg inside decord/OpenCV prints on bad files; we report those ourselves."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key
    )
    if not files:
        raise CaclError(f"{folder} holds no frames ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; an unreadable one is a one-line error."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CaclError(f"{path} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _video_frames_decord(path: Path, indices: list[int]) -> list[np.ndarray] | None:
    try:
        import decord
    except ImportError:
        return None
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        count = len(reader)
        if max(indices) >= count:
            return None  # the container may undercount; let the sequential decoder decide
        batch = reader.get_batch(indices).asnumpy()
        del reader
        return [batch[i] for i in range(len(indices))]
    except Exception:  # decord raises its own error types for files it cannot open
        return None


def _video_frames_opencv(path: Path, indices: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CaclError(f"{path} is not a video OpenCV or decord can open")
    wanted, found, t = set(indices), {}, 0
    try:
        while t <= max(indices):
            ok, frame = cap.read()
            if not ok:
                break
            if t in wanted:
                found[t] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            t += 1
    finally:
        cap.release()
    if len(found) < len(wanted):
        raise CaclError(
            f"{path} has only {t} frames; frame {max(indices)} was asked for "
            "(lower --frame or --stride)"
        )
    return [found[i] for i in indices]


def read_frames(source: Path, indices: list[int]) -> list[np.ndarray]:
    """Frames ``indices`` of a frame folder or video, as (H, W, 3) uint8 RGB."""
    if source.is_dir():
        files = frame_files(source)
        if max(indices) >= len(files):
            raise CaclError(
                f"{source} has {len(files)} frames; frame {max(indices)} was asked "
                "for (lower --frame or --stride)"
            )
        return [read_rgb(files[i]) for i in indices]
    if not source.exists():
        raise CaclError(f"{source} does not exist; give a frame folder or a video file")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        raise CaclError(f"{source} is a single image; give the folder of frames it belongs to")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise CaclError(f"{source} is not a video ({' '.join(VIDEO_SUFFIXES)}) or a frame folder")
    with native_stderr_silenced():
        frames = _video_frames_decord(source, indices)
        return frames if frames is not None else _video_frames_opencv(source, indices)
