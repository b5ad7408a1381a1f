"""Reading chosen frames from a frame folder or a video file.

A frame folder is a video whose frames are image files, sorted naturally (``frame_2.jpg`` before
``frame_10.jpg``): all of one size, with no subfolders beside them. Videos are decoded in order
from the first frame up to the last wanted one, which is exact where seeking is not (open-GOP
files): with decord when it can open them, with OpenCV otherwise (decord refuses some containers).
``extract-pairs`` and ``visualize`` share this one decoder, for frame folders and video files.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from cacl_cli.data.images import image_size, read_rgb
from cacl_cli.data.layouts import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from cacl_cli.errors import CaclError
from cacl_cli.files import open_regular

NOT_A_VIDEO = "not a video OpenCV or decord can open"


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


@contextlib.contextmanager
def decodable_name(path: Path) -> Iterator[str]:
    """A name decord and OpenCV can open for ``path``: the path itself, or, where the name is
    not UTF-8 text (which crashes them), the /proc/self/fd link of the file opened here. Only a
    regular file (``files.open_regular``): a FIFO would block the decoder forever. What is
    refused is a ValueError, the reason a bad video is skipped with."""
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(open_regular(path, "a video file"))
        except CaclError as err:
            raise ValueError(str(err)) from None
        name = str(path)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            name = f"/proc/self/fd/{opened.fileno()}"
        yield name


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key
    )
    if not files:
        raise CaclError(f"{folder} holds no frames ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read_folder(folder: Path, pick: Callable[[int], list[int]]) -> tuple:
    """(count, fps, wanted, frames) of a frame folder (fps unknown: 0). What makes it no video
    (subfolders beside the frames, frames of two sizes, a frame that does not decode) is a
    ValueError, the reason a bad video is skipped with."""
    if any(p.is_dir() for p in folder.iterdir()):
        raise ValueError("holds subfolders beside its frames; give each video a folder of its own")
    try:
        files = frame_files(folder)
        wanted = pick(len(files))
        sizes: dict[tuple[int, int], Path] = {}  # each size with its first frame
        for path in files:
            sizes.setdefault(image_size(path), path)
        if len(sizes) > 1:
            (first, one), (second, other) = list(sizes.items())[:2]
            raise ValueError(
                f"frames of {len(sizes)} sizes: {one.name} is {first[0]}x{first[1]}, "
                f"{other.name} {second[0]}x{second[1]}"
            )
        return len(files), 0.0, wanted, [read_rgb(files[i]) for i in wanted]
    except CaclError as err:  # an unreadable frame, named
        raise ValueError(str(err).replace(f"{folder}/", "", 1)) from None


def _read_decord(name: str, pick: Callable[[int], list[int]], seek: bool) -> tuple | None:
    """(count, fps, wanted, frames) read with decord, or None where decord cannot open the file
    or cannot reach the frames. A too-short clip raises ValueError from ``pick``.

    Without ``seek`` frames are decoded in order from the first one up to the last wanted: exact
    on every file. With ``seek`` decord jumps to the nearest keyframe: faster, but on files whose
    keyframes are not clean entry points (open GOPs) it returns damaged frames.
    """
    try:
        import decord
    except ImportError:
        return None
    try:
        reader = decord.VideoReader(name, num_threads=1)
        count, fps = len(reader), float(reader.get_avg_fps())
    except Exception:  # decord raises its own error types on files it cannot open
        return None
    wanted = pick(count)
    try:
        if seek:
            batch = reader.get_batch(wanted).asnumpy()
            return count, fps, wanted, [batch[i] for i in range(len(wanted))]
        found, targets = {}, set(wanted)
        for t in range(max(wanted) + 1):
            frame = reader.next()
            if t in targets:
                found[t] = frame.asnumpy()
        return count, fps, wanted, [found[i] for i in wanted]
    except Exception:  # the container promised frames the stream does not hold
        return None
    finally:
        del reader  # one reader per clip, released at once (decord's memory growth)


def _read_opencv(name: str, pick: Callable[[int], list[int]]) -> tuple:
    """(count, fps, wanted, frames) by sequential decoding: a first pass counts the frames
    (container counts can lie), a second retrieves only the wanted ones."""
    cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        raise ValueError(NOT_A_VIDEO)
    fps, count = float(cap.get(cv2.CAP_PROP_FPS) or 0.0), 0
    while cap.grab():
        count += 1
    cap.release()
    wanted = pick(count)
    cap, found, t = cv2.VideoCapture(name), {}, 0
    while t <= max(wanted) and cap.grab():
        if t in wanted:
            ok, frame = cap.retrieve()
            if not ok:
                raise ValueError(f"frame {t} could not be decoded")
            found[t] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        t += 1
    cap.release()
    if len(found) < len(set(wanted)):
        raise ValueError(f"decoding stopped at frame {t}, before frame {max(wanted)}")
    return count, fps, wanted, [found[i] for i in wanted]


def decode(
    path: Path, pick: Callable[[int], list[int]], seek: bool = False
) -> tuple[int, float, list[int], list[np.ndarray], str]:
    """(frame count, fps, wanted indices, their RGB frames, decoder name) of one video: a video
    file or a frame folder.

    ``pick`` gets the true frame count and returns the indices to keep (or raises ValueError).
    decord first, OpenCV where decord cannot open or reach the frames; both decode in order
    unless ``seek`` (decord only) is asked for.
    """
    if path.is_dir():
        return (*_read_folder(path, pick), "frames")
    with decodable_name(path) as name:
        got = _read_decord(name, pick, seek)
        if got is not None:
            return (*got, "decord")
        return (*_read_opencv(name, pick), "opencv")


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

    def pick(count: int) -> list[int]:
        if max(indices) >= count:
            raise ValueError(
                f"{source} has {count} frames; frame {max(indices)} was asked for "
                "(lower --frame or --stride)"
            )
        return list(indices)

    try:
        with native_stderr_silenced():
            return decode(source, pick)[3]
    except ValueError as err:
        message = str(err).splitlines()[0]
        if message == NOT_A_VIDEO:
            message = f"{source} is {message}"
        raise CaclError(message if str(source) in message else f"{source}: {message}") from None
