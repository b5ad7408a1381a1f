"""Video object segmentation by label propagation: a real-video check of the features.

Given the first frame's annotation of a DAVIS-format sequence, each later frame's labels are a
weighted vote of the labels of context frames (the first frame, with its true labels, and the last
``context`` predicted frames), one channel per object. The weights come from the features alone:
for each target position, the ``topk`` most similar context positions within ``radius`` feature
cells, softmax at ``temperature``. Each frame's features are computed once and reused while it is
context. Scores are DAVIS's J and F (``evaluate/davis.py``).

Two baselines need no network: ``copy`` repeats the first annotation, ``colour`` propagates with
each cell's mean Lab colour as its feature.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cacl_cli.data.frames import frame_files
from cacl_cli.data.images import image_size, read_rgb, stride_size, to_input
from cacl_cli.data.segmentation import read_index_png
from cacl_cli.device import autocast
from cacl_cli.errors import CaclError
from cacl_cli.evaluate import davis
from cacl_cli.files import present, read_text, write_atomic, write_text_atomic
from cacl_cli.run_folder import RESULTS

BASELINES = ("copy", "colour")
Featurizer = Callable[[np.ndarray], torch.Tensor]  # RGB frame -> unit features (C, h, w)


TILE = 8  # target cells per side of an affinity block (the window adds the radius)


def protocol_record(section) -> dict:
    """The ``propagate`` section (a ``PropagateSection``) as results.json names it."""
    return {
        "context": section.context,
        "topk": section.topk,
        "radius": section.radius,
        "temperature": section.temperature,
        "short_side": section.size,
        "labels": section.labels,
        "tile": TILE,
    }


@dataclass
class Sequence:
    name: str
    frames: list[Path]
    annotations: list[Path | None]  # the annotation file of each frame, None where there is none
    kind: str  # binary or indexed

    def truth(self) -> list[tuple[np.ndarray, np.ndarray] | None]:
        read = davis.read_annotation
        return [None if p is None else read(p, self.kind) for p in self.annotations]


def sequences(root: Path) -> list[str]:
    """The sequence names of a DAVIS-format folder: JPEGImages/480p/<seq> with Annotations."""
    images = root / "JPEGImages" / "480p"
    if not images.is_dir():
        raise CaclError(f"{root} is not a DAVIS-format folder (no JPEGImages/480p/ in it)")
    names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if not names:
        raise CaclError(f"{images} holds no sequence folders")
    return names


def chosen_sequences(root: Path, names: list[str] | None, split: Path | None) -> list[str]:
    """``--seq`` names, else the ``--split`` file's, else ImageSets/<year>/val.txt when the folder
    has one, else every sequence."""
    known = sequences(root)
    if not names:
        lists = sorted(root.glob("ImageSets/*/val.txt"))
        split = split or (lists[0] if lists else None)
        if split is not None:
            if not present(split):
                raise CaclError(f"--split {split}: no such file")
            text = read_text(split, "sequence names, one per line")
            names = [line.strip() for line in text.splitlines() if line.strip()]
            if not names:
                raise CaclError(f"--split {split} lists no sequences; give one name per line")
    for name in names or []:
        if name not in known:
            raise CaclError(f"sequence {name}: not in {root}/JPEGImages/480p")
    return names or known


def open_sequence(root: Path, name: str, max_frames: int, labels: str) -> Sequence:
    frames = frame_files(root / "JPEGImages" / "480p" / name)[: max_frames or None]
    folder = root / "Annotations" / "480p" / name
    if not folder.is_dir():
        raise CaclError(f"{folder} is missing; DAVIS folders keep masks under Annotations/480p")
    paths = [folder / f"{f.stem}.png" for f in frames]
    annotations = [p if p.is_file() else None for p in paths]
    if annotations[0] is None:
        raise CaclError(f"{folder}: the first frame's mask {frames[0].stem}.png is missing")
    _check_sizes(frames, annotations)
    first = read_index_png(annotations[0])
    return Sequence(name, frames, annotations, davis.label_kind(first, labels))


def _check_sizes(frames: list[Path], annotations: list[Path | None]) -> None:
    """A sequence's frames and masks share one size (read from their headers), checked before
    anything is propagated or written."""
    width, height = image_size(frames[0])
    for path in [*frames[1:], *(a for a in annotations if a is not None)]:
        w, h = image_size(path)
        if (w, h) != (width, height):
            raise CaclError(
                f"{path} is {w}x{h} but {frames[0].name} is {width}x{height}; a sequence's "
                "frames and masks must all have one size"
            )


def backbone_features(backbone, short_side: int, device, dtype: torch.dtype | None) -> Featurizer:
    """Unit features of the backbone, one pass per frame, under ``dtype`` autocast (None: fp32),
    cells-last (h, w, C) as the vote reads them; bf16 features stay bf16 (the vote's products
    then run in bf16 too, where the CPU has bf16 instructions). Channels-last tensors take the
    CPU's faster convolution kernels."""
    backbone = backbone.to(memory_format=torch.channels_last)
    stored = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32

    @torch.inference_mode()
    def featurize(frame: np.ndarray) -> torch.Tensor:
        x = to_input(frame, short_side).to(device).contiguous(memory_format=torch.channels_last)
        with autocast(dtype, device):
            features = backbone(x)[0].float()
        return F.normalize(features, dim=0).permute(1, 2, 0).to(stored).contiguous()

    return featurize


def colour_features(short_side: int, device, stride: int = 8) -> Featurizer:
    """Each stride-8 cell's mean Lab colour (L, a, b scaled to about [-1, 1]), as a unit vector
    with a constant fourth channel so that dark cells still have a direction; cells-last."""

    def featurize(frame: np.ndarray) -> torch.Tensor:
        width, height = stride_size(frame.shape[1], frame.shape[0], short_side)
        small = cv2.resize(frame, (width // stride, height // stride), interpolation=cv2.INTER_AREA)
        lab = torch.from_numpy(cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32))
        x = torch.cat([lab / 127.5 - 1, torch.ones_like(lab[..., :1])], dim=2)
        return F.normalize(x, dim=2).to(device)

    return featurize


def propagate_step(
    target: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, cfg, tile: int = TILE
) -> torch.Tensor:
    """Soft labels (L, h, w) of ``target`` (C, h, w) from context ``keys`` (N, C, h, w) and their
    ``labels`` (N, L, h, w) (``cfg``: the ``propagate`` section): ``vote`` in the channels-first
    layout a script holds its maps in."""
    cells_last = vote(
        target.permute(1, 2, 0), keys.permute(2, 3, 0, 1), labels.permute(2, 3, 0, 1), cfg, tile
    )
    return cells_last.permute(2, 0, 1)


def vote(
    target: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, cfg, tile: int = TILE
) -> torch.Tensor:
    """Soft labels (h, w, L) of ``target`` (h, w, C) from context ``keys`` (h, w, N, C) and their
    ``labels`` (h, w, N, L): top-k affinities within the radius, softmax-weighted.

    Target cells are taken a square tile at a time, and each tile meets only the context cells
    that a cell of it can reach: the tile grown by the radius, in every context frame. That
    window is one matrix (its rows: cells, then frames), so its affinities to the tile are one
    product, in the features' precision (bf16 features: bf16 products); the cells beyond the
    radius of a target cell are masked, as the definition says. The vote itself is float32."""
    h, w, n, c = keys.shape
    reach = math.floor(cfg.radius)  # no cell farther than this in rows or columns is in reach
    out = torch.empty(h, w, labels.shape[3], device=target.device)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            rows, cols = slice(top, min(top + tile, h)), slice(left, min(left + tile, w))
            near_rows = slice(max(0, top - reach), min(h, rows.stop + reach))
            near_cols = slice(max(0, left - reach), min(w, cols.stop + reach))
            window = keys[near_rows, near_cols]  # rows x cols x N x C
            wr, wc = window.shape[:2]
            query = target[rows, cols].reshape(-1, c)  # q x C
            affinity = window.reshape(-1, c) @ query.t()  # (rows cols N) x q
            far = _beyond_radius(
                (rows.stop - top, cols.stop - left),
                (top - near_rows.start, left - near_cols.start),
                (wr, wc),
                cfg.radius,
            ).to(target.device)
            affinity.view(wr, wc, n, -1).masked_fill_(far, float("-inf"))
            best, index = affinity.topk(min(cfg.topk, len(affinity)), dim=0)  # k x q
            weight = torch.softmax(best.t().float() / cfg.temperature, dim=1)  # q x k
            value = labels[near_rows, near_cols].reshape(-1, labels.shape[3])
            voted = (weight.unsqueeze(2) * value[index.t()].float()).sum(1)  # q x L
            out[rows, cols] = voted.reshape(rows.stop - top, cols.stop - left, -1)
    return out


@functools.lru_cache(maxsize=256)
def _beyond_radius(
    tile: tuple[int, int], offset: tuple[int, int], window: tuple[int, int], radius: float
) -> torch.Tensor:
    """(window rows, window columns, 1, tile cells) True where the window cell lies beyond the
    radius of the tile cell (the 1: every context frame alike); the tile starts ``offset``
    cells into the window. Interior tiles share one geometry, hence the cache."""

    def cells(size: tuple[int, int], start: tuple[int, int]) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
        return torch.stack([ys.flatten() + start[0], xs.flatten() + start[1]], dim=1).float()

    far = torch.cdist(cells(window, (0, 0)), cells(tile, offset)) > radius
    return far.reshape(*window, 1, -1)


class ContextBank:
    """The context's features and labels in the layout ``vote`` reads (h, w, slot, ...): slot 0
    holds the first frame, the others a ring of the ``context`` most recent frames, each frame
    written once into its slot (no per-frame copy of the whole context)."""

    def __init__(self, first: torch.Tensor, labels: torch.Tensor, context: int) -> None:
        h, w = first.shape[:2]
        self.keys = first.new_empty(h, w, 1 + context, first.shape[2])
        self.labels = labels.new_empty(h, w, 1 + context, labels.shape[2])
        self.filled, self.next = 1, 1
        self.keys[:, :, 0], self.labels[:, :, 0] = first, labels

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        slots = self.keys.shape[2]
        if slots == 1:  # propagate.context 0: the first frame alone
            return
        self.keys[:, :, self.next], self.labels[:, :, self.next] = features, labels
        self.next = 1 + self.next % (slots - 1)
        self.filled = min(self.filled + 1, slots)

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[:, :, : self.filled], self.labels[:, :, : self.filled]


def one_hot(
    ids: np.ndarray, void: np.ndarray, channels: int, size: tuple[int, int]
) -> torch.Tensor:
    """(channels, h, w) label shares on the feature grid; void pixels count for no label."""
    full = torch.from_numpy(ids.astype(np.int64))
    planes = F.one_hot(full, channels).permute(2, 0, 1).float()
    planes *= torch.from_numpy(~void).float()
    return F.interpolate(planes[None], size=size, mode="area")[0]


def segment_sequence(
    featurize: Featurizer,
    frames: list[Path],
    first: tuple[np.ndarray, np.ndarray],
    cfg,
    device,
    on_frame: Callable[[int], None] = lambda t: None,
) -> list[np.ndarray]:
    """Object ids (H, W) uint8 for every frame, the first being the given annotation.

    Only the first frame's and the ``context`` most recent frames' features and labels are kept
    (``ContextBank``); each frame is decoded and featurized once.
    """
    ids, void = first
    channels = int(ids.max()) + 1
    height, width = ids.shape
    features = featurize(read_rgb(frames[0]))
    labels = one_hot(ids, void, channels, tuple(features.shape[:2])).to(device)
    bank = ContextBank(features, labels.permute(1, 2, 0), cfg.context)
    predicted = [ids.astype(np.uint8)]
    for t in range(1, len(frames)):
        target = featurize(read_rgb(frames[t]))
        labels = vote(target, *bank.context(), cfg)
        bank.add(target, labels)
        full = F.interpolate(labels.permute(2, 0, 1)[None], size=(height, width), mode="bilinear")
        predicted.append(full[0].argmax(0).byte().cpu().numpy())
        on_frame(t)
    return predicted


def write_masks(out: Path, sequence: Sequence, predicted: list[np.ndarray]) -> None:
    """Indexed PNGs with the DAVIS palette, object ids as values, named like the annotations."""
    colours = davis.palette()
    for frame, ids in zip(sequence.frames, predicted):
        image = Image.fromarray(ids)
        image.putpalette(colours)  # an L image with a palette becomes a P (indexed) image
        write_atomic(out / sequence.name / f"{frame.stem}.png", lambda fh: image.save(fh, "PNG"))


def run_propagation(
    cfg,
    root: Path,
    names: list[str] | None,
    split: Path | None,
    weights,
    out: Path,
    device: torch.device,
    console,
    pages: bool = False,
) -> Path:
    """Propagate every chosen sequence; write its masks and results.json (returned) into ``out``,
    and with ``pages`` one HTML page per sequence (masks over frames, a slider, J and F per frame).

    ``weights``: a ``pretrained.Weights`` (a checkpoint, a random init, a baseline); ``cfg``
    gives the ``propagate`` section, and ``run.seed`` seeds a random init.
    """
    from cacl_cli.progress import progress_bar

    protocol = cfg.propagate
    names = chosen_sequences(root, names, split)
    featurize, source = _featurizer(cfg, weights, protocol, device)
    scores = {}
    with progress_bar(console, "propagate") as progress:
        opened = [open_sequence(root, n, cfg.propagate.frames, protocol.labels) for n in names]
        task = progress.add_task("", total=sum(len(s.frames) for s in opened), status="")
        for sequence in opened:
            truth = sequence.truth()
            if featurize is None:  # the copy baseline
                predicted = [truth[0][0]] * len(sequence.frames)
                progress.advance(task, len(sequence.frames))
            else:
                step = lambda t: progress.advance(task)  # noqa: E731
                progress.advance(task)
                predicted = segment_sequence(
                    featurize, sequence.frames, truth[0], protocol, device, step
                )
            write_masks(out, sequence, predicted)
            scored = davis.score_sequence(predicted, truth)
            scores[sequence.name] = {
                "labels": sequence.kind,
                **scored,
                **davis.x100({k: scored[k] for k in ("J", "F", "J&F")}),
            }
            if pages:
                _write_page(sequence, predicted, truth, scored, source, out)
            jf = scores[sequence.name]["J&F_x100"]
            progress.update(task, status=f"{sequence.name} J&F {jf:.2f}")
    return _write_results(cfg, protocol, scores, source, out, console)


def _write_results(cfg, protocol, scores: dict, source: dict, out: Path, console):
    """results.json (returned) with every score and the protocol's constants, and the table."""
    from rich.table import Table

    result = {
        **overall_scores(scores),
        "sequences": scores,
        "weights": source,
        "protocol": {
            **protocol_record(protocol),
            "preset": cfg.preset.name,
            "frames": cfg.propagate.frames or "all",
            "boundary_tolerance": davis.BOUNDARY_TOLERANCE,
        },
    }
    path = out / RESULTS
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    title = f"label propagation, {source['source']} (J, F and J&F x100)"
    table = Table("sequence", "J", "F", "J&F", title=title)
    for name, s in scores.items():
        table.add_row(name, *(f"{s[k + '_x100']:.2f}" for k in ("J", "F", "J&F")))
    means = (result[f"{k}_mean_x100"] for k in ("J", "F", "J&F"))
    table.add_row("mean (objects)", *(f"{v:.2f}" for v in means))
    console.print(table)
    return path


def _write_page(sequence: Sequence, predicted, truth, scored: dict, source: dict, out: Path):
    from cacl_cli.evaluate.explorer import sequence_page

    frames = [read_rgb(p) for p in sequence.frames]
    names = [p.stem for p in sequence.frames]
    path = out / f"{sequence.name}.html"
    sequence_page(sequence.name, frames, names, predicted, truth, scored, source["source"], path)


def _featurizer(cfg, weights, protocol, device) -> tuple:
    """(frame -> features or None for copy, a description of the source) of ``weights``."""
    from cacl_cli.device import amp_dtype, precision_name
    from cacl_cli.model.backbone import through_stage
    from cacl_cli.pretrained import backbone_of

    if weights.baseline:
        if weights.baseline not in BASELINES:
            raise CaclError(f"--baseline {weights.baseline}: use one of {', '.join(BASELINES)}")
        source = {"source": weights.source}
        if weights.baseline == "copy":
            return None, source
        return colour_features(protocol.size, device), source
    torch.manual_seed(weights.seed)
    backbone, report = backbone_of(weights)
    backbone = through_stage(backbone, cfg.propagate.layer).to(device).eval()
    source = {k: v for k, v in report.items() if k != "unused"} | {"layer": cfg.propagate.layer}
    dtype = amp_dtype(cfg.run.amp, device)
    source["precision"] = precision_name(dtype)
    return backbone_features(backbone, protocol.size, device, dtype), source


def overall_scores(scores: dict) -> dict:
    """Means over every object of every sequence, as the official DAVIS-2017 code reports them:
    fractions under the plain names, the field's x100 scale under ``*_x100``."""
    objects = [o for s in scores.values() for o in s["objects"].values()]
    overall = {}
    for measure in ("J", "F"):
        for stat in ("mean", "recall", "decay"):
            overall[f"{measure}_{stat}"] = float(np.mean([o[measure][stat] for o in objects]))
    overall["J&F_mean"] = (overall["J_mean"] + overall["F_mean"]) / 2
    return {"scale": davis.SCALE, **overall, **davis.x100(overall)}
