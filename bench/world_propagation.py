"""Label propagation on the built-in world: DAVIS's protocol where the truth is known.

Writes held-out clips of the world in DAVIS-2017's layout (`cacl world --davis-clips`: one mask
id per object instance, every frame annotated), then runs `cacl propagate` on them from the last
checkpoint of every run in one or more learning-benchmark folders, from random init, and with
the copy baseline. It separates two reasons a backbone can propagate real video badly: the
world-to-real gap (then it propagates the world well) and features that do not hold an object
together (then it propagates the world badly too).

    python bench/world_propagation.py --learning bench/out/learning
    python bench/world_propagation.py --learning A B --seeds 0 1 2 --clips 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from command import cacl  # noqa: E402


def propagate(davis: Path, out: Path, how: list[str], args: argparse.Namespace) -> float:
    """J&F x100 of one backbone (``how``: the propagate flags that pick it) on ``davis``."""
    overrides = [arg for item in args.propagate_set for arg in ("--set", item)]
    cacl(
        "propagate",
        davis,
        *how,
        "--preset",
        "propagate-cpu",
        *overrides,
        "--size",
        args.size,
        "--frames",
        args.frames,
        "--device",
        "cpu",
        "--out",
        out,
    )
    return json.loads((out / "results.json").read_text())["J&F_mean_x100"]


def runs(folders: list[Path], seeds: list[int]) -> dict[str, dict[int, Path]]:
    """Row name -> seed -> run folder, for every method with a checkpoint at a wanted seed."""
    rows: dict[str, dict[int, Path]] = {}
    for folder in folders:
        for seed in seeds:
            for run in sorted(folder.glob(f"runs/*-s{seed}/run")):
                if not list((run / "checkpoints").glob("step-*.pt")):
                    continue
                method = run.parent.name.removesuffix(f"-s{seed}")
                name = f"{folder.name}/{method}" if len(folders) > 1 else method
                rows.setdefault(name, {})[seed] = run
    return rows


def summary(scores: dict[int, float]) -> str:
    values = [scores[s] for s in sorted(scores)]
    each = ", ".join(f"{v:.2f}" for v in values)
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{each:24s} {statistics.mean(values):6.2f}{spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learning", type=Path, nargs="*", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clips", type=int, default=20, help="held-out world clips")
    parser.add_argument("--size", type=int, default=128, help="short side fed to the backbone")
    parser.add_argument("--frames", type=int, default=0, help="first N frames (0: all)")
    parser.add_argument("--preset", default="tiny-world", help="its world section draws the clips")
    parser.add_argument("--width", type=int, default=16, help="random init's width")
    parser.add_argument(
        "--propagate-set", action="append", default=[], help="cacl propagate override"
    )
    parser.add_argument("--quick", action="store_true", help="2 clips of 4 frames: seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.frames = 2, 4
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cacl(
            "world",
            work / "world",
            "--clips",
            0,
            "--train-images",
            0,
            "--val-images",
            0,
            "--davis-clips",
            args.clips,
            "--preset",
            args.preset,
        )
        davis = work / "world" / "davis"
        table = {
            "copy baseline": {0: propagate(davis, work / "copy", ["--baseline", "copy"], args)}
        }
        table["random init"] = {
            s: propagate(
                davis,
                work / f"random-{s}",
                ["--random-init", "--width", args.width, "--seed", s],
                args,
            )
            for s in args.seeds
        }
        for name, by_seed in runs(args.learning, args.seeds).items():
            table[name] = {
                s: propagate(
                    davis, work / f"{name.replace('/', '_')}-{s}", ["--checkpoint", run], args
                )
                for s, run in by_seed.items()
            }
    changed = f" with {', '.join(args.propagate_set)}" if args.propagate_set else ""
    print(
        f"world propagation: {args.clips} held-out clips of '{args.preset}', "
        f"propagate-cpu at {args.size} px{changed}; J&F x100 per seed, mean ± std"
    )
    for name, scores in table.items():
        print(f"{name:40s} {summary(scores)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
