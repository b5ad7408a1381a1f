"""What a CACL training step costs against its floor and against a MoCo-v2 step, side by side.

The floor is the work no method can skip: the online backbone's forward and backward plus the
momentum backbone's forward, on the same batch. MoCo-v2 adds the global head and its loss, two
heads the pixel head, CACL the cycle head. Each variant's arithmetic is counted once with
``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions, forward and
backward, the momentum encoder's forward included), and the headline figure is the **efficiency
ratio**: (time / FLOPs of the variant) / (time / FLOPs of the floor). 1.0 means the heads and
losses run exactly as efficiently as the backbone; above 1 they waste time on work that is not
arithmetic (memory traffic, small kernels, Python). On CUDA the achieved FLOP/s is also given as
a share of the card's bf16 matrix-multiply rate, measured here with one large matmul (MFU).

Each variant runs ``--steps`` steps per repeat, the variants interleaved in every repeat so that
machine noise hits them alike; the table gives medians over ``--repeats`` and the ratios of the
medians. Batches are random tensors already on the device, so data loading is not measured
(bench/world_speed.py measures it). The LARS update, the same for every method, is timed apart.
On CUDA the peak memory of each variant is reported, and the cycle head's memory budget
(loss.cycle_memory_mb) is measured against none.

    python bench/step_speed.py                                   # tiny-world on the CPU
    python bench/step_speed.py --preset r18-kinetics --device cuda --amp auto
    python bench/step_speed.py --quick                           # seconds, for the test suite
    python bench/step_speed.py --against 9f6ae41                 # and against an older commit
    python bench/step_speed.py --amp bf16 --amp-against off      # bf16 against float32

``--against COMMIT`` also times the floor and the CACL step of this tree and of COMMIT's tree
(``git archive``), alternating the two in every repeat (``bench/step_harness.py``), each with its
own version of the preset; ``--set`` applies to this tree, ``--against-set`` to COMMIT's.

``--amp-against MODE`` also times the floor, MoCo-v2 and CACL steps in MODE's precision, each
interleaved with its ``--amp`` twin in every repeat, and prints the speed-up of ``--amp``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ledger import cpu_model_and_flags  # noqa: E402 - bench/ is this script's own folder
from step_harness import commit_tree  # noqa: E402 - bench/ is this script's own folder

from cacl_cli.api import (  # noqa: E402  # noqa: E402
    LARS,
    amp_dtype,
    autocast,
    lars_param_groups,
    model_from_config,  # noqa: E402
    resolve,  # noqa: E402
    reuse_freed_memory,  # noqa: E402
    usable_cores,
)

GLOBAL_ONLY = ["heads.pixel=false", "heads.cycle=false"]
NO_CYCLE = ["heads.cycle=false"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variants(cfg_for, device, dtype, batch) -> dict[str, Callable[[], None]]:
    """name -> one training step (forward and backward) of that variant."""
    v, v_plus = batch
    cacl = model_from_config(cfg_for([])).to(device).train()
    moco = model_from_config(cfg_for(GLOBAL_ONLY)).to(device).train()
    two = model_from_config(cfg_for(NO_CYCLE)).to(device).train()

    def floor() -> None:
        with autocast(dtype, device):
            loss = cacl.online.backbone(v).float().mean()
            with torch.no_grad():
                cacl.momentum_encoder.backbone(v_plus)
        loss.backward()

    def step(model) -> Callable[[], None]:
        def run() -> None:
            model.momentum_update()  # the loop's, once a step
            with autocast(dtype, device):
                out = model(v, v_plus, diagnose=False)
            out.loss.backward()

        return run

    optimizer = LARS(lars_param_groups(cacl), lr=0.1)
    return {
        "floor": floor,
        "MoCo-v2": step(moco),
        "two heads": step(two),
        "CACL": step(cacl),
        "LARS": optimizer.step,
    }


class OpCounter(TorchDispatchMode):
    """Counts the aten operators a call dispatches, forward and backward: on a GPU each is at
    least one kernel launch, so this is what makes small steps launch-bound."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def count_work(run: Callable[[], None]) -> tuple[int, int]:
    """Matrix-product and convolution FLOPs, and aten operators, of one call."""
    with FlopCounterMode(display=False) as counter, OpCounter() as ops:
        run()
    return counter.get_total_flops(), ops.ops


def matmul_rate(device: torch.device, dtype: torch.dtype | None, size: int = 8192) -> float:
    """FLOP/s of one large square matrix product in ``dtype``: the card's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    b = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    a @ b
    sync(device)
    tick = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * size**3 / (time.perf_counter() - tick)


def measure(runs: dict, steps: int, repeats: int, device: torch.device) -> dict[str, dict]:
    times = {name: [] for name in runs}
    peaks = {}
    for name, run in runs.items():  # warm-up, and each variant's peak memory on its own
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run()
        run()
        sync(device)
        if device.type == "cuda":
            peaks[name] = torch.cuda.max_memory_allocated(device) / 2**30
    for _ in range(repeats):
        for name, run in runs.items():
            sync(device)
            tick = time.perf_counter()
            for _ in range(steps):
                run()
            sync(device)
            times[name].append((time.perf_counter() - tick) / steps)
    return {
        name: {"median_s": statistics.median(t), "runs": t, "peak_gib": peaks.get(name)}
        for name, t in times.items()
    }


def cycle_memory(cfg_for, device, dtype, batch, budget_mb: float) -> dict[str, float]:
    """Peak GiB of a CACL step with no cycle memory budget and with ``budget_mb``."""
    out = {}
    for label, mb in (("no budget", 0), (f"{budget_mb:g} MB budget", budget_mb)):
        model = model_from_config(cfg_for([f"loss.cycle_memory_mb={mb}"])).to(device).train()
        torch.cuda.reset_peak_memory_stats(device)
        with autocast(dtype, device):
            loss = model(*batch, diagnose=False).loss
        loss.backward()
        sync(device)
        out[label] = torch.cuda.max_memory_allocated(device) / 2**30
        del model, loss
        torch.cuda.empty_cache()
    return out


def versus_amp(cfg_for, device, batch, modes: tuple[str, str], steps: int, repeats: int) -> None:
    """The floor, MoCo-v2 and CACL steps in two precisions, interleaved in every repeat."""
    dtypes = [amp_dtype(mode, device) for mode in modes]
    names = [str(d or torch.float32).removeprefix("torch.") for d in dtypes]
    if dtypes[0] == dtypes[1]:
        print(
            f"\n--amp {modes[0]} and --amp-against {modes[1]} both resolve to {names[0]} here: "
            "nothing to compare"
        )
        return
    runs = {}
    for dtype, name in zip(dtypes, names):
        torch.manual_seed(0)  # the same weights in both precisions
        steps_of = variants(cfg_for, device, dtype, batch)
        runs |= {(variant, name): steps_of[variant] for variant in ("floor", "MoCo-v2", "CACL")}
    results = measure(runs, steps, repeats, device)
    print(
        f"\n{names[0]} against {names[1]} (median of {repeats} interleaved repeats x {steps} steps)"
    )
    print(f"{'variant':<11}{names[1] + ' s':>12}{names[0] + ' s':>12}{'speed-up':>10}")
    for variant in ("floor", "MoCo-v2", "CACL"):
        slow, fast = (results[variant, name]["median_s"] for name in (names[1], names[0]))
        print(f"{variant:<11}{slow:>12.4f}{fast:>12.4f}{slow / fast:>9.2f}x")


def harness(root: Path, preset: str, sets: list[str], steps: int) -> dict:
    command = [sys.executable, str(ROOT / "bench" / "step_harness.py"), "--root", str(root)]
    command += ["--preset", preset, "--steps", str(steps)]
    command += [arg for item in sets for arg in ("--set", item)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{root}: the step harness failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def against(commit: str, args) -> None:
    """Floor and CACL step of this tree and of ``commit``'s, alternating in every repeat."""
    with tempfile.TemporaryDirectory() as tmp:
        commit_tree(ROOT, commit, Path(tmp))
        trees = {"this tree": (ROOT, args.set), commit: (Path(tmp), args.against_set)}
        runs = {label: [] for label in trees}
        for _ in range(args.repeats):
            for label, (root, sets) in trees.items():
                runs[label].append(harness(root, args.preset, sets, args.steps))
    print(
        f"\nthis tree against {commit} ({args.preset}, each tree's own preset; median of "
        f"{args.repeats} alternating repeats x {args.steps} steps)"
    )
    print(f"{'tree':<11}{'floor s':>9}{'CACL s':>9}{'time x':>8}{'FLOPs x':>9}{'effic.':>8}")
    medians = {}
    for label, records in runs.items():
        floor, cacl = (
            statistics.median(r[name]["s_per_step"] for r in records) for name in ("floor", "CACL")
        )
        flops = records[0]["CACL"]["flops"] / records[0]["floor"]["flops"]
        medians[label] = cacl
        print(
            f"{label:<11}{floor:>9.4f}{cacl:>9.4f}{cacl / floor:>7.2f}x{flops:>8.2f}x"
            f"{cacl / floor / flops:>8.2f}"
        )
    print(f"CACL step: {medians[commit] / medians['this tree']:.2f}x faster than at {commit}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny-world")
    parser.add_argument("--set", action="append", default=[], help="override a preset key")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="auto", help="auto, bf16, fp16 (CUDA) or off")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cycle-budget-mb", type=float, default=256.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--amp-against", metavar="MODE", help="also time the steps in MODE")
    parser.add_argument("--against", metavar="COMMIT", help="also time COMMIT's CACL step")
    parser.add_argument("--against-set", action="append", default=[], help="override for COMMIT")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 1, 2
        args.set = ["model.width=8", "data.size=32", "data.batch_size=8"] + args.set
        args.set += ["moco.queue_size=64", "moco.cycle_queue_size=16", "moco.pixels_per_image=2"]
        args.against_set = args.set + args.against_set
    reuse_freed_memory()  # as the cacl command does
    device = torch.device(args.device)
    dtype = amp_dtype(args.amp, device)
    cfg_for = lambda extra: resolve(args.preset, args.set + extra)  # noqa: E731
    cfg = cfg_for([])
    torch.manual_seed(0)
    shape = (cfg.data.batch_size, 3, cfg.data.size, cfg.data.size)
    batch = (torch.randn(shape, device=device), torch.randn(shape, device=device))
    runs = variants(cfg_for, device, dtype, batch)
    work = {name: count_work(run) for name, run in runs.items()}
    flops = {name: flop for name, (flop, _) in work.items() if name != "LARS"}
    results = measure(runs, args.steps, args.repeats, device)
    peak_rate = matmul_rate(device, dtype) if device.type == "cuda" else None

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU used"
    model, flags = cpu_model_and_flags()
    print(
        f"machine: {platform.machine()} {model} ({', '.join(flags) or 'no listed flags'}), "
        f"{usable_cores()} cores, {gpu}; torch {torch.__version__}; threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"preset {args.preset} {' '.join(args.set)}: {cfg.model.arch} width {cfg.model.width}, "
        f"batch {cfg.data.batch_size} x {cfg.data.size} px, amp {dtype or 'off'}, "
        f"median of {args.repeats} repeats x {args.steps} steps"
    )
    floor = results["floor"]["median_s"]
    head = f"{'variant':<11}{'s/step':>9}{'vs floor':>9}{'GFLOP':>9}{'GFLOP/s':>9}{'effic.':>8}"
    print(head + f"{'MFU':>7}{'peak GiB':>9}{'ops':>7}")
    for name, r in results.items():
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        line = f"{name:<11}{r['median_s']:>9.4f}{r['median_s'] / floor:>8.2f}x"
        if name in flops:
            rate = flops[name] / r["median_s"]
            ratio = (r["median_s"] / flops[name]) / (floor / flops["floor"])
            mfu = f"{100 * rate / peak_rate:.1f}%" if peak_rate else "-"
            line += f"{flops[name] / 1e9:>9.2f}{rate / 1e9:>9.1f}{ratio:>8.2f}{mfu:>7}"
        else:
            line += f"{'-':>9}{'-':>9}{'-':>8}{'-':>7}"
        print(line + f"{peak:>9}{work[name][1]:>7}")
    cacl, moco = results["CACL"]["median_s"], results["MoCo-v2"]["median_s"]
    efficiency = (cacl / flops["CACL"]) / (floor / flops["floor"])
    print(
        f"CACL vs MoCo-v2: {cacl / moco:.2f}x the time; CACL vs floor: {cacl / floor:.2f}x the "
        f"time for {flops['CACL'] / flops['floor']:.2f}x the FLOPs; efficiency ratio "
        f"{efficiency:.2f} (1.0: the heads run as efficiently as the backbone)"
    )
    if peak_rate:
        print(f"measured {dtype or torch.float32} matmul rate: {peak_rate / 1e12:.1f} TFLOP/s")
    if device.type == "cuda":
        for label, gib in cycle_memory(cfg_for, device, dtype, batch, args.cycle_budget_mb).items():
            print(f"CACL step peak memory, cycle head with {label}: {gib:.2f} GiB")
    if args.amp_against:
        versus_amp(cfg_for, device, batch, (args.amp, args.amp_against), args.steps, args.repeats)
    if args.against:
        against(args.against, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
