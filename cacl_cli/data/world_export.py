"""Writing the built-in world to disk: mp4 clips, and a labelled set in PASCAL VOC's layout.

The clips feed ``extract-pairs`` like any video collection; the labelled set feeds ``probe`` and
``finetune`` like VOC 2012 (JPEGImages, SegmentationClass palette PNGs, ImageSets lists). Labelled
images come from clip indices far from the training clips', so they are never trained on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cacl_cli.data.world import World, class_names
from cacl_cli.files import atomic_path, write_atomic, write_text_atomic

LABELLED_OFFSET = {"train": 1_000_000, "val": 2_000_000}


def voc_palette() -> list[int]:
    """VOC's colour map: class c's colour spreads c's bits over the high bits of R, G, B."""
    palette = []
    for c in range(256):
        r = g = b = 0
        for shift in range(8):
            r |= ((c >> 0) & 1) << (7 - shift)
            g |= ((c >> 1) & 1) << (7 - shift)
            b |= ((c >> 2) & 1) << (7 - shift)
            c >>= 3
        palette += [r, g, b]
    return palette


def labelled_frame(world: World, split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``i`` of a labelled split: one frame of its own clip."""
    index = LABELLED_OFFSET[split] + i
    t = int(np.random.default_rng([world.cfg.seed, index]).integers(world.cfg.frames))
    return world.clip(index).frame(t)


def export_labelled(world: World, root: Path, counts: dict[str, int]) -> Path:
    """Write ``VOC2012/`` under ``root`` with ``counts[split]`` images per split; returns it."""
    voc = root / "VOC2012"
    palette = voc_palette()
    for split, count in counts.items():
        ids = [f"world_{split}_{i:06d}" for i in range(count)]
        for name, i in zip(ids, range(count)):
            image, labels = labelled_frame(world, split, i)
            jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
            write_atomic(voc / "JPEGImages" / f"{name}.jpg", lambda fh: fh.write(jpeg))
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(palette)
            with atomic_path(voc / "SegmentationClass" / f"{name}.png") as tmp:
                mask.save(tmp, format="PNG")
        write_text_atomic(
            voc / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(n + "\n" for n in ids)
        )
    write_text_atomic(
        voc / "classes.txt", "".join(n + "\n" for n in class_names(world.cfg.classes))
    )
    return voc


def export_videos(world: World, root: Path, count: int, fps: float = 25.0) -> list[Path]:
    """Write training clips 0 .. count-1 as ``root/world/clip_NNNNNN.mp4``."""
    paths = []
    for i in range(count):
        path = root / "world" / f"clip_{i:06d}.mp4"
        clip = world.clip(i)
        with atomic_path(path) as tmp:
            # OpenCV picks the container from the extension, so write to a .mp4 name first.
            staging = Path(str(tmp) + ".mp4")
            size = (world.cfg.size, world.cfg.size)
            writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            for t in range(world.cfg.frames):
                writer.write(cv2.cvtColor(clip.frame(t)[0], cv2.COLOR_RGB2BGR))
            writer.release()
            staging.replace(tmp)
        paths.append(path)
    return paths
