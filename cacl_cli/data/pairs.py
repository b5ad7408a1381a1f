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
from pathlib import Path

import numpy as np

from cacl_cli.data.frames import IMAGE_SUFFIXES
from cacl_cli.data.images import decode_rgb, read_rgb
from cacl_cli.data.manifest import MANIFEST, MANIFEST_WHAT, load_index
from cacl_cli.data.layouts import holds_videos
from cacl_cli.errors import CaclError
from cacl_cli.files import open_regular, parse_json, present, read_bytes, regular_descriptor


def _read(path: Path, remedy: str = "rerun cacl extract-pairs") -> np.ndarray:
    """A frame; one that is gone or damaged is named, with what to do about it."""
    try:
        return read_rgb(path)
    except CaclError as err:
        raise CaclError(f"{err}; {remedy}") from None


class PairsFolder:
    """The draws of an extract-pairs folder, through its index (``pair_index.py``): frames are
    JPEG files or members of tar shards, read in place by offset."""

    def __init__(self, root: Path) -> None:
        manifest = root / MANIFEST
        if not present(manifest):
            raise CaclError(
                f"{root} has no {MANIFEST}; make one with `cacl extract-pairs VIDEOS --out {root}`"
            )
        self.root, self.index = root, load_index(root)
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
        name, offset, size = self.index.location(number)
        if size < 0:
            return _read(self.root / name)
        where, data = f"{self.root / name} at byte {offset}", self.frame_bytes(number)
        try:
            return decode_rgb(data, where)
        except CaclError as err:
            raise CaclError(f"{err}; rerun cacl extract-pairs") from None

    def frame_bytes(self, number: int) -> bytes:
        """A frame's encoded bytes, as stored (a JPEG file, or a tar member's data)."""
        name, offset, size = self.index.location(number)
        if size < 0:
            return read_bytes(self.root / name, "a frame extract-pairs wrote")
        if name not in self._shards:
            try:
                self._shards[name] = regular_descriptor(self.root / name, "a tar shard")
            except CaclError as err:
                raise CaclError(f"{err}; rerun cacl extract-pairs") from None
        data = os.pread(self._shards[name], size, offset)
        if len(data) != size:
            raise CaclError(f"{self.root / name} ends before byte {offset + size} (cut short?); "
                            "rerun cacl extract-pairs")  # fmt: skip
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
    """Every image under ``root`` (any depth); v and v+ are the same image."""

    def __init__(self, root: Path) -> None:
        self.images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
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
