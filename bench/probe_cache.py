"""What the probe's feature cache saves: epoch times with and without it, side by side.

Trains the linear probe on the built-in world's labelled frames from a random-init backbone (the
cost does not depend on the weights) with ``eval.cache`` memory and off, and prints the median
epoch time of each (the cached run's first epoch, which fills the cache, reported apart), their
ratio, and one backbone pass over the training images for reference.
Usage: python bench/probe_cache.py [--width 32] [--images 200] [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from rich.console import Console

from cacl_cli.api import load_backbone, open_splits, prepare, resolve, train_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    cfg = resolve(
        "probe-world",
        [
            f"model.width={args.width}",
            f"schedule.epochs={args.epochs}",
            f"eval.world_train_images={args.images}",
        ],
    )
    train, _ = open_splits(cfg.eval, cfg.world, None)
    device = torch.device("cpu")
    backbone, _ = load_backbone(None, "resnet18", args.width)
    backbone.eval()
    quiet = Console(quiet=True)
    times = {}
    for mode in ("memory", "off"):
        run_cfg = resolve(
            "probe-world",
            [
                f"model.width={args.width}",
                f"schedule.epochs={args.epochs}",
                f"eval.world_train_images={args.images}",
                f"eval.cache={mode}",
            ],
        )
        with TemporaryDirectory() as tmp:
            _, facts = train_probe(run_cfg, backbone, train, Path(tmp), device, quiet)
        times[mode] = facts["epoch_seconds"]
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(len(train)):
            backbone(prepare(*train[i], 0)[0].unsqueeze(0))
    one_pass = time.perf_counter() - start
    cached, uncached = statistics.median(times["memory"][1:]), statistics.median(times["off"])
    print(
        f"probe, built-in world, {args.images} images of {cfg.world.size}px, resnet18 width "
        f"{args.width}, CPU threads {torch.get_num_threads()}, {args.epochs} epochs each"
    )
    print(f"  uncached epoch (median):             {uncached:7.3f} s")
    print(f"  cached epoch after the first (median): {cached:7.3f} s")
    print(f"  first cached epoch (fills the cache):  {times['memory'][0]:7.3f} s")
    print(f"  one backbone pass over the images:     {one_pass:7.3f} s")
    print(f"  speed-up of cached epochs: {uncached / cached:.1f}x")


if __name__ == "__main__":
    main()
