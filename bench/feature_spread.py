"""How spread out a backbone's features are inside one real frame, and object against background.

For the first frame of DAVIS sequences: the mean cosine similarity between all pairs of stride-8
backbone features (a flat, "one code per image" backbone scores near 1), the cosine between the
mean feature of the object and that of the background (lower: easier to tell apart), the mean
cosine between horizontally neighbouring cells (how smooth the map is at the scale label
propagation votes over), and a one-step propagation: each cell of frame 5 takes the object or
background label of its most similar cell in frame 0 (balanced accuracy; 0.5 is chance).
Rows: random init and the last checkpoint of each method of one or more learning-benchmark folders.

    python bench/feature_spread.py --learning bench/out/learning --seed 0
    python bench/feature_spread.py --learning A B --seed 0 --sequences all
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cacl_cli.api import (  # noqa: E402  # noqa: E402
    RunFolder,
    load_backbone,
    open_sequence,  # noqa: E402
    read_annotation,  # noqa: E402
    read_rgb,
    to_input,
)

SEQUENCES = ["blackswan", "camel", "cows", "dog", "goat"]


LATER = 5  # the frame that the one-step propagation labels


def features_and_mask(backbone, sequence, index: int, size: int):
    """Unit features (C, h, w) of one frame and its object mask at their resolution (h*w,)."""
    x = F.normalize(backbone(to_input(read_rgb(sequence.frames[index]), size))[0], dim=0)
    ids, _ = read_annotation(sequence.annotations[index], sequence.kind)
    mask = torch.from_numpy(ids > 0).float()[None, None]
    return x, F.interpolate(mask, size=x.shape[1:], mode="area")[0, 0].flatten() > 0.5


def nearest_label_accuracy(first, first_mask, later, later_mask) -> float:
    """Balanced accuracy of labelling each later cell by its most similar first-frame cell."""
    guess = first_mask[(later.flatten(1).t() @ first.flatten(1)).argmax(dim=1)]
    hits = [(guess[later_mask]).float().mean(), (~guess[~later_mask]).float().mean()]
    return float(sum(hits) / 2)


@torch.no_grad()
def spread(backbone, root: Path, names: list[str], size: int) -> dict[str, float]:
    rows = []
    for name in names:
        sequence = open_sequence(root, name, LATER + 1, "auto")
        x, mask = features_and_mask(backbone, sequence, 0, size)
        later, later_mask = features_and_mask(backbone, sequence, LATER, size)
        cells = x.flatten(1).t()
        rows.append(
            {
                "within": float((cells @ cells.t()).mean()),
                "apart": float(
                    F.cosine_similarity(cells[mask].mean(0), cells[~mask].mean(0), dim=0)
                ),
                "neighbour": float((x[:, :, 1:] * x[:, :, :-1]).sum(0).mean()),
                "one_step": nearest_label_accuracy(x, mask, later, later_mask),
            }
        )
    return {key: statistics.fmean(row[key] for row in rows) for key in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, default=ROOT.parent / "shared/data/davis-2016")
    parser.add_argument("--learning", type=Path, nargs="+", required=True)
    parser.add_argument("--sequences", nargs="+", default=SEQUENCES, help="names, or: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=240)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = args.sequences
    if names == ["all"]:
        names = sorted(p.name for p in (args.davis / "JPEGImages" / "480p").iterdir())
    rows = {"random init": None}
    for folder in args.learning:
        for run in sorted(folder.glob(f"runs/*-s{args.seed}/run")):
            checkpoints = RunFolder(run).checkpoint_files()
            if checkpoints:  # several folders may hold runs of one name: then name the folder
                several = len(args.learning) > 1
                rows[f"{folder.name}/{run.parent.name}" if several else run.parent.name] = (
                    checkpoints[-1]
                )
    print(f"{len(names)} sequences; one-step propagation: frame 0 -> frame {LATER}")
    print(
        f"{'backbone':34s} {'within-frame':>13s} {'object-bg':>10s} {'neighbour':>10s}"
        f" {'one-step':>9s}"
    )
    for name, checkpoint in rows.items():
        torch.manual_seed(args.seed)
        backbone, _ = load_backbone(checkpoint, "resnet18", args.width)
        r = spread(backbone.eval(), args.davis, names, args.size)
        print(
            f"{name:34s} {r['within']:13.3f} {r['apart']:10.3f} {r['neighbour']:10.3f}"
            f" {r['one_step']:9.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
