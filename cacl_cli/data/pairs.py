"""Training pairs from disk: an ``extract-pairs`` folder, or a plain image folder.

Both offer ``pair(rng, stride)`` like the built-in world. A pairs folder's frames are already
``stride`` apart (the extraction stride, recorded in the manifest); where a clip has more than two
frames per draw, each call picks two neighbouring ones, so epochs see different pairs. An image
folder (ImageNet layout or flat) pairs each image with itself: v+ is a second augmentation of it,
the paper's "only augmentation" setting and its ImageNet MoCo-v2 baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cacl_cli.data.extract import MANIFEST
from cacl_cli.data.frames import IMAGE_SUFFIXES
from cacl_cli.data.images import read_rgb
from cacl_cli.data.layouts import holds_videos
from cacl_cli.errors import CaclError


def _read(path: Path) -> np.ndarray:
    """A listed frame; one that is gone or damaged points back to the extraction."""
    try:
        return read_rgb(path)
    except CaclError:
        raise CaclError(
            f"{path} is missing or not a readable image; rerun cacl extract-pairs"
        ) from None


class PairsFolder:
    """The frames listed in ``manifest.jsonl``: one entry per draw of a clip."""

    def __init__(self, root: Path) -> None:
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise CaclError(
                f"{root} has no {MANIFEST}; make one with `cacl extract-pairs VIDEOS --out {root}`"
            )
        records = _read_manifest(manifest)
        self.root = root
        self.settings = records[0].get("settings", {}) if records else {}
        self.draws = [
            [_inside(root, name, manifest, n) for name in group]
            for n, record in enumerate(records[1:], start=2)
            for group in _frame_groups(record, manifest, n)
        ]
        if not self.draws:
            raise CaclError(
                f"{manifest} lists no clips; every video was skipped (see skipped.tsv beside it)"
            )

    def __len__(self) -> int:
        return len(self.draws)

    def pair(self, rng: np.random.Generator, stride: int) -> tuple[np.ndarray, np.ndarray]:
        frames = self.draws[int(rng.integers(len(self.draws)))]
        first = int(rng.integers(len(frames) - 1))
        return _read(frames[first]), _read(frames[first + 1])


def _read_manifest(manifest: Path) -> list[dict]:
    records = []
    for n, line in enumerate(manifest.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise CaclError(
                f"{manifest}, line {n}: not a JSON record; rerun `cacl extract-pairs` with "
                "--overwrite to rebuild the manifest"
            )
        records.append(record)
    return records


def _frame_groups(record: dict, manifest: Path, line: int) -> list[list[str]]:
    groups = record.get("frames")
    if not (isinstance(groups, list) and groups and all(
        isinstance(g, list) and len(g) >= 2 and all(isinstance(n, str) for n in g) for g in groups
    )):  # fmt: skip
        raise CaclError(
            f"{manifest}, line {line}: 'frames' must be lists of two or more frame file names"
        )
    return groups


def _inside(root: Path, name: str, manifest: Path, line: int) -> Path:
    """A frame path of the manifest, which must stay inside the pairs folder."""
    path = root / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise CaclError(
            f"{manifest}, line {line}: frame '{name}' lies outside {root}; a manifest names "
            "frames relative to its own folder"
        )
    return path


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
        image = _read(self.images[int(rng.integers(len(self.images)))])
        return image, image


def open_source(root: Path):
    """A pairs folder when it holds a manifest, else an image folder."""
    if root.is_file():
        raise CaclError(f"--data {root} is a file; give a pairs folder or a folder of images")
    if not root.is_dir():
        raise CaclError(f"--data {root}: no such folder")
    return PairsFolder(root) if (root / MANIFEST).is_file() else ImageFolder(root)
