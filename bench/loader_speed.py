"""The pair loader on real frames, against what one GPU consumes: cores per GPU.

Extracts the shared videos (copies, several draws each) at a 256 px short side, as JPEG files and
as tar shards, then times ``cacl pretrain``'s own loader (``build_batches`` with the
``r18-kinetics`` data settings: 224 px crops, batch 32) with 1, 2 and 4 workers: reading, decoding,
cropping and the colour draws (the work of the loader workers, whose colour work is then done on
the device), and, apart, the colour work itself on one CPU core (where there is no GPU to do it).
Reports pairs/s, pairs/s per core, and the cores one GPU needs at the H100 training rates measured
in docs/results.md. The frames sit in the page cache: a cold cluster filesystem is slower. Each
format is also timed as a copy whose manifest and index carry no frame checks (as extracted
before sizes and CRC-32s were recorded), side by side: what checking every frame read costs.
Usage: python bench/loader_speed.py [--copies 6] [--steps 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from command import cacl  # bench/ is this script's own folder
from torch.utils.data import DataLoader

from cacl_cli.api import build_batches, read_rgb, resolve, usable_cores

SHARED_VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"
# pairs/s one H100 trains on (docs/results.md, "Real training steps on the H100", the median of
# steps 10, 15 and 20): 32 / s-per-step.
GPU_PAIRS_PER_S = {"r18-kinetics": 358, "r50-in-kinetics": 239}


def extract(copies: int, root: Path) -> dict[str, Path]:
    videos = root / "videos"
    for name in ("cockatoo.mp4", "01_dog.mp4", "04_coffee.mp4", "realshort.mp4"):
        for i in range(copies):
            (videos / str(i)).mkdir(parents=True, exist_ok=True)
            shutil.copy(SHARED_VIDEOS / name, videos / str(i) / name)
    outs, settings = {}, ["--pairs-per-clip", 4, "--stride", 4, "--short-side", 256]
    extraction = {form: [videos, *settings, "--format", form] for form in ("folder", "tar")}
    for form, args in extraction.items():
        outs[form] = root / form
        cacl("extract-pairs", *args, "--out", outs[form])
    for form, args in extraction.items():
        outs[f"{form}, unchecked"] = unchecked(outs[form], root / f"{form}-unchecked", args)
    return outs


def unchecked(folder: Path, copy: Path, extraction: list) -> Path:
    """A copy of a pairs folder whose manifest and index hold no frame checks (a folder
    extracted before them): the manifest's lines without them, indexed by ``--merge``."""
    shutil.copytree(folder, copy)
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    records = [{k: v for k, v in json.loads(line).items() if k != "checks"} for line in lines[1:]]
    text = "\n".join([lines[0], *map(json.dumps, records)]) + "\n"
    (copy / "manifest.jsonl").write_text(text)
    (copy / "index.bin").unlink()
    cacl("extract-pairs", *extraction, "--merge", "--out", copy)  # the same settings: no refusal
    return copy


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def pairs_per_s(path: Path, workers: int, steps: int) -> float:
    """Batches from ``workers`` loader processes at a steady state: timed once the batches
    prefetched while the workers started are used up."""
    cfg = resolve("r18-kinetics", values={"data.path": str(path)})
    batches = build_batches(cfg)
    warm = 2 * workers + 2  # prefetch_factor 2 per worker, and the first batch's start-up
    loader = DataLoader(
        batches,
        batch_size=None,
        sampler=range(warm + steps),
        num_workers=workers,
        worker_init_fn=_one_thread,
        prefetch_factor=2,
    )
    iterator = iter(loader)
    for _ in range(warm):
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def check_cost(folder: Path, repeats: int) -> tuple[float, float]:
    """Microseconds per frame of a CRC-32 over its bytes and of reading and decoding it (what
    the loader does with each frame), best of ``repeats`` over every frame of the folder: the
    check's cost beside the work it guards."""
    import zlib

    paths = sorted(folder.glob("*/*.jpg"))
    frames = [path.read_bytes() for path in paths]
    best = {}
    for name, work, items in (("crc", zlib.crc32, frames), ("decode", read_rgb, paths)):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for item in items:
                work(item)
            times.append((time.perf_counter() - start) / len(items) * 1e6)
        best[name] = min(times)
    return best["crc"], best["decode"]


def colour_pairs_per_s(path: Path, steps: int) -> float:
    """The colour work (jitter, grey, blur) of a batch on one CPU core."""
    cfg = resolve("r18-kinetics", values={"data.path": str(path)})
    batches = build_batches(cfg)
    loaded = [batches[step] for step in range(steps)]
    torch.set_num_threads(1)
    start = time.perf_counter()
    for batch in loaded:
        batches.finish(batch, torch.device("cpu"))
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = usable_cores()
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 on 2 cores
    root = Path(tempfile.mkdtemp(prefix="loader-speed-"))
    outs = extract(args.copies, root)
    runs: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):  # every variant once per round: the machine's noise is shared
        for form, path in outs.items():
            for workers in (1, 2, 4):
                runs.setdefault((form, workers), []).append(pairs_per_s(path, workers, args.steps))
    colour = statistics.median(
        colour_pairs_per_s(outs["folder"], args.steps) for _ in range(args.repeats)
    )
    print(f"{cores} cores; median of {args.repeats}; batch 32 of 224 px crops from 256 px frames")
    print("format            workers  pairs/s  per core (read+decode+crop+draws)")
    per_core = {}
    for (form, workers), values in runs.items():
        rate = statistics.median(values)
        per_core[(form, workers)] = rate / min(workers, cores)
        print(f"{form:17s} {workers:7d}  {rate:7.0f}  {per_core[(form, workers)]:7.0f}")
    print(f"colour work on one CPU core: {colour:.0f} pairs/s")
    for form in ("folder", "tar"):
        checked, bare = (statistics.median(runs[f, 1]) for f in (form, f"{form}, unchecked"))
        print(f"{form}, one worker: {checked / bare:.3f}x the pairs/s of the unchecked copy")
    crc, decode = check_cost(outs["folder"], args.repeats)
    print(
        f"per frame: CRC-32 {crc:.1f} us, read and decode {decode:.1f} us "
        f"({100 * crc / decode:.1f} %)"
    )
    for form in ("folder", "tar"):
        device = per_core[(form, 1)]
        cpu = 1 / (1 / device + 1 / colour)
        for preset, appetite in GPU_PAIRS_PER_S.items():
            print(
                f"{form}, {preset} ({appetite} pairs/s per GPU): {appetite / device:.1f} cores "
                f"per GPU with colours on the GPU, {appetite / cpu:.1f} with colours on the "
                f"CPU"
            )
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
