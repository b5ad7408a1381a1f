"""The built-in world: procedurally generated videos with ground-truth semantic masks.

Each clip is a panning view over a textured background drawn from a few shared families (the
"stuff" class, label 0) with several moving, occluding object instances. An object class is a
shape family *and* a texture family; colours are drawn per instance, so colour alone says nothing
about the class: recognising a class means seeing its shape or its texture. Everything derives from
``(seed, clip index)``, so any frame of any clip is reproducible on any machine.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from cacl_cli.config import WorldSection
from cacl_cli.errors import CaclError

# Shapes and textures work in sprite coordinates (u, v) in [-1, 1], already rotated.
SHAPES = {
    "disc": lambda u, v: u * u + v * v < 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) < 0.8,
    "triangle": lambda u, v: (v < 0.8) & (np.abs(u) < (v + 1.0) / 2.0),
    "ring": lambda u, v: (u * u + v * v < 1.0) & (u * u + v * v > 0.3),
    "cross": lambda u, v: (
        ((np.abs(u) < 0.33) & (np.abs(v) < 0.95)) | ((np.abs(v) < 0.33) & (np.abs(u) < 0.95))
    ),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) < 1.0,
}
TEXTURES = {
    "stripes": lambda u, v, f: np.sin(f * math.pi * u) > 0,
    "checker": lambda u, v, f: np.sin(f * math.pi * u) * np.sin(f * math.pi * v) > 0,
    "dots": lambda u, v, f: (
        (np.mod(f * u, 1.0) - 0.5) ** 2 + (np.mod(f * v, 1.0) - 0.5) ** 2 < 0.08
    ),
    "rings": lambda u, v, f: np.sin(f * math.pi * np.sqrt(u * u + v * v)) > 0,
    "waves": lambda u, v, f: np.sin(f * math.pi * u + 2.5 * np.sin(f * math.pi * v)) > 0,
    "grid": lambda u, v, f: (
        (np.abs(np.sin(f * math.pi * u)) < 0.35) | (np.abs(np.sin(f * math.pi * v)) < 0.35)
    ),
}
# Object classes, labels 1..N in this order; label 0 is the background.
CLASSES = (
    ("disc", "stripes"),
    ("square", "checker"),
    ("triangle", "dots"),
    ("ring", "waves"),
    ("cross", "grid"),
    ("diamond", "rings"),
)
BACKGROUNDS = ("grain", "bricks", "clouds")


def class_names(num_classes: int) -> list[str]:
    return ["background"] + [f"{s}-{t}" for s, t in CLASSES[:num_classes]]


@dataclass
class _Instance:
    label: int
    rgb: np.ndarray  # d x d x 3 uint8
    mask: np.ndarray  # d x d bool
    start: np.ndarray  # centre at t = 0, (x, y)
    velocity: np.ndarray


def _two_colours(rng: np.random.Generator, contrast: float) -> np.ndarray:
    """Two random colours at least ``contrast`` apart, so a texture is always visible."""
    first = rng.uniform(0, 255, 3)
    direction = rng.normal(size=3)
    second = first + direction / np.linalg.norm(direction) * contrast * 255
    return np.clip(np.stack([first, second]), 0, 255)


def _colourise(pattern: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Blend two colours by a pattern in [0, 1]: (h, w) -> (h, w, 3) uint8."""
    p = pattern.astype(np.float32)[..., None]
    return ((1 - p) * colours[0] + p * colours[1]).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, side: int, cell: int) -> np.ndarray:
    """Value noise: random cells upsampled smoothly to ``side`` x ``side``, in [0, 1]."""
    coarse = rng.uniform(0, 1, (side // cell + 2, side // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _background(rng: np.random.Generator, family: str, side: int) -> np.ndarray:
    if family == "grain":
        pattern = _smooth_noise(rng, side, 2)
    elif family == "clouds":
        pattern = _smooth_noise(rng, side, 12)
    else:  # bricks: rows of offset rectangles with dark mortar
        brick_h = int(rng.integers(6, 11))
        brick_w = 2 * brick_h + int(rng.integers(0, 5))
        yy, xx = np.mgrid[0:side, 0:side]
        row = yy // brick_h
        xs = (xx + (row % 2) * (brick_w // 2)) % brick_w
        pattern = ((yy % brick_h) < 2) | (xs < 2)
    return _colourise(pattern, _two_colours(rng, 0.25))


def _sprite(rng: np.random.Generator, label: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    shape, texture = CLASSES[label - 1]
    grid = (np.arange(side, dtype=np.float32) + 0.5) / side * 2 - 1
    x, y = np.meshgrid(grid, grid)
    angle = rng.uniform(0, 2 * math.pi)
    u = math.cos(angle) * x + math.sin(angle) * y
    v = -math.sin(angle) * x + math.cos(angle) * y
    mask = SHAPES[shape](u, v)
    pattern = TEXTURES[texture](u, v, rng.uniform(2.5, 4.0))
    return _colourise(pattern, _two_colours(rng, 0.45)), mask


def _bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Reflect a straight path into [low, high], as a ball bouncing between walls."""
    span = high - low
    x = np.mod(position - low, 2 * span)
    return low + np.where(x > span, 2 * span - x, x)


class Clip:
    """One clip of the world: ``frame(t)`` renders frame t and its label mask."""

    def __init__(self, cfg: WorldSection, index: int) -> None:
        rng = np.random.default_rng([cfg.seed, index])
        self.cfg = cfg
        margin = int(math.ceil(cfg.pan * cfg.frames)) + 1
        self.background = _background(
            rng, BACKGROUNDS[rng.integers(len(BACKGROUNDS))], cfg.size + 2 * margin
        )
        self.camera_start = rng.uniform(0, 2 * margin, 2)
        self.camera_velocity = rng.uniform(-cfg.pan, cfg.pan, 2)
        count = int(rng.integers(cfg.objects_min, cfg.objects_max + 1))
        self.instances = [self._instance(rng) for _ in range(count)]  # back to front

    def _instance(self, rng: np.random.Generator) -> _Instance:
        label = int(rng.integers(1, self.cfg.classes + 1))
        side = max(4, int(rng.uniform(self.cfg.scale_min, self.cfg.scale_max) * self.cfg.size))
        rgb, mask = _sprite(rng, label, side)
        start = rng.uniform(0, self.cfg.size, 2)
        velocity = rng.uniform(-self.cfg.speed, self.cfg.speed, 2)
        return _Instance(label, rgb, mask, start, velocity)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t: (size, size, 3) uint8 RGB and (size, size) uint8 labels."""
        image, labels, _ = self._render(t, with_identity=False)
        return image, labels

    def identity(self, t: int) -> np.ndarray:
        """Frame t's scene points, (size, size) int64: equal values in two frames of the clip
        are the same point of the same surface (background or object), wherever it moved."""
        return self._render(t, with_identity=True)[2]

    def frame_with_instances(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t's RGB and its object instances, from one render: (size, size) uint8, 0 the
        background, k the clip's k-th object (back to front) where those in front leave it seen."""
        image, _, identity = self._render(t, with_identity=True)
        return image, (identity // self.background.shape[0] ** 2).astype(np.uint8)  # the layer

    def _render(self, t: int, with_identity: bool) -> tuple:
        n = self.cfg.size
        side = self.background.shape[0]
        margin = (side - n) // 2
        cx, cy = _bounce(self.camera_start + self.camera_velocity * t, 0, 2 * margin).astype(int)
        image = self.background[cy : cy + n, cx : cx + n].copy()
        labels = np.zeros((n, n), np.uint8)
        identity = None
        if with_identity:  # layer * side^2 + the pixel's place in its own texture
            yy, xx = np.mgrid[0:n, 0:n]
            identity = (yy + cy) * side + (xx + cx)
        for layer, inst in enumerate(self.instances, start=1):
            x, y = _bounce(inst.start + inst.velocity * t, 0, n).astype(int)
            left, top = x - inst.mask.shape[1] // 2, y - inst.mask.shape[0] // 2
            _paste(image, labels, inst, left, top, identity, layer * side * side)
        return image, labels, identity


def _paste(
    image: np.ndarray,
    labels: np.ndarray,
    inst: _Instance,
    left: int,
    top: int,
    identity: np.ndarray | None = None,
    layer_code: int = 0,
) -> None:
    """Draw a sprite with its top-left corner at (left, top), clipped to the frame; with
    ``identity``, mark its pixels there as ``layer_code`` + their place in the sprite."""
    n, d = image.shape[0], inst.mask.shape[0]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + d, n), min(left + d, n)
    if y0 >= y1 or x0 >= x1:
        return
    sy, sx = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)
    mask = inst.mask[sy, sx]
    image[y0:y1, x0:x1][mask] = inst.rgb[sy, sx][mask]
    labels[y0:y1, x0:x1][mask] = inst.label
    if identity is not None:
        yy, xx = np.mgrid[sy, sx]
        identity[y0:y1, x0:x1][mask] = (layer_code + yy * d + xx)[mask]


class World:
    """The set of clips a config describes; clip ``i`` is the same on every machine."""

    def __init__(self, cfg: WorldSection, cached_clips: int = 2048) -> None:
        if not 1 <= cfg.classes <= len(CLASSES):
            raise CaclError(f"the world has 1 to {len(CLASSES)} classes, not {cfg.classes}")
        self.cfg, self.cached_clips = cfg, cached_clips
        self._start_cache()

    def _start_cache(self) -> None:
        # Building a clip (background, sprites) costs several frames' rendering; training draws
        # from the same clips over and over, so each process keeps the recent ones (~0.1 MB each).
        self.clip = functools.lru_cache(maxsize=self.cached_clips)(self._build_clip)

    def _build_clip(self, index: int) -> Clip:
        return Clip(self.cfg, index)

    def __getstate__(self) -> dict:  # loader processes get the recipe, not the cache
        return {"cfg": self.cfg, "cached_clips": self.cached_clips}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start_cache()

    def pair(self, rng: np.random.Generator, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """Two frames ``stride`` apart from a random training clip (RGB uint8 each)."""
        clip = self.clip(int(rng.integers(self.cfg.clips)))
        t = int(rng.integers(max(1, self.cfg.frames - stride)))
        return clip.frame(t)[0], clip.frame(t + stride)[0]


def true_cells(identity_t: np.ndarray, identity_s: np.ndarray, cell: int) -> np.ndarray:
    """For each ``cell`` x ``cell`` block of frame t (row-major), the block of frame s that
    holds the scene point at its centre; -1 where that point is hidden or outside frame s."""
    side = identity_s.shape[1]
    centres = identity_t[cell // 2 :: cell, cell // 2 :: cell].ravel()
    order = np.argsort(identity_s.ravel(), kind="stable")
    ranked = identity_s.ravel()[order]
    at = np.minimum(np.searchsorted(ranked, centres), len(ranked) - 1)
    place = order[at]
    cells = (place // side) // cell * (side // cell) + (place % side) // cell
    return np.where(ranked[at] == centres, cells, -1)


def correspondence_pairs(
    world: World, count: int, stride: int, crop: int, cell: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` frame pairs (t, t + stride), centre crops of ``crop`` px, with the true match
    of every cell: (count, crop, crop, 3) uint8 twice and (count, cells) int64 (-1: none).

    Ground truth for diagnostics only: nothing here feeds training.
    """
    rng = np.random.default_rng([seed, 7])
    n = world.cfg.size
    box = slice((n - crop) // 2, (n - crop) // 2 + crop)
    firsts, seconds, truth = [], [], []
    for _ in range(count):
        clip = world.clip(int(rng.integers(world.cfg.clips)))
        t = int(rng.integers(max(1, world.cfg.frames - stride)))
        firsts.append(clip.frame(t)[0][box, box])
        seconds.append(clip.frame(t + stride)[0][box, box])
        identities = clip.identity(t)[box, box], clip.identity(t + stride)[box, box]
        truth.append(true_cells(*identities, cell))
    return np.stack(firsts), np.stack(seconds), np.stack(truth)
