"""MoCo-v2 augmentation for frame pairs: shared geometry, independent colours.

v and v+ get one random-resized-crop box and one flip, so position j of v and position j of v+ look
at the same place of the scene (the paper: "two crops at the same position of two different
frames"); colour jitter, grayscale and blur are drawn per frame. All randomness comes from the
``numpy.random.Generator`` passed in, so a batch is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass(frozen=True)
class PairAugment:
    """The ``augment`` section of a preset, as a callable on two uint8 RGB frames."""

    size: int = 224  # output side
    crop_scale: tuple[float, float] = (0.2, 1.0)  # area share of the crop box
    jitter: float = 0.4  # brightness, contrast, saturation strength (hue: a quarter of it)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    flip_p: float = 0.5
    shared_crop: bool = True  # one crop box and flip for both frames

    def __call__(
        self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (H, W, 3) uint8 frames of one size -> two normalised (3, size, size) tensors."""
        box = self._crop_box(a.shape[0], a.shape[1], rng)
        flip = rng.random() < self.flip_p
        first = self._one(a, box, flip, rng)
        if not self.shared_crop:
            box, flip = self._crop_box(b.shape[0], b.shape[1], rng), rng.random() < self.flip_p
        return first, self._one(b, box, flip, rng)

    def _crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop rule: area share and aspect ratio, 10 tries."""
        for _ in range(10):
            area = h * w * rng.uniform(*self.crop_scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1)), ch, cw
        side = min(h, w)
        return (h - side) // 2, (w - side) // 2, side, side

    def _one(
        self,
        frame: np.ndarray,
        box: tuple[int, int, int, int],
        flip: bool,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        top, left, ch, cw = box
        x = torch.from_numpy(np.ascontiguousarray(frame[top : top + ch, left : left + cw]))
        x = x.permute(2, 0, 1).float().div_(255).unsqueeze(0)
        x = F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0, 1)
        if flip:
            x = x.flip(2)
        if rng.random() < self.jitter_p:
            x = self._jitter(x, rng)
        if rng.random() < self.grayscale_p:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if rng.random() < self.blur_p:
            sigma = float(rng.uniform(0.1, 2.0)) * self.size / 224
            kernel = 2 * max(1, int(round(self.size * 0.05))) + 1  # about 10 % of the side
            x = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
        return (x - IMAGENET_MEAN) / IMAGENET_STD

    def _jitter(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """ColorJitter(s, s, s, s/4) with its four adjustments in random order."""
        s = self.jitter
        for op in rng.permutation(4):
            if op == 0:
                x = TF.adjust_brightness(x, float(rng.uniform(1 - s, 1 + s)))
            elif op == 1:
                x = TF.adjust_contrast(x, float(rng.uniform(1 - s, 1 + s)))
            elif op == 2:
                x = TF.adjust_saturation(x, float(rng.uniform(1 - s, 1 + s)))
            else:
                x = TF.adjust_hue(x, float(rng.uniform(-s / 4, s / 4)))
        return x


def augment_from_config(section, size: int) -> PairAugment:
    return PairAugment(
        size=size,
        crop_scale=tuple(section.crop_scale),
        jitter=section.jitter,
        jitter_p=section.jitter_p,
        grayscale_p=section.grayscale_p,
        blur_p=section.blur_p,
        flip_p=section.flip_p,
        shared_crop=section.shared_crop,
    )
