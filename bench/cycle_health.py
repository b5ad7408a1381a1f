"""Which settings keep the cycle head alive on the built-in world (tiny-world, CPU).

For each variant, pretrain ``tiny-world`` for --steps steps and report the mean over the last
fifth of the run of: the cycle loss against its chance level (all features equal), the cycle head's
output spread (1 = spread like random unit vectors, 0 = collapsed), its cycle-back rate, and the
global head's in-batch retrieval rate (chance 1/32).
Usage: python bench/cycle_health.py [--steps 200] [--out bench/out/cycle_health]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from rich.console import Console

from cacl_cli.config import resolve
from cacl_cli.training import pretrain

VARIANTS = {
    "soft, cycle queue 4096": ["loss.soft_cycle=true", "moco.cycle_queue_size=4096"],
    "soft, cycle queue 64": ["loss.soft_cycle=true", "moco.cycle_queue_size=64"],
    "soft (target tau 0.01), queue 64": [
        "loss.soft_cycle=true",
        "loss.soft_target_tau=0.01",
        "moco.cycle_queue_size=64",
    ],
    "hard, cycle queue 4096": ["loss.soft_cycle=false", "moco.cycle_queue_size=4096"],
    "hard, cycle queue 256": ["loss.soft_cycle=false", "moco.cycle_queue_size=256"],
    "hard, cycle queue 64 (tiny-world)": ["loss.soft_cycle=false", "moco.cycle_queue_size=64"],
}


def summarise(run: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tail = records[-max(1, len(records) // 5) :]
    mean = lambda key: statistics.fmean(r[key] for r in tail)  # noqa: E731
    return {
        k: mean(k)
        for k in (
            "cycle/loss",
            "cycle/chance",
            "cycle/spread",
            "cycle/back_rate",
            "global/top1_batch",
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/out/cycle_health"))
    args = parser.parse_args()
    console = Console(stderr=True)
    rows = []
    for name, overrides in VARIANTS.items():
        run = args.out / name.split(" (")[0].replace(" ", "_").replace(",", "")
        if not (run / "metrics.jsonl").is_file():
            cfg = resolve(
                "tiny-world", overrides + [f"schedule.steps={args.steps}", "run.log_every=5"]
            )
            pretrain(cfg, run, torch.device("cpu"), console=console)
        rows.append((name, summarise(run)))
    print(f"tiny-world, {args.steps} steps, means over the last fifth of each run")
    print(
        f"{'variant':36s} {'cycle loss':>10s} {'chance':>7s} {'spread':>7s} {'back':>6s} "
        f"{'glob top1':>9s}"
    )
    for name, s in rows:
        print(
            f"{name:36s} {s['cycle/loss']:10.3f} {s['cycle/chance']:7.3f} "
            f"{s['cycle/spread']:7.3f} {s['cycle/back_rate']:6.3f} {s['global/top1_batch']:9.3f}"
        )


if __name__ == "__main__":
    main()
