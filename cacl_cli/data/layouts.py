"""What kind of dataset a folder holds, read from its layout alone (no torch, no images read).

``cacl probe --data X`` and ``cacl finetune --data X`` use this when neither the preset nor
``--set eval.dataset`` names the dataset; anything unrecognised is refused with the keys to set.
"""

from __future__ import annotations

from pathlib import Path

from cacl_cli.errors import CaclError
from cacl_cli.files import files_under

# The video suffixes cacl reads (decord/FFmpeg); extract-pairs takes these unless --ext says.
VIDEO_SUFFIXES = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ts",
)


# The image suffixes cacl reads (frames, frame folders, image folders, labelled images).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def holds_videos(root: Path) -> bool:
    """Whether any file under ``root`` (any depth, through linked folders) has a video suffix."""
    return any(p.suffix.lower() in VIDEO_SUFFIXES for p in files_under(root))


def voc_base(root: Path) -> Path | None:
    """The folder holding JPEGImages/ for VOC: ``root``, root/VOC2012 or root/VOCdevkit/VOC2012."""
    for base in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (base / "JPEGImages").is_dir():
            return base
    return None


def segmentation_layout(root: Path) -> str:
    """'voc', 'cityscapes' or 'folder' for a labelled dataset folder; otherwise a CaclError that
    says what the folder looks like and what to set."""
    if not root.exists():
        raise CaclError(f"--data {root}: no such folder")
    if not root.is_dir():
        raise CaclError(f"--data {root} is a file; give the dataset's folder")
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        raise CaclError(
            f"--data {root} is a DAVIS-style video set (JPEGImages/, Annotations/); "
            f"score it with `cacl propagate {root}`"
        )
    base = voc_base(root)
    if base is not None and (base / "SegmentationClass").is_dir():
        return "voc"
    if holds_videos(root):
        raise CaclError(
            f"--data {root} holds videos, not labelled images; a probe needs a labelled set "
            "(for pretraining, run `cacl extract-pairs` on it first)"
        )
    raise CaclError(
        f"--data {root}: no VOC (JPEGImages/, SegmentationClass/), Cityscapes (leftImg8bit/, "
        "gtFine/) or image/mask (images/, masks/, classes.txt) layout in it; name the dataset "
        "with --preset probe-voc or --set eval.dataset=voc|cityscapes|folder"
    )
