"""Does cross-frame matching survive independent pixel-shuffle rolls at larger inputs?

For each input size and roll scheme, a random-init tiny-world model (or the encoders of a
checkpoint, --checkpoint) is run on frame pairs of the built-in world whose true correspondence is
known, and the ``truth/*`` signals are reported: eq. 4's (argmax) positives and the cycle's
first jumps within one cell of the true point ("near"; a random cell scores about 9/HW), first
jumps on the roll offset, and the backbone's own matching without rolls.

    python bench/roll_matching.py                   # 64, 128 and 224 px; seeds 0 and 1
    python bench/roll_matching.py --sizes 64 --pairs 4 --seeds 0   # seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cacl_cli.api import (  # noqa: E402
    World,
    correspondence_pairs,
    load_checkpoint,  # noqa: E402
    model_from_config,  # noqa: E402
    normalise_batch,  # noqa: E402
    resolve,  # noqa: E402
    truth_health,  # noqa: E402
)

KEYS = {
    "truth/pixel_positive_near": "P+ near",
    "truth/cycle_jump_near": "jump near",
    "truth/cycle_jump_roll_offset": "on roll",
    "truth/backbone_match_near": "backbone near",
}


def measure(size: int, shuffle: str, seed: int, pairs: int, checkpoint: Path | None) -> dict:
    overrides = [f"data.size={size}", f"world.size={size + size // 4}"]
    # eq. 4's argmax rule, whatever tiny-world ships: the question is whether it finds the point
    overrides += [f"model.pixel_shuffle={shuffle}", "loss.pixel_positive=global"]
    cfg = resolve("tiny-world", overrides)
    torch.manual_seed(seed)
    model = model_from_config(cfg)
    if checkpoint is not None:
        model.load_state_dict(load_checkpoint(checkpoint)["model"])
    world = World(cfg.world)
    v, v_plus, truth = correspondence_pairs(world, pairs, cfg.data.stride, size, 8, seed=seed)
    truth = torch.from_numpy(truth)
    return truth_health(model, normalise_batch(v), normalise_batch(v_plus), truth, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--checkpoint", type=Path, help="a tiny-world checkpoint (default: init)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    header = " ".join(f"{h:>13s}" for h in KEYS.values())
    print(f"{'size':>4s} {'rolls':12s} {'chance':>6s} {header}")
    for size in args.sizes:
        chance = 9 / (size // 8) ** 2
        for shuffle in ("independent", "shared", "off"):
            runs = [measure(size, shuffle, s, args.pairs, args.checkpoint) for s in args.seeds]
            means = [statistics.fmean(r[k] for r in runs) for k in KEYS]
            print(f"{size:4d} {shuffle:12s} {chance:6.3f} " + " ".join(f"{m:13.3f}" for m in means))
    return 0


if __name__ == "__main__":
    sys.exit(main())
