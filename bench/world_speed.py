"""How fast the built-in world renders, on one core.

Target: at least 500 frames/s of 96x96 (the world must never bottleneck training).
Usage: python bench/world_speed.py [--size 96] [--clips 40] [--repeats 5]
Prints the median over repeats of: whole clips rendered frame by frame (frames/s, clip set-up
included), and training pairs sampled the way pretraining does (one new clip per pair).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from cacl_cli.data.world import World, WorldConfig  # noqa: E402


def clip_frames_per_s(world: World, clips: int, offset: int) -> float:
    start = time.perf_counter()
    for i in range(clips):
        clip = world.clip(offset + i)
        for t in range(world.cfg.frames):
            clip.frame(t)
    return clips * world.cfg.frames / (time.perf_counter() - start)


def pairs_per_s(world: World, pairs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(pairs):
        world.pair(rng, 8)
    return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    world = World(WorldConfig(size=args.size))
    frames = [clip_frames_per_s(world, args.clips, r * args.clips) for r in range(args.repeats)]
    pairs = [pairs_per_s(world, args.clips * 4, r) for r in range(args.repeats)]
    print(
        f"world {args.size}x{args.size}, {world.cfg.frames} frames/clip, one core, "
        f"median of {args.repeats} repeats"
    )
    print(
        f"  clips rendered frame by frame: {statistics.median(frames):8.0f} frames/s "
        f"(min {min(frames):.0f}, max {max(frames):.0f}); target >= 500"
    )
    print(
        f"  training pairs (new clip each): {statistics.median(pairs):8.0f} pairs/s "
        f"= {2 * statistics.median(pairs):.0f} frames/s"
    )


if __name__ == "__main__":
    main()
