"""Figure 3 of the paper: where does a pixel of frame T find its likes in frame T + S?

For each feature space (the backbone and every head the encoder has), the cosine similarity
between the chosen pixel's feature in frame T and every pixel's feature in frame T + S, upsampled to
the frame and blended over it; the source pixel is a red cross on frame T, the best match a green
circle on frame T + S. One grid image, one row per (checkpoint, pixel), plus the raw maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cacl_cli.data.images import to_input
from cacl_cli.errors import CaclError
from cacl_cli.files import write_atomic

RED, GREEN, WHITE = (255, 0, 0), (0, 255, 0), (255, 255, 255)
LABEL_HEIGHT = 24  # one line of text
PANEL_WIDTH = 400  # a row of frame T and four heads is 2000 px: labels stay legible at 1600 px
MAX_ROWS = 64  # (pixels x checkpoints) per figure: it is held whole while drawn


@dataclass
class SimilarityMap:
    space: str  # backbone, global, pixel or cycle
    values: np.ndarray  # (h, w) cosine similarities on the feature grid of frame T + S
    best: tuple[int, int]  # (x, y) of the maximum, in original frame pixels


@torch.no_grad()
def feature_maps(
    encoder: nn.Module, frame: np.ndarray, short_side: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Unit-length feature maps (D, h, w) of every space for one RGB frame, fed to the network
    as every command feeds a frame (``images.to_input``)."""
    out = encoder(to_input(frame, short_side).to(device))
    return {k: F.normalize(v[0].float().cpu(), dim=0) for k, v in out.items() if v.dim() == 4}


def parse_pixel(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise CaclError(
            f"--pixel '{text}': write X,Y in frame pixels (e.g. 120,80) or a grid 'grid:3x2'"
        ) from None
    return x, y


def grid_pixels(spec: str, width: int, height: int) -> list[tuple[int, int]]:
    """``grid:CxR``: C x R points at the centres of an even grid over the frame."""
    try:
        cols, rows = (int(v) for v in spec.removeprefix("grid:").lower().split("x"))
    except ValueError:
        raise CaclError(f"--pixel '{spec}': write a grid as 'grid:3x2' (columns x rows)") from None
    check_rows(cols * rows, 1)
    return [
        (int((c + 0.5) * width / cols), int((r + 0.5) * height / rows))
        for r in range(rows)
        for c in range(cols)
    ]


def source_pixels(specs: list[str], width: int, height: int) -> list[tuple[int, int]]:
    """Every ``--pixel`` value: ``X,Y``, several ``'X,Y X,Y'``, or a grid ``grid:CxR``; none
    given, the frame's centre."""
    if not specs:
        return [(width // 2, height // 2)]
    points = []
    for spec in specs:
        for word in spec.split():
            points += (
                grid_pixels(word, width, height)
                if word.startswith("grid:")
                else [parse_pixel(word)]
            )
    if not points:
        raise CaclError("give --pixel X,Y (or --pixel grid:3x2) to choose the source pixels")
    for point in points:
        check_pixel(point, width, height)
    return points


def check_rows(pixels: int, checkpoints: int) -> None:
    """The figure is held whole while it is drawn: bound its rows."""
    if pixels * checkpoints > MAX_ROWS:
        raise CaclError(
            f"--pixel: {pixels} pixel(s) x {checkpoints} checkpoint(s) make "
            f"{pixels * checkpoints} rows; one figure holds at most {MAX_ROWS}: ask for fewer, "
            "or use --html, which shows any pixel on demand"
        )


def check_pixel(pixel: tuple[int, int], width: int, height: int) -> None:
    x, y = pixel
    if not (0 <= x < width and 0 <= y < height):
        raise CaclError(f"--pixel {x},{y} lies outside the {width}x{height} frame")


def similarity_maps(
    maps_t: dict[str, torch.Tensor],
    maps_s: dict[str, torch.Tensor],
    pixel: tuple[int, int],
    frame_size: tuple[int, int],
) -> list[SimilarityMap]:
    """Cosine similarity of ``pixel`` (original frame coordinates) to every cell of frame T+S."""
    width, height = frame_size
    result = []
    for space, feat_t in maps_t.items():
        _, h, w = feat_t.shape
        cx, cy = min(w - 1, pixel[0] * w // width), min(h - 1, pixel[1] * h // height)
        sims = torch.einsum("d,dhw->hw", feat_t[:, cy, cx], maps_s[space]).numpy()
        by, bx = np.unravel_index(int(sims.argmax()), sims.shape)
        best = (int((bx + 0.5) * width / w), int((by + 0.5) * height / h))
        result.append(SimilarityMap(space, sims, best))
    return result


def _heat_panel(frame: np.ndarray, sims: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    """Similarities upsampled to the frame, coloured from ``span``'s low to high (the raw values
    are in the .npy files), blended over the frame."""
    height, width = frame.shape[:2]
    up = cv2.resize(sims.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    low, high = span
    scaled = np.clip((up - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(frame, 0.45, colours, 0.55, 0)


def colour_bar(width: int, text: str) -> np.ndarray:
    """The colour map as a strip, low on the left, with ``text`` saying what the ends mean."""
    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (LABEL_HEIGHT, 1))
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return _labelled(bar, text)


def _labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """``panel`` under a black strip with one line of white text per line of ``text``."""
    # Hershey fonts draw ASCII only, and OpenCV crashes on a str it cannot encode (a file name
    # that is not UTF-8): the label gets '?' for what it cannot draw.
    lines = text.encode("ascii", "replace").decode("ascii").split("\n")
    strip = np.zeros((LABEL_HEIGHT * len(lines), panel.shape[1], 3), np.uint8)
    for i, line in enumerate(lines):
        baseline = LABEL_HEIGHT * i + LABEL_HEIGHT * 3 // 4
        cv2.putText(
            strip, line, (4, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.6, WHITE, 1, cv2.LINE_AA
        )
    return np.concatenate([strip, panel], axis=0)


def figure_row(
    frame_t: np.ndarray,
    frame_s: np.ndarray,
    pixel: tuple[int, int],
    maps: list[SimilarityMap],
    title: str,
    target: int,
    shared: tuple[float, float] | None = None,
) -> np.ndarray:
    """One row: frame T with the cross, then one heat-map panel over frame T+S (frame number
    ``target``) per space, every panel PANEL_WIDTH wide. ``shared``: one colour range for
    every panel; otherwise each panel spans its own min..max (its label says so)."""
    k = PANEL_WIDTH / frame_t.shape[1]
    size = (PANEL_WIDTH, max(1, round(frame_t.shape[0] * k)))
    method = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    fit = lambda f: cv2.resize(f, size, interpolation=method)  # noqa: E731
    frame_t, frame_s = fit(frame_t), fit(frame_s)
    at = lambda point: (round(point[0] * k), round(point[1] * k))  # noqa: E731
    marked = frame_t.copy()
    cv2.drawMarker(marked, at(pixel), RED, cv2.MARKER_CROSS, 16, 2)
    panels = [_labelled(marked, title + "\n" * max(0, 1 - title.count("\n")))]  # two lines
    for m in maps:
        span = shared or (float(m.values.min()), float(m.values.max()))
        panel = _heat_panel(frame_s, m.values, span)
        cv2.circle(panel, at(m.best), 8, GREEN, 2)
        scale = "shared scale" if shared else "own scale"
        text = f"{m.space} on T+S={target}\ncos {m.values.min():.2f}..{m.values.max():.2f}, {scale}"
        panels.append(_labelled(panel, text))
    return np.concatenate(panels, axis=1)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of possibly different panel counts, padded on the right with black."""
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])


def save_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CaclError(f"could not encode {path}")
    write_atomic(path, lambda fh: fh.write(data.tobytes()))


def save_npy(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda fh: np.save(fh, array))


def encoders(
    model, sources: list[Path | None], device: torch.device
) -> Iterator[tuple[str, nn.Module]]:
    """(name, encoder in eval mode on ``device``) per source, one at a time; ``None`` is a random
    init shaped by the ``model`` section."""
    from cacl_cli.pretrained import load_encoder

    for source in sources:
        encoder, _ = load_encoder(source, model.arch, model.width, model.dim)
        yield ("random init" if source is None else source.name), encoder.eval().to(device)


def run_visualize(
    model,
    frames: Path,
    pixel: list[str],
    frame: int,
    stride: int,
    sources: list[Path | None],
    size: int,
    out: Path,
    device: torch.device,
    same: bool = False,
    note=print,
) -> tuple[Path, int]:
    """The figure for every (checkpoint, pixel) into ``out``: similarity.png (returned, with its
    row count) and one .npy map per panel; ``same``: one colour scale for every panel. ``model``
    (the ``model`` section) shapes a random-init encoder.

    ``pixel``: ``X,Y`` strings, several in one string, or a grid ``grid:CxR`` over the frame;
    ``None`` in ``sources`` is a random-init encoder.
    """
    from cacl_cli.data.frames import read_frames

    frame_t, frame_s = read_frames(frames, [frame, frame + stride])
    height, width = frame_t.shape[:2]
    points = source_pixels(pixel, width, height)
    check_rows(len(points), len(sources))
    if not pixel:
        note(f"no --pixel given: using the frame's centre, {points[0][0]},{points[0][1]}")
    found = []  # (title, point, maps) per row
    for run_index, (name, encoder) in enumerate(encoders(model, sources, device)):
        maps_t, maps_s = (feature_maps(encoder, f, size, device) for f in (frame_t, frame_s))
        for k, point in enumerate(points):
            maps = similarity_maps(maps_t, maps_s, point, (width, height))
            for m in maps:
                save_npy(out / f"sim-r{run_index}-p{k}-{m.space}.npy", m.values)
            found.append((f"{name}\nT={frame}, pixel ({point[0]},{point[1]})", point, maps))
    values = [m.values for _, _, maps in found for m in maps]
    shared = (min(float(v.min()) for v in values), max(float(v.max()) for v in values))
    rows = [
        figure_row(frame_t, frame_s, point, maps, title, frame + stride, shared if same else None)
        for title, point, maps in found
    ]
    legend = (
        f"cosine {shared[0]:.2f} (left) to {shared[1]:.2f} (right), every panel"
        if same
        else ("each panel from its own lowest (left) to highest (right) cosine")
    )
    rows.append(colour_bar(min(rows[0].shape[1], 3 * PANEL_WIDTH), legend))
    figure = out / "similarity.png"
    save_png(figure, stack_rows(rows))
    return figure, len(found)
