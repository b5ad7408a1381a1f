"""Which settings keep the cycle head alive on the built-in world (tiny-world, CPU).

For each variant, pretrain ``tiny-world`` for --steps steps and report the mean over the last
fifth of the run of: the cycle loss against its chance level (all features equal), the cycle head's
output spread (1 = spread like random unit vectors, 0 = collapsed), its cycle-back rate, the
global head's in-batch retrieval rate (chance 1/32), and, against the world's ground truth, where
the cycle's first jumps land: near the true point (chance about 0.12) or on the roll offset, the
place a code of the padding sends them (chance 1/64).
Usage: python bench/cycle_health.py [--steps 200] [--out bench/out/cycle_health]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from rich.console import Console

from cacl_cli.api import RunFolder, pretrain, resolve

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
    "hard, cycle queue 64": ["loss.soft_cycle=false", "moco.cycle_queue_size=64"],
    "hard, queue 64, rerolled return": [
        "loss.soft_cycle=false",
        "moco.cycle_queue_size=64",
        "loss.cycle_return=reroll",
    ],
    "hard, queue 1024, rerolled return": [
        "loss.soft_cycle=false",
        "moco.cycle_queue_size=1024",
        "loss.cycle_return=reroll",
    ],
}
COLUMNS = {  # metrics.jsonl key -> (header, width)
    "cycle/loss": ("cycle loss", 10),
    "cycle/chance": ("chance", 7),
    "cycle/spread": ("spread", 7),
    "cycle/back_rate": ("back", 6),
    "global/top1_batch": ("glob top1", 9),
    "truth/cycle_jump_near": ("jump near", 9),
    "truth/cycle_jump_roll_offset": ("on roll", 7),
}


def summarise(run: Path) -> dict[str, float]:
    records = [json.loads(line) for line in RunFolder(run).metrics.read_text().splitlines()]
    tail = records[-max(1, len(records) // 5) :]
    mean = lambda key: statistics.fmean(r[key] for r in tail)  # noqa: E731
    return {k: mean(k) for k in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/out/cycle_health"))
    args = parser.parse_args()
    console = Console(stderr=True)
    rows = []
    for name, overrides in VARIANTS.items():
        run = args.out / name.split(" (")[0].replace(" ", "_").replace(",", "")
        if not RunFolder(run).metrics.is_file():
            cfg = resolve(
                "tiny-world", overrides + [f"schedule.steps={args.steps}", "run.log_every=5"]
            )
            pretrain(cfg, run, torch.device("cpu"), console=console)
        rows.append((name, summarise(run)))
    print(f"tiny-world, {args.steps} steps, means over the last fifth of each run")
    print(f"{'variant':36s} " + " ".join(f"{h:>{w}s}" for h, w in COLUMNS.values()))
    for name, s in rows:
        print(f"{name:36s} " + " ".join(f"{s[k]:{w}.3f}" for k, (_, w) in COLUMNS.items()))


if __name__ == "__main__":
    main()
