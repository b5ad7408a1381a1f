"""What the probe's feature cache saves: epoch times with and without it, side by side.

Runs ``cacl probe --preset probe-world --random-init`` (the cost does not depend on the weights)
with ``eval.cache`` memory and off, and prints the median epoch time of each from the runs'
``results.json`` (the cached run's first epoch, which fills the cache with one backbone pass
over the images, reported apart) and their ratio.
Usage: python bench/probe_cache.py [--width 32] [--images 200] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from tempfile import TemporaryDirectory

from command import cacl  # bench/ is this script's own folder


def epoch_seconds(args: argparse.Namespace, cache: str, out: Path) -> list[float]:
    settings = {
        "schedule.epochs": args.epochs,
        "eval.world_train_images": args.images,
        "eval.cache": cache,
    }
    sets = [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]
    width = ["--random-init", "--width", args.width]
    cacl("probe", "--preset", "probe-world", *width, *sets, "--out", out)
    return json.loads((out / "results.json").read_text())["epoch_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        times = {mode: epoch_seconds(args, mode, Path(tmp) / mode) for mode in ("memory", "off")}
    cached, uncached = statistics.median(times["memory"][1:]), statistics.median(times["off"])
    print(
        f"probe, built-in world (probe-world), {args.images} images, resnet18 width {args.width}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.epochs} epochs each"
    )
    print(f"  uncached epoch (median):               {uncached:7.3f} s")
    print(f"  cached epoch after the first (median): {cached:7.3f} s")
    print(f"  first cached epoch (fills the cache):  {times['memory'][0]:7.3f} s")
    print(f"  speed-up of cached epochs: {uncached / cached:.1f}x")


if __name__ == "__main__":
    main()
