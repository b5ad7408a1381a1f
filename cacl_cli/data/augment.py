"""MoCo-v2 augmentation for frame pairs: shared geometry, independent colours.

v and v+ get one random-resized-crop box and one flip, so position j of v and position j of v+ look
at the same place of the scene (the paper: "two crops at the same position of two different
frames"); colour jitter, grayscale and blur are drawn per frame. All randomness comes from the
``numpy.random.Generator`` passed in, so a batch is a pure function of its seed. The loader does the
geometry and draws the colours; the colour work itself runs batched on the training device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cacl_cli.config import AugmentSection
from cacl_cli.data.images import imagenet_stats

# One row of colour parameters per frame: whether jitter applies, its four factors, the order of
# its four adjustments, whether grayscale applies, whether blur applies and its sigma.
JITTER, BRIGHTNESS, CONTRAST, SATURATION, HUE = range(5)
ORDER = slice(5, 9)
GRAY, BLUR, SIGMA = 9, 10, 11
PARAMS = 12


@dataclass(frozen=True)
class PairAugment:
    """MoCo-v2's augmentation of a frame pair, as the ``augment`` section of a preset says.

    Work is split in two so that a whole batch's colours can be done at once on the training
    device: ``prepare`` (per pair, in the loader) crops, resizes and flips the two uint8 frames and
    draws each frame's colour parameters; ``finish`` (per batch, anywhere) applies those
    parameters and normalises. Calling the object does both for one pair.
    """

    section: AugmentSection
    size: int  # output side (``data.size``)

    def __call__(
        self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (H, W, 3) uint8 frames of one size -> two normalised (3, size, size) tensors."""
        x_a, x_b, p_a, p_b = self.prepare(a, b, rng)
        return self.finish(x_a[None], p_a[None])[0], self.finish(x_b[None], p_b[None])[0]

    def prepare(
        self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Geometry of both frames -> (3, size, size) uint8 each, plus each frame's colour draws."""
        box = self._crop_box(a.shape[0], a.shape[1], rng)
        flip = rng.random() < self.section.flip_p
        first = (self._geometry(a, box, flip), self._colour_draws(rng))
        if not self.section.shared_crop:
            box = self._crop_box(b.shape[0], b.shape[1], rng)
            flip = rng.random() < self.section.flip_p
        second = (self._geometry(b, box, flip), self._colour_draws(rng))
        return first[0], second[0], first[1], second[1]

    def _crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop rule: area share and aspect ratio, 10 tries."""
        for _ in range(10):
            area = h * w * rng.uniform(*self.section.crop_scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1)), ch, cw
        side = min(h, w)
        return (h - side) // 2, (w - side) // 2, side, side

    def _geometry(
        self, frame: np.ndarray, box: tuple[int, int, int, int], flip: bool
    ) -> torch.Tensor:
        top, left, ch, cw = box
        crop = np.ascontiguousarray(frame[top : top + ch, left : left + cw])
        shrinking = ch * cw > self.size * self.size
        method = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR  # AREA: no aliasing
        out = cv2.resize(crop, (self.size, self.size), interpolation=method)
        if flip:
            out = out[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)

    def _colour_draws(self, rng: np.random.Generator) -> torch.Tensor:
        s = self.section.jitter
        p = np.zeros(PARAMS, np.float32)
        p[JITTER] = rng.random() < self.section.jitter_p
        p[BRIGHTNESS : HUE + 1] = [*rng.uniform(1 - s, 1 + s, 3), rng.uniform(-s / 4, s / 4)]
        p[ORDER] = rng.permutation(4)
        p[GRAY] = rng.random() < self.section.grayscale_p
        p[BLUR] = rng.random() < self.section.blur_p
        p[SIGMA] = rng.uniform(0.1, 2.0) * self.size / 224
        return torch.from_numpy(p)

    def finish(self, frames: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 and (B, 12) colour draws -> normalised float frames, on their device.

        ColorJitter with its four adjustments in each frame's own order, then grayscale, then a
        Gaussian blur with each frame's sigma (kernel about 10 % of the side), as MoCo-v2.
        """
        x = frames.float().div_(255)
        params = params.to(x.device)
        jitter = params[:, JITTER] > 0
        adjust = (_brightness, _contrast, _saturation, _hue)
        for position in range(4):
            for op, fn in enumerate(adjust):
                chosen = jitter & (params[:, ORDER][:, position] == op)
                if chosen.any():
                    x[chosen] = fn(x[chosen], params[chosen, BRIGHTNESS + op])
        gray = params[:, GRAY] > 0
        if gray.any():
            x[gray] = _luma(x[gray]).expand(-1, 3, -1, -1)
        blur = params[:, BLUR] > 0
        if blur.any():
            radius = max(1, int(round(self.size * 0.05)))
            x[blur] = _gaussian_blur(x[blur], params[blur, SIGMA], radius)
        mean, std = imagenet_stats(x.device)
        return (x - mean) / std


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (B, 3, H, W) -> (B, 1, H, W), as torchvision's grayscale."""
    return (0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp(0, 1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_image(ratio)
    return (ratio * x + (1 - ratio) * other).clamp(0, 1)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _luma(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def _saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _luma(x), factor)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``shift`` (a fraction of the colour wheel) in HSV."""
    r, g, b = x.unbind(1)
    high, low = x.max(1).values, x.min(1).values
    chroma = high - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    h = torch.where(
        high == r,
        ((g - b) / safe) % 6,
        torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = torch.where(chroma > 0, h / 6, torch.zeros_like(h))
    h = (h + _per_image(shift)[:, 0]) % 1.0
    # back to RGB: each channel n takes v - c * clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6
    out = []
    for n in (5, 3, 1):
        k = (n + 6 * h) % 6
        out.append(high - chroma * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(out, dim=1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable blur with one sigma per image (reflect padding), all images in one convolution."""
    n, c, h, w = x.shape
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (n c) x K
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)
    y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)
