"""The one image reader, and the one way a frame becomes network input.

Frames are read as (H, W, 3) uint8 RGB. Network input is float (3, H, W), scaled to [0, 1] and
normalised with ImageNet's mean and std; where a feature map must line up with the frame, the
input side is snapped to a multiple of the output stride.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cacl_cli.errors import CaclError
from cacl_cli.files import open_regular, read_bytes

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that make tensors: extract-pairs and its worker processes
# read and write images only, and importing torch would cost each of them seconds.
# A damaged file is told once, by the error that names it; OpenCV's own log line about it (a
# warning, or an "[ERROR]" for a header it cannot read) would be a second line naming nothing.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_stats(device: "torch.device | None" = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """ImageNet's per-channel mean and std as (3, 1, 1) tensors."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    return mean, torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; an unreadable one is a one-line error.

    The bytes are read here and handed to the decoder, so any file name works (OpenCV's own
    reader cannot take a name that is not UTF-8), and only a regular file is read (a FIFO
    named like a frame would block).
    """
    return decode_rgb(read_bytes(path, "an image file"), str(path))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding it."""
    from PIL import Image

    try:
        with open_regular(path, "an image file") as fh, Image.open(fh) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise CaclError(f"{path} is not a readable image") from None


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Encoded image bytes as (H, W, 3) uint8 RGB; ``name`` says where they came from in the
    one-line error."""
    if not data:
        raise CaclError(f"{name} is empty (0 bytes), not an image")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # a header past OpenCV's pixel limit, say
        reason = str(err).strip().splitlines()[-1].partition(") ")[2][:120]
        raise CaclError(f"{name} is not a readable image ({reason})") from None
    if image is None:
        raise CaclError(f"{name} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_short_side(
    frame: np.ndarray, short_side: int, interpolation: int = cv2.INTER_AREA
) -> np.ndarray:
    """Resampled (area by default; nearest for label maps) so the short side is ``short_side``
    (0: unchanged)."""
    h, w = frame.shape[:2]
    if short_side <= 0 or min(h, w) == short_side:
        return frame
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=interpolation)


def stride_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with about the given short side, both multiples of the output stride."""
    from cacl_cli.model.backbone import OUTPUT_STRIDE

    scale = short_side / min(width, height)

    def snap(v: float) -> int:
        return max(OUTPUT_STRIDE, round(v * scale / OUTPUT_STRIDE) * OUTPUT_STRIDE)

    return snap(width), snap(height)


def normalise(image: np.ndarray) -> "torch.Tensor":
    """(H, W, 3) uint8 RGB -> (3, H, W) float, ImageNet-normalised."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
    mean, std = imagenet_stats()
    return (x - mean) / std


def normalise_batch(images: np.ndarray) -> "torch.Tensor":
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float, ImageNet-normalised."""
    import torch

    return torch.stack([normalise(image) for image in images])


def to_input(frame: np.ndarray, short_side: int) -> "torch.Tensor":
    """The one way a frame becomes network input, for every command that feeds the backbone: a
    (1, 3, h, w) ImageNet-normalised batch with about ``short_side`` (0: the frame's own), both
    sides multiples of the output stride (antialiased bilinear resampling; a frame already of
    that size is not resampled)."""
    import torch.nn.functional as F

    height, width = frame.shape[:2]
    size = stride_size(width, height, short_side or min(width, height))
    x = normalise(frame).unsqueeze(0)
    if size == (width, height):
        return x
    return F.interpolate(x, size[::-1], mode="bilinear", align_corners=False, antialias=True)
