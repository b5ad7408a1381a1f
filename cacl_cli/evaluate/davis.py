"""DAVIS as its benchmark defines it: annotations, region similarity J, contour accuracy F, and
the per-sequence statistics (mean, recall, decay), written from the published definitions
(Perazzi et al. 2016; Pont-Tuset et al. 2017).

Annotations come in two kinds. DAVIS-2017 stores indexed PNGs: 0 background, 1..N the objects,
255 void (ignored). DAVIS-2016 stores binary masks: 0 background, 255 the one object. ``auto``
tells them apart by the first annotation's values: only 0 and 255 means binary.

Scores are taken per object and frame over the frames the official evaluation keeps, every
annotated frame but the first (given) and the last, then averaged per object.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from cacl_cli.data.segmentation import read_index_png
from cacl_cli.errors import CaclError

VOID = 255
BOUNDARY_TOLERANCE = 0.008  # of the image diagonal, the standard F tolerance
SCALE = (
    "plain J, F, J&F, recall and decay fields are fractions in [0, 1]; fields ending in _x100 are "
    "the same numbers x100, the scale the DAVIS literature prints"
)


def x100(scores: dict[str, float]) -> dict[str, float]:
    """``{name}_x100: 100 x value`` for each score, the scale tables print."""
    return {f"{name}_x100": 100 * value for name, value in scores.items()}


def label_kind(first: np.ndarray, kind: str) -> str:
    """``binary`` or ``indexed`` for a sequence whose first annotation is ``first``."""
    if kind != "auto":
        return kind
    values = set(np.unique(first).tolist())
    return "binary" if values <= {0, VOID} and VOID in values else "indexed"


def read_annotation(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(object ids uint8, void mask bool) of one annotation file of the given kind."""
    raw = read_index_png(path)
    if kind == "binary":
        return (raw > 0).astype(np.uint8), np.zeros(raw.shape, bool)
    void = raw == VOID
    return np.where(void, 0, raw).astype(np.uint8), void


def region_similarity(pred: np.ndarray, truth: np.ndarray, void: np.ndarray) -> float:
    """J: IoU of two boolean masks outside the void; 1 when both are empty."""
    keep = ~void
    union = np.logical_or(pred, truth)[keep].sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, truth)[keep].sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """The official DAVIS boundary map: pixels that differ from their east, south or south-east
    neighbour. The last row looks only east, the last column only south, and the bottom-right
    pixel is never a boundary (so a mask touching the frame's edge has no boundary there)."""
    east, south, south_east = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    edges = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    edges[-1, :] = mask[-1, :] ^ east[-1, :]
    edges[:, -1] = mask[:, -1] ^ south[:, -1]
    edges[-1, -1] = False
    return edges


def disk(radius: int) -> np.ndarray:
    """The pixels (x, y) with x^2 + y^2 <= radius^2, as a uint8 structuring element."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def contour_accuracy(
    pred: np.ndarray, truth: np.ndarray, void: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE
) -> float:
    """F: harmonic mean of boundary precision and recall, a boundary pixel counting as matched
    within a disk of ceil(``tolerance`` x the image diagonal) pixels of the other boundary.
    Void pixels are cleared from both masks first; two empty boundaries score 1, one empty 0."""
    keep = ~void
    b_pred, b_truth = boundary(pred & keep), boundary(truth & keep)
    n_pred, n_truth = int(b_pred.sum()), int(b_truth.sum())
    if n_pred == 0 and n_truth == 0:
        return 1.0
    if n_pred == 0 or n_truth == 0:
        return 0.0
    element = disk(math.ceil(tolerance * math.hypot(*pred.shape)))
    near_truth = cv2.dilate(b_truth.astype(np.uint8), element).astype(bool)
    near_pred = cv2.dilate(b_pred.astype(np.uint8), element).astype(bool)
    precision = (b_pred & near_truth).sum() / n_pred
    recall = (b_truth & near_pred).sum() / n_truth
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def decay_bins(n: int) -> list[slice]:
    """The four bins of DAVIS's decay over ``n`` scored frames: edges round(linspace(1, n, 5)) - 1
    (halves rounded up), each bin including its right edge, so neighbouring bins share a frame."""
    edges = np.floor(np.linspace(1, n, 5) + 0.5 + 1e-10).astype(int) - 1
    return [slice(a, b + 1) for a, b in zip(edges, edges[1:])]


def statistics(values: list[float]) -> dict[str, float]:
    """Mean, recall (share of frames above 0.5) and decay (the first bin's mean minus the last's),
    as the official ``db_statistics`` computes them."""
    x = np.asarray(values, float)
    bins = decay_bins(len(x))
    decay = float(x[bins[0]].mean() - x[bins[-1]].mean())
    return {"mean": float(x.mean()), "recall": float((x > 0.5).mean()), "decay": decay}


def score_sequence(
    predicted: list[np.ndarray], truth: list[tuple[np.ndarray, np.ndarray] | None]
) -> dict:
    """Per object: J and F statistics over the kept frames; the sequence's J, F, J&F means; and
    per kept frame (``frames``: index, J and F averaged over the objects).

    ``predicted``: object ids per frame; ``truth``: (ids, void) per frame, None where the frame
    has no annotation. Objects are the ids of the first annotation.
    """
    first_ids, _ = truth[0]
    objects = [int(i) for i in np.unique(first_ids) if i != 0]
    kept = [t for t in range(1, len(truth) - 1) if truth[t] is not None]
    if not objects:
        raise CaclError("the first annotation holds no object")
    if not kept:
        raise CaclError("J and F need an annotated frame between the first and the last")
    per_object, j_all, f_all = {}, [], []
    for obj in objects:
        j = [region_similarity(predicted[t] == obj, truth[t][0] == obj, truth[t][1]) for t in kept]
        f = [contour_accuracy(predicted[t] == obj, truth[t][0] == obj, truth[t][1]) for t in kept]
        per_object[str(obj)] = {"J": statistics(j), "F": statistics(f)}
        j_all.append(j)
        f_all.append(f)
    j_mean = float(np.mean([o["J"]["mean"] for o in per_object.values()]))
    f_mean = float(np.mean([o["F"]["mean"] for o in per_object.values()]))
    frames = [
        {"frame": t, "J": float(j), "F": float(f)}
        for t, j, f in zip(kept, np.mean(j_all, axis=0), np.mean(f_all, axis=0))
    ]
    return {
        "J": j_mean,
        "F": f_mean,
        "J&F": (j_mean + f_mean) / 2,
        "objects": per_object,
        "frames_scored": len(kept),
        "frames": frames,
    }


def palette() -> list[int]:
    """The DAVIS (PASCAL VOC) colour map: id i's colour from the bits of i, 256 x RGB flat."""
    colours = []
    for i in range(256):
        r = g = b = 0
        code = i
        for shift in range(7, -1, -1):
            r |= (code & 1) << shift
            g |= ((code >> 1) & 1) << shift
            b |= ((code >> 2) & 1) << shift
            code >>= 3
        colours += [r, g, b]
    return colours
