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

import cv2
import numpy as np

from cacl_cli.data.extract import MANIFEST
from cacl_cli.data.frames import IMAGE_SUFFIXES
from cacl_cli.errors import CaclError


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CaclError(f"{path} is missing or not a readable image; rerun cacl extract-pairs")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class PairsFolder:
    """The frames listed in ``manifest.jsonl``: one entry per draw of a clip."""

    def __init__(self, root: Path) -> None:
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise CaclError(
                f"{root} has no {MANIFEST}; make one with `cacl extract-pairs VIDEOS --out {root}`"
            )
        lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        self.root = root
        self.settings = lines[0].get("settings", {}) if lines else {}
        self.draws = [
            [root / name for name in group] for record in lines[1:] for group in record["frames"]
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


class ImageFolder:
    """Every image under ``root`` (any depth); v and v+ are the same image."""

    def __init__(self, root: Path) -> None:
        self.images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise CaclError(f"{root} holds neither a {MANIFEST} nor any images")

    def __len__(self) -> int:
        return len(self.images)

    def pair(self, rng: np.random.Generator, stride: int) -> tuple[np.ndarray, np.ndarray]:
        image = _read(self.images[int(rng.integers(len(self.images)))])
        return image, image


def open_source(root: Path):
    """A pairs folder when it holds a manifest, else an image folder."""
    if not root.is_dir():
        raise CaclError(f"--data {root}: no such folder")
    return PairsFolder(root) if (root / MANIFEST).is_file() else ImageFolder(root)
