"""What DAVIS label propagation costs, this tree against an older commit's, side by side.

Both trees run ``cacl propagate`` on the same frames with the same random-init backbone (seeded),
one sequence at a time, alternating trees, each in a process of its own: total seconds, seconds
inside the affinity (``propagate_step``), frames per second and peak resident memory. Then the two
trees' masks are compared pixel by pixel and both are scored with this tree's (official) scorer,
so the J&F difference is the affinity's, not the scorer's. Every row says the precision it
resolved to (``run.amp``, default ``auto``: bf16 on a CPU with native bf16, float32 elsewhere).
``--other-precision`` adds a run of this tree in the precision the default did not resolve to
(float32 where it resolved to bf16, bf16 where float32) and its J&F against the default's.

    python bench/davis_speed.py --against 98a6555                  # first 20 frames of each
    python bench/davis_speed.py --against 98a6555 --amp off        # both trees in float32
    python bench/davis_speed.py --against 98a6555 --frames 0       # whole sequences (long)
    python bench/davis_speed.py --other-precision --frames 8 --no-against
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from step_harness import commit_tree  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "davis-2016"


def child(root: Path, argv: list[str]) -> int:
    """Run ``cacl propagate ARGV`` from the package at ``root``, timing its affinity; print one
    JSON line with the seconds."""
    from step_harness import load_package

    load_package(root)
    from cacl_cli import cli
    from cacl_cli.evaluate import propagate

    inside = {"affinity_s": 0.0, "steps": 0}
    name = "vote" if hasattr(propagate, "vote") else "propagate_step"  # older trees: the latter
    step = getattr(propagate, name)

    def timed_step(*args, **kwargs):
        tick = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            inside["affinity_s"] += time.perf_counter() - tick
            inside["steps"] += 1

    setattr(propagate, name, timed_step)
    sys.argv = ["cacl", "propagate", *argv]
    tick = time.perf_counter()
    try:
        cli.app()
    except SystemExit as stop:
        if stop.code:
            return int(stop.code)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    print(json.dumps({**inside, "total_s": time.perf_counter() - tick, "peak_mb": peak_mb}))
    return 0


def run_tree(root: Path, name: str, out: Path, args, extra: list[str]) -> dict:
    """One sequence through one tree in a fresh process: its timings and peak memory."""
    argv = [
        str(args.davis),
        "--seq",
        name,
        "--random-init",
        "--preset",
        args.preset,
        "--set",
        f"model.arch={args.arch}",
        "--set",
        f"model.width={args.width}",
        "--set",
        "run.seed=0",
        "--set",
        f"run.amp={args.amp}",
        "--frames",
        str(args.frames),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--overwrite",
        *extra,
    ]
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(root), "--", *argv],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"{root}: cacl propagate failed on {name}:\n{done.stderr[-2000:]}")
    weights = json.loads((out / "results.json").read_text())["weights"]
    timings = json.loads(done.stdout.strip().splitlines()[-1])
    return timings | {"precision": weights.get("precision", "float32")}  # older trees: float32


def masks_of(out: Path, name: str) -> list[np.ndarray]:
    from cacl_cli.api import read_index_png

    return [read_index_png(p) for p in sorted((out / name).glob("*.png"))]


def compare(out_a: Path, out_b: Path, name: str, args) -> dict:
    """Pixel agreement of two runs' masks, and each one's J&F x100 by this tree's scorer."""
    from cacl_cli.api import open_sequence, score_sequence

    truth = open_sequence(args.davis, name, args.frames, "auto").truth()
    a, b = masks_of(out_a, name), masks_of(out_b, name)
    same = sum(int((x == y).sum()) for x, y in zip(a, b))
    pixels = sum(x.size for x in a)
    jf_a, jf_b = (100 * score_sequence(m, truth)["J&F"] for m in (a, b))
    return {"agree_pct": 100 * same / pixels, "jf_a": jf_a, "jf_b": jf_b}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, default=SHARED)
    parser.add_argument("--against", default="98a6555", help="the older commit to time")
    parser.add_argument("--no-against", action="store_true", help="time this tree only")
    parser.add_argument("--preset", default="propagate-dino")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=20, help="first N frames (0: all)")
    parser.add_argument("--seq", nargs="*", help="sequences (default: every one)")
    parser.add_argument("--amp", default="auto", help="run.amp of every row: auto, bf16 or off")
    parser.add_argument(
        "--other-precision",
        action="store_true",
        help="also this tree in the precision the default did not resolve to",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "davis_speed")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the parent scores with this tree; children load their own
    from cacl_cli.api import sequences

    names = args.seq or sequences(args.davis)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": (ROOT, [])}
        if not args.no_against:
            trees[args.against] = (commit_tree(ROOT, args.against, Path(tmp)), [])
        if args.other_precision:
            other = "off" if default_precision(args) == "bfloat16" else "bf16"
            trees[f"this tree, {other}"] = (ROOT, ["--set", f"run.amp={other}"])
        report(measure(trees, names, args), names, args)
    return 0


def default_precision(args) -> str:
    """What ``--amp`` resolves to on this machine, as the rows name precisions."""
    import torch

    from cacl_cli.api import amp_dtype

    return str(amp_dtype(args.amp, torch.device("cpu")) or torch.float32).removeprefix("torch.")


def measure(trees: dict, names: list[str], args) -> dict:
    """label -> sequence -> timings; trees alternate within every sequence."""
    records: dict[str, dict] = {label: {} for label in trees}
    for name in names:
        for label, (root, extra) in trees.items():
            out = args.out / label.replace(" ", "-").replace(",", "")
            records[label][name] = run_tree(root, name, out, args, extra)
            records[label][name]["out"] = out
            print(f"{name:14s} {label:18s} {records[label][name]['total_s']:7.1f} s", flush=True)
    return records


def report(records: dict, names: list[str], args) -> None:
    frames = "all frames" if args.frames == 0 else f"the first {args.frames} frames"
    print(
        f"\ncacl propagate, {args.preset}, random-init {args.arch} width {args.width}, "
        f"{frames} of {len(names)} sequences, CPU"
    )
    print(
        f"{'tree':<18}{'precision':>10}{'total s':>9}{'affinity s':>12}{'frames/s':>10}"
        f"{'peak MB':>9}"
    )
    totals = {}
    for label, per in records.items():
        total = sum(r["total_s"] for r in per.values())
        affinity = sum(r["affinity_s"] for r in per.values())
        steps = sum(r["steps"] for r in per.values())
        peak = max(r["peak_mb"] for r in per.values())
        precision = "/".join(sorted({r["precision"] for r in per.values()}))
        totals[label] = (total, affinity)
        print(
            f"{label:<18}{precision:>10}{total:>9.1f}{affinity:>12.1f}"
            f"{(steps + len(per)) / total:>10.3f}{peak:>9.0f}"
        )
    labels = list(records)
    if args.against in records:
        old, new = totals[args.against], totals["this tree"]
        print(
            f"this tree is {old[0] / new[0]:.2f}x faster overall, the affinity "
            f"{old[1] / new[1]:.2f}x"
        )
    for other in labels[1:]:
        print(f"\nmasks of this tree against {other} (both scored by this tree's scorer, x100)")
        print(f"{'sequence':<14}{'agree %':>9}{'J&F this':>10}{'J&F other':>11}{'diff':>7}")
        rows = [
            compare(records["this tree"][n]["out"], records[other][n]["out"], n, args)
            for n in names
        ]
        for name, row in zip(names, rows):
            print(
                f"{name:<14}{row['agree_pct']:>9.3f}{row['jf_a']:>10.2f}{row['jf_b']:>11.2f}"
                f"{row['jf_b'] - row['jf_a']:>7.2f}"
            )
        agree = statistics.fmean(r["agree_pct"] for r in rows)
        mean_a = statistics.fmean(r["jf_a"] for r in rows)
        mean_b = statistics.fmean(r["jf_b"] for r in rows)
        print(f"{'mean':<14}{agree:>9.3f}{mean_a:>10.2f}{mean_b:>11.2f}{mean_b - mean_a:>7.2f}")


if __name__ == "__main__":
    sys.exit(main())
