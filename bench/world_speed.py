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

from cacl_cli.api import World  # noqa: E402


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


def loader_pairs_per_s(batches, steps: int) -> tuple[float, float]:
    """What a loader process delivers (render + crop + colour draws) and what finishing the
    colours costs on the CPU, both in pairs/s, for a warmed clip cache."""
    import torch

    for step in range(steps):  # warm the clip cache as a long run would
        batches[step]
    start = time.perf_counter()
    raw = [batches[step] for step in range(steps, 2 * steps)]
    loaded = steps * batches.batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    for batch in raw:
        batches.finish(batch, torch.device("cpu"))
    finished = steps * batches.batch_size / (time.perf_counter() - start)
    return loaded, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="seconds: checks the plumbing")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.repeats = 2, 1
    import torch

    from cacl_cli.api import build_batches, resolve, section

    torch.set_num_threads(1)
    world = World(section("world", size=args.size), cached_clips=0)
    frames = [clip_frames_per_s(world, args.clips, r * args.clips) for r in range(args.repeats)]
    pairs = [pairs_per_s(world, args.clips * 4, r) for r in range(args.repeats)]
    batches = build_batches(resolve("tiny-world", ["data.batch_size=32"]))
    steps = 2 if args.quick else 80
    loader = [loader_pairs_per_s(batches, steps) for _ in range(args.repeats)]
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
    print(
        "  tiny-world loader, warm clip cache (render, crop, colour draws): "
        f"{statistics.median(rate for rate, _ in loader):8.0f} pairs/s"
    )
    print(
        "  colour work for those pairs, batched on the CPU: "
        f"{statistics.median(f for _, f in loader):8.0f} pairs/s"
    )


if __name__ == "__main__":
    main()
