"""How spread out a backbone's features are inside one real frame, and object against background.

For the first frame of a few DAVIS sequences: the mean cosine similarity between all pairs of
stride-8 backbone features (a flat, "one code per image" backbone scores near 1), and the cosine
between the mean feature of the object and that of the background (lower: easier to tell apart).
Rows: random init and the last checkpoint of each method of a learning-benchmark folder.

    python bench/feature_spread.py --learning bench/out/learning --seed 0
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
from cacl_cli.data.images import read_rgb, to_input  # noqa: E402
from cacl_cli.evaluate.davis import read_annotation  # noqa: E402
from cacl_cli.evaluate.propagate import open_sequence  # noqa: E402
from cacl_cli.weights import load_backbone  # noqa: E402

SEQUENCES = ["blackswan", "camel", "cows", "dog", "goat"]


@torch.no_grad()
def spread(backbone, root: Path, names: list[str], size: int) -> tuple[float, float]:
    within, apart = [], []
    for name in names:
        sequence = open_sequence(root, name, 1, "auto")
        frame = read_rgb(sequence.frames[0])
        ids, _ = read_annotation(sequence.annotations[0], sequence.kind)
        x = F.normalize(backbone(to_input(frame, size))[0], dim=0)  # C x h x w
        mask = torch.from_numpy(ids > 0).float()[None, None]
        mask = F.interpolate(mask, size=x.shape[1:], mode="area")[0, 0].flatten() > 0.5
        cells = x.flatten(1).t()
        within.append(float((cells @ cells.t()).mean()))
        apart.append(float(F.cosine_similarity(cells[mask].mean(0), cells[~mask].mean(0), dim=0)))
    return statistics.fmean(within), statistics.fmean(apart)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, default=ROOT.parent / "shared/data/davis-2016")
    parser.add_argument("--learning", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=240)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = {"random init": None}
    for run in sorted(args.learning.glob(f"runs/*-s{args.seed}/run")):
        checkpoints = sorted((run / "checkpoints").glob("step-*.pt"))
        if checkpoints:
            rows[run.parent.name] = checkpoints[-1]
    print(f"{'backbone':28s} {'within-frame cosine':>20s} {'object-background cosine':>25s}")
    for name, checkpoint in rows.items():
        torch.manual_seed(args.seed)
        backbone, _ = load_backbone(checkpoint, "resnet18", args.width)
        within, apart = spread(backbone.eval(), args.davis, SEQUENCES, args.size)
        print(f"{name:28s} {within:20.3f} {apart:25.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
