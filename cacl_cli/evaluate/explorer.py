"""``cacl visualize --html``: one page that answers "where does this pixel find its likes?" for
every pixel, head, checkpoint and target frame at once.

The page is a single HTML file with everything inside (frames as JPEG, features as float16, the
script): it opens from disk with no server and no network. Each space's unit-length features are
projected onto their first ``channels`` uncentred principal directions (an SVD over every cell of
every frame shown), which keeps dot products as well as any linear map of that size can; the page
normalises the projected vectors again, so what it draws is the cosine of the compressed features.
What is lost against the exact maps: the part of each feature outside those directions, and
float16 rounding; the page states both.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from cacl_cli.files import write_text_atomic

PAGE = Path(__file__).with_name("explorer.html")
JPEG_QUALITY = 85


def compress(maps: list[torch.Tensor], channels: int) -> tuple[list[np.ndarray], float]:
    """Project every (D, h, w) map of one space onto the top ``channels`` right singular vectors
    of all their cells; returns the (channels, h, w) float16 maps and the share of the features'
    energy kept."""
    cells = torch.cat([m.flatten(1).t() for m in maps]).double()  # (cells, D)
    _, values, vectors = torch.linalg.svd(cells, full_matrices=False)
    keep = min(channels, vectors.shape[0])  # no more directions than the cells or channels span
    basis = vectors[:keep].t()  # (D, keep)
    kept = float((values[:keep] ** 2).sum() / (values**2).sum())
    out = []
    for m in maps:
        d, h, w = m.shape
        projected = (m.flatten(1).t().double() @ basis).t().reshape(keep, h, w)
        out.append(projected.float().numpy().astype(np.float16))
    return out, kept


def _jpeg(frame: np.ndarray) -> str:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    return base64.b64encode(data.tobytes()).decode()


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).astype("<f2").tobytes()).decode()


def explorer_page(
    frames: list[np.ndarray],
    indices: list[int],
    runs: list[tuple[str, dict[str, list[torch.Tensor]]]],
    channels: int,
    path: Path,
) -> int:
    """Write the page to ``path``; returns its size in bytes.

    ``frames``: RGB frames, the source first, then the targets; ``indices``: their frame numbers;
    ``runs``: (checkpoint name, {space: one (D, h, w) unit-length map per frame}).
    """
    payload = {
        "width": int(frames[0].shape[1]),
        "height": int(frames[0].shape[0]),
        "indices": indices,
        "frames": [_jpeg(f) for f in frames],
        "channels": channels,
        "runs": [],
    }
    for name, spaces in runs:
        run = {"name": name, "spaces": {}}
        for space, maps in spaces.items():
            projected, kept = compress(maps, channels)
            _, h, w = projected[0].shape
            run["spaces"][space] = {
                "grid": [h, w],
                "channels": int(projected[0].shape[0]),
                "kept": round(kept, 4),
                "maps": [_b64(p) for p in projected],
            }
        payload["runs"].append(run)
    data = json.dumps(payload, separators=(",", ":"))
    html = PAGE.read_text().replace("/*DATA*/null", data.replace("</", "<\\/"))
    write_text_atomic(path, html)
    return len(html.encode())


def run_explorer(
    model,
    frames: Path,
    frame: int,
    stride: int,
    targets: int,
    sources: list[Path | None],
    size: int,
    channels: int,
    path: Path,
    device: torch.device,
) -> tuple[int, list[int]]:
    """Frame ``frame`` and ``targets`` frames after it, ``stride`` apart, through every source's
    encoder (``None``: a random init of the ``model`` section), into the page at ``path``.
    Returns the page's size in bytes and the frame numbers shown."""
    from cacl_cli.data.frames import read_frames
    from cacl_cli.evaluate.visualize import encoders, feature_maps

    indices = [frame + k * stride for k in range(targets + 1)]
    images = read_frames(frames, indices)
    runs = []
    for name, encoder in encoders(model, sources, device):
        per_frame = [feature_maps(encoder, image, size, device) for image in images]
        runs.append((name, {space: [maps[space] for maps in per_frame] for space in per_frame[0]}))
    return explorer_page(images, indices, runs, channels, path), indices


SEQUENCE_PAGE = Path(__file__).with_name("sequence.html")


def _mask_png(ids: np.ndarray, colours: list[int]) -> str:
    """An indexed PNG whose background (id 0) is transparent."""
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(colours)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    return base64.b64encode(buffer.getvalue()).decode()


def sequence_page(
    name: str,
    frames: list[np.ndarray],
    frame_names: list[str],
    predicted: list[np.ndarray],
    truth: list,
    scores: dict,
    source: str,
    path: Path,
) -> int:
    """One propagated sequence as a page: every frame with its predicted and true masks, a slider
    over time, and J and F per scored frame (``scores``: ``davis.score_sequence``'s result).
    Returns the page's size in bytes."""
    from cacl_cli.evaluate import davis

    colours = davis.palette()
    per_frame = {s["frame"]: s for s in scores["frames"]}
    pages = []
    for t, (frame, ids) in enumerate(zip(frames, predicted)):
        scored = per_frame.get(t, {})
        pages.append(
            {
                "name": frame_names[t],
                "jpeg": _jpeg(frame),
                "pred": _mask_png(ids, colours),
                "truth": None if truth[t] is None else _mask_png(truth[t][0], colours),
                "J": scored.get("J"),
                "F": scored.get("F"),
            }
        )
    payload = {
        "sequence": name,
        "source": source,
        "frames": pages,
        "J": scores["J"],
        "F": scores["F"],
        "JF": scores["J&F"],
    }
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    html = SEQUENCE_PAGE.read_text().replace("/*DATA*/null", data)
    write_text_atomic(path, html)
    return len(html.encode())
