"""Training pairs from disk: an ``extract-pairs`` folder, or a plain image folder.

Both offer ``pair(rng, stride)`` like the built-in world. A pairs folder holds JPEG files or
tar shards (``extract-pairs --format``), both read through its index; its frames are already
``stride`` apart (the extraction stride, recorded in the manifest); where a clip has more than two
frames per draw, each call picks two neighbouring ones, so epochs see different pairs. An image
folder (ImageNet layout or flat) pairs each image with itself: v+ is a second augmentation of it,
the paper's "only augmentation" setting and its ImageNet MoCo-v2 baseline.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from cacl_cli.data.images import decode_rgb, read_rgb
from cacl_cli.data.layouts import IMAGE_SUFFIXES, holds_videos
from cacl_cli.data.manifest import MANIFEST, MANIFEST_WHAT, load_index
from cacl_cli.errors import CaclError
from cacl_cli.files import (
    files_under,
    open_regular,
    parse_json,
    present,
    read_bytes,
    regular_descriptor,
)


def _read(path: Path, remedy: str) -> np.ndarray:
    """A frame; one that is gone or damaged is named, with what to do about it."""
    try:
        return read_rgb(path)
    except CaclError as err:
        raise CaclError(f"{err}; {remedy}") from None


class PairsFolder:
    """The draws of an extract-pairs folder, through its index (``pair_index.py``): frames are
    JPEG files or members of tar shards, read in place by offset."""

    def __init__(self, root: Path, rebuilding: bool = False) -> None:
        manifest = root / MANIFEST
        if not present(manifest):
            raise CaclError(
                f"{root} has no {MANIFEST}; make one with `cacl extract-pairs VIDEOS --out {root}`"
            )
        self.root, self.index = root, load_index(root, rebuilding)
        if not self.index.draws:
            raise CaclError(
                f"{manifest} lists no clips; every video was skipped (see skipped.tsv beside it)"
            )
        self.settings = _header(manifest).get("settings", {})
        self._shards: dict[str, int] = {}  # shard -> descriptor, opened once per process

    def __len__(self) -> int:
        return self.index.draws

    def pair(self, rng: np.random.Generator, stride: int) -> tuple[np.ndarray, np.ndarray]:
        first = self._first(rng)
        v, v_plus = self.frame(first), self.frame(first + 1)
        if v.shape != v_plus.shape:  # the pair shares one crop box
            name = self.root / self.index.location(first + 1)[0]
            raise CaclError(
                f"{name} is {v_plus.shape[1]}x{v_plus.shape[0]}, but the frame it is paired "
                f"with is {v.shape[1]}x{v.shape[0]}; rerun cacl extract-pairs"
            )
        return v, v_plus

    def files_drawn(self, rng: np.random.Generator) -> list[str]:
        """The files ``pair`` reads with this ``rng`` (to name them when a reader dies)."""
        first = self._first(rng)
        return [str(self.root / self.index.location(n)[0]) for n in (first, first + 1)]

    def _first(self, rng: np.random.Generator) -> int:
        frames = self.index.draw(int(rng.integers(self.index.draws)))
        return frames[int(rng.integers(len(frames) - 1))]

    def frame(self, number: int) -> np.ndarray:
        data = self.frame_bytes(number)
        try:
            return decode_rgb(data, self._where(number))
        except CaclError as err:
            raise CaclError(f"{err}; rerun cacl extract-pairs") from None

    def changed_sources(self, wanted: Callable[[str], bool]) -> list[str]:
        """The sources (``wanted`` ones) of the clips whose frames are no longer the bytes that
        were extracted (changed, cut short or gone): what an extraction's rerun redoes."""
        index, changed = self.index, []
        clip_draws = index.arrays["clip_draw_start"]
        for clip in range(len(index.clips)):
            first, end = (int(index.draw_start[clip_draws[c]]) for c in (clip, clip + 1))
            if wanted(index.sources[clip]) and not all(map(self._intact, range(first, end))):
                changed.append(index.sources[clip])
        return changed

    def _intact(self, number: int) -> bool:
        try:
            self.frame_bytes(number)
        except CaclError:
            return False
        return True

    def _where(self, number: int) -> str:
        name, offset, size = self.index.location(number)
        return str(self.root / name) + (f" at byte {offset}" if size >= 0 else "")

    def frame_bytes(self, number: int) -> bytes:
        """A frame's encoded bytes, as stored (a JPEG file, or a tar member's data), checked
        against the size and CRC-32 it was extracted with: a frame changed since is refused."""
        data = self._stored_bytes(number)
        expected = self.index.expected(number)
        if expected is not None and (len(data), zlib.crc32(data)) != expected:
            raise CaclError(
                f"{self._where(number)} (a frame of clip {self.index.clip_of(number)}) is not "
                "the frame extract-pairs wrote (its size or CRC-32 differs); rerun cacl "
                "extract-pairs on the videos into this folder: it checks every frame and redoes "
                "the clips whose frames changed"
            )
        return data

    def _stored_bytes(self, number: int) -> bytes:
        name, offset, size = self.index.location(number)
        if size < 0:
            try:
                return read_bytes(self.root / name, "a frame extract-pairs wrote")
            except CaclError as err:
                raise CaclError(f"{err}; rerun cacl extract-pairs") from None
        if name not in self._shards:
            try:
                self._shards[name] = regular_descriptor(self.root / name, "a tar shard")
            except CaclError as err:
                raise CaclError(f"{err}; rerun cacl extract-pairs") from None
        data = os.pread(self._shards[name], size, offset)
        if len(data) != size:
            raise CaclError(
                f"{self.root / name} ends before byte {offset + size} (cut short?); "
                "rerun cacl extract-pairs"
            )
        return data


def _header(manifest: Path) -> dict:
    """The manifest's first line, where the extraction's settings are (empty if it is not)."""
    with open_regular(manifest, MANIFEST_WHAT) as fh:
        try:
            header = parse_json(fh.readline(1 << 20), str(manifest))
        except ValueError:
            return {}
    return header if isinstance(header, dict) else {}


class ImageFolder:
    """Every image under ``root`` (any depth, through linked folders); v and v+ are the same
    image."""

    def __init__(self, root: Path) -> None:
        self.images = sorted(p for p in files_under(root) if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            videos = holds_videos(root)
            hint = f"; it holds videos: run `cacl extract-pairs {root}` first" if videos else ""
            raise CaclError(f"{root} holds neither a {MANIFEST} nor any images{hint}")

    def __len__(self) -> int:
        return len(self.images)

    def pair(self, rng: np.random.Generator, stride: int) -> tuple[np.ndarray, np.ndarray]:
        image = _read(self._chosen(rng), "replace or remove it")
        return image, image

    def files_drawn(self, rng: np.random.Generator) -> list[str]:
        return [str(self._chosen(rng))]

    def _chosen(self, rng: np.random.Generator) -> Path:
        return self.images[int(rng.integers(len(self.images)))]


def open_source(root: Path):
    """A pairs folder when it holds a manifest, else an image folder."""
    if root.is_file():
        raise CaclError(f"--data {root} is a file; give a pairs folder or a folder of images")
    if not root.is_dir():
        raise CaclError(f"--data {root}: no such folder")
    return PairsFolder(root) if present(root / MANIFEST) else ImageFolder(root)
