"""Writing the built-in world to disk: mp4 clips, a labelled set in PASCAL VOC's layout, and
held-out clips in DAVIS-2017's.

The clips feed ``extract-pairs`` like any video collection; the labelled set feeds ``probe`` and
``finetune`` like VOC 2012 (JPEGImages, SegmentationClass palette PNGs, ImageSets lists); the
DAVIS-layout clips feed ``propagate``, with one mask id per object instance. Labelled images and
DAVIS clips come from clip indices far from the training clips', so they are never trained on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cacl_cli.data.world import World, class_names
from cacl_cli.files import atomic_path, write_atomic, write_text_atomic

LABELLED_OFFSET = {"train": 1_000_000, "val": 2_000_000}
DAVIS_OFFSET = 3_000_000


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
            _write_palette_png(voc / "SegmentationClass" / f"{name}.png", labels, palette)
        write_text_atomic(
            voc / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(n + "\n" for n in ids)
        )
    write_text_atomic(
        voc / "classes.txt", "".join(n + "\n" for n in class_names(world.cfg.classes))
    )
    return voc


def _write_palette_png(path: Path, labels: np.ndarray, palette: list[int]) -> None:
    mask = Image.fromarray(labels, mode="P")
    mask.putpalette(palette)
    with atomic_path(path) as tmp:
        mask.save(tmp, format="PNG")


def export_davis(world: World, root: Path, count: int) -> Path:
    """Write ``count`` held-out clips as DAVIS-2017 sequences under ``root`` (JPEGImages/480p
    PNG frames, Annotations/480p instance masks for every frame, ImageSets/2017/val.txt);
    returns ``root``. ``cacl propagate`` reads it like DAVIS, with known truth at every frame."""
    palette, names = voc_palette(), [f"world_{i:04d}" for i in range(count)]
    for i, name in enumerate(names):
        clip = world.clip(DAVIS_OFFSET + i)
        for t in range(world.cfg.frames):
            frame = f"480p/{name}/{t:05d}.png"
            image, instances = clip.frame_with_instances(t)
            rgb = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            png = cv2.imencode(".png", rgb)[1].tobytes()  # lossless: no JPEG ringing at 80 px
            write_atomic(root / "JPEGImages" / frame, lambda fh: fh.write(png))
            _write_palette_png(root / "Annotations" / frame, instances, palette)
    write_text_atomic(root / "ImageSets" / "2017" / "val.txt", "".join(n + "\n" for n in names))
    return root


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
