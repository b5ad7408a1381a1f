"""Labelled segmentation sets for the probe and fine-tuning: VOC 2012, Cityscapes, the built-in
world, and a plain folder of images and masks.

Each set yields ``(image, mask)``: (H, W, 3) uint8 RGB and (H, W) uint8 class ids with 255 =
ignore. Layouts are checked when a set is opened, with one-line errors that name what is missing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cacl_cli.config import WorldSection
from cacl_cli.data.images import read_rgb
from cacl_cli.data.layouts import IMAGE_SUFFIXES, voc_base
from cacl_cli.data.world import World, class_names
from cacl_cli.data.world_export import labelled_frame
from cacl_cli.errors import CaclError
from cacl_cli.files import read_bytes, read_text

VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]
# Cityscapes labelIds of the 19 evaluated classes, in train-id order; every other id is ignored.
CITYSCAPES_EVAL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def read_index_png(path: Path) -> np.ndarray:
    """Class ids of a mask PNG. Palette PNGs are read as indices (OpenCV would return colours).
    Like frames, masks are read as bytes from regular files only (``files.read_bytes``)."""
    data = read_bytes(path, "a mask PNG")
    try:
        with Image.open(io.BytesIO(data)) as mask:
            if mask.mode not in ("P", "L", "I", "I;16"):
                raise CaclError(
                    f"{path}: mask mode {mask.mode} holds colours, not class ids; "
                    "save masks as palette or grayscale PNGs"
                )
            labels = np.array(mask)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise CaclError(f"{path} is not a readable mask PNG") from None
    if labels.size and (labels.min() < 0 or labels.max() > 255):  # 16- and 32-bit masks
        raise CaclError(
            f"{path}: label {int(labels.max() if labels.max() > 255 else labels.min())} is "
            "outside 0..255; class ids must be 0..254 (255 = ignore)"
        )
    return labels.astype(np.uint8)


class SegmentationSet:
    """A list of samples, each loaded on demand by ``loader(i)``."""

    def __init__(
        self,
        name: str,
        classes: list[str],
        size: int,
        loader: Callable[[int], tuple[np.ndarray, np.ndarray]],
        ids: list[str],
    ) -> None:
        self.name, self.classes, self.ids = name, classes, ids
        self._loader, self._size = loader, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._loader(i)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


IGNORE_INDEX = 255  # the mask value scored as no class (VOC's borders, Cityscapes' void)


def _pair_loader(
    images: list[Path],
    masks: list[Path],
    classes: int,
    read_mask: Callable[[Path], np.ndarray] = read_index_png,
):
    """Image i and its mask, checked against each other and against the class count."""

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = read_rgb(images[i]), read_mask(masks[i])
        if image.shape[:2] != mask.shape:
            raise CaclError(
                f"{masks[i]}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{images[i].name} is {image.shape[1]}x{image.shape[0]}"
            )
        beyond = mask[(mask >= classes) & (mask != IGNORE_INDEX)]
        if beyond.size:
            raise CaclError(
                f"{masks[i]}: class id {int(beyond.max())}, but the dataset has {classes} "
                f"classes (ids 0-{classes - 1}, {IGNORE_INDEX} ignored); fix the mask or its "
                "class list"
            )
        return image, mask

    return load


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise CaclError(f"{path} is missing: {what}")
    return path


def _read_list(path: Path) -> list[str]:
    """A split list's image ids: plain names, so none can reach a file outside the dataset."""
    _require(path, "the split list (one image id per line)")
    text = read_text(path, "a list of image ids, one per line")
    ids = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name = line.split()[0]
        if "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
            raise CaclError(
                f"{path}, line {n}: '{name}' is not an image id; list names without '/' or "
                "'..' (the files are looked up in the dataset's own folders)"
            )
        ids.append(name)
    if not ids:
        raise CaclError(f"{path} lists no images")
    return ids


def voc(root: Path, split: str) -> SegmentationSet:
    """PASCAL VOC 2012 under ``root`` (VOCdevkit, VOCdevkit/VOC2012 or a folder holding VOC2012).

    The train split uses SBD's 10,582 "aug" images when ``SegmentationClassAug`` and its list
    ``ImageSets/SegmentationAug/train_aug.txt`` are present.
    """
    base = voc_base(root)
    if base is None:
        raise CaclError(
            f"{root} is not a VOC 2012 folder: no JPEGImages/ in it, in VOC2012/ or "
            "in VOCdevkit/VOC2012/"
        )
    aug_list = base / "ImageSets" / "SegmentationAug" / "train_aug.txt"
    if split == "train" and (base / "SegmentationClassAug").is_dir() and aug_list.is_file():
        ids, mask_dir = _read_list(aug_list), base / "SegmentationClassAug"
    else:
        ids = _read_list(base / "ImageSets" / "Segmentation" / f"{split}.txt")
        mask_dir = _require(base / "SegmentationClass", "VOC's label PNGs")
    images = [_require(base / "JPEGImages" / f"{i}.jpg", f"the image of '{i}'") for i in ids]
    masks = [_require(mask_dir / f"{i}.png", f"the mask of '{i}'") for i in ids]
    names = base / "classes.txt"  # `cacl world` writes its own class names beside its VOC set
    classes = _class_names(names) if names.is_file() else VOC_CLASSES
    loader = _pair_loader(images, masks, len(classes))
    return SegmentationSet(f"voc-{split}", classes, len(ids), loader, ids)


def _class_names(path: Path) -> list[str]:
    """One class name per line (id = line number), as `cacl world` writes beside its VOC set."""
    _require(path, "one class name per line")
    names = [c.strip() for c in read_text(path, "one class name per line").splitlines()]
    names = [c for c in names if c]
    if not names:
        raise CaclError(f"{path} names no classes; write one class name per line")
    return names


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds -> the 19 train ids (0..18), everything else 255."""
    table = np.full(256, 255, np.uint8)
    table[CITYSCAPES_EVAL_IDS] = np.arange(len(CITYSCAPES_EVAL_IDS), dtype=np.uint8)
    return table[label_ids]


def cityscapes(root: Path, split: str) -> SegmentationSet:
    """Cityscapes fine annotations: leftImg8bit/<split>/<city>/*_leftImg8bit.png with
    gtFine/<split>/<city>/*_gtFine_labelIds.png; train ids are derived here from the labelIds."""
    image_dir = _require(root / "leftImg8bit" / split, f"Cityscapes images of split '{split}'")
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise CaclError(f"{image_dir} holds no <city>/*_leftImg8bit.png images")
    masks = []
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        masks.append(
            _require(
                root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png",
                f"the labelIds of {image.name}",
            )
        )
    ids = [m.name for m in images]
    read_mask = lambda p: cityscapes_train_ids(read_index_png(p))  # noqa: E731
    return SegmentationSet(
        f"cityscapes-{split}",
        CITYSCAPES_CLASSES,
        len(images),
        _pair_loader(images, masks, len(CITYSCAPES_CLASSES), read_mask),
        ids,
    )


def folder(root: Path, split: str) -> SegmentationSet:
    """Your own data: ``images/`` (``IMAGE_SUFFIXES``), ``masks/`` (PNG class ids, same stems,
    255 = ignore),
    ``classes.txt`` (one name per line, id = line number) and ``<split>.txt`` listing stems."""
    classes = _class_names(root / "classes.txt")
    ids = _read_list(root / f"{split}.txt")
    images = []
    for i in ids:
        found = [
            root / "images" / f"{i}{s}"
            for s in IMAGE_SUFFIXES
            if (root / "images" / f"{i}{s}").is_file()
        ]
        if not found:
            raise CaclError(
                f"{root / 'images'} has no image named '{i}' ({' '.join(IMAGE_SUFFIXES)})"
            )
        images.append(found[0])
    masks = [_require(root / "masks" / f"{i}.png", f"the mask of '{i}'") for i in ids]
    loader = _pair_loader(images, masks, len(classes))
    return SegmentationSet(f"folder-{split}", classes, len(ids), loader, ids)


def world(cfg: WorldSection, split: str, count: int) -> SegmentationSet:
    """The built-in world's labelled frames; train and val come from disjoint clips."""
    if split not in ("train", "val"):
        raise CaclError(f"the built-in world has splits train and val, not '{split}'")
    w = World(cfg)
    ids = [f"world_{split}_{i:06d}" for i in range(count)]
    return SegmentationSet(
        f"world-{split}",
        class_names(cfg.classes),
        count,
        lambda i: labelled_frame(w, split, i),
        ids,
    )


def open_dataset(
    kind: str, root: Path | None, split: str, world_cfg: WorldSection, world_count: int
) -> SegmentationSet:
    """The labelled set a config names; ``root`` is the --data path (None: the built-in world)."""
    if kind == "world":
        return world(world_cfg, split, world_count)
    if root is None:
        raise CaclError(f"a {kind} dataset needs its folder; give it with --data")
    if not root.is_dir():
        raise CaclError(f"--data {root}: no such folder")
    return {"voc": voc, "cityscapes": cityscapes, "folder": folder}[kind](root, split)


def open_splits(
    section, world_section, root: Path | None
) -> tuple[SegmentationSet, SegmentationSet]:
    """The train and val sets an ``eval`` section names (``root``: the --data path)."""
    return tuple(
        open_dataset(section.dataset, root, split, world_section, count)
        for split, count in (
            (section.train_split, section.world_train_images),
            (section.val_split, section.world_val_images),
        )
    )
