"""Does this tree train exactly as an older commit does? Short runs of both, compared bit for bit.

For each recipe, ``cacl pretrain`` runs from this tree and from COMMIT's tree (``git archive``),
each in its own process with float32 (``run.amp=off``), and the final checkpoints are compared:
every tensor of the model (weights, batch-norm statistics, queues) and of the optimiser must be
bit-identical, and metrics.jsonl must hold the same records apart from the timing fields.

    python bench/same_training.py --against 98a6555            # tiny-world and the paper's recipe
    python bench/same_training.py --against 98a6555 --steps 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from step_harness import commit_tree  # noqa: E402

# How a step ran, not what it computed (older trees log no precision: both runs are float32).
NOT_COMPARED = ("step_time", "data_time", "images_per_s", "gpu_peak_gib", "precision")
RECIPES = {
    "tiny-world": ["--preset", "tiny-world"],
    "r18-kinetics on the world": [
        "--preset",
        "r18-kinetics",
        "--set",
        "data.path=null",
        "--set",
        "model.width=16",
        "--set",
        "data.size=64",
    ],
}
CHILD = """
import sys
sys.path.insert(0, {bench!r})
from step_harness import load_package
load_package(__import__("pathlib").Path({root!r}))
from cacl_cli import cli
sys.argv = ["cacl", "pretrain", *{argv!r}]
cli.app()
"""


def train(root: Path, recipe: list[str], out: Path, steps: int) -> None:
    argv = [
        *recipe,
        "--set",
        f"schedule.steps={steps}",
        "--set",
        "run.amp=off",
        "--set",
        "run.log_every=1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    code = CHILD.format(bench=str(ROOT / "bench"), root=str(root), argv=argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{root}: cacl pretrain failed:\n{done.stderr[-2000:]}")


def tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested checkpoint, by its path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    items = (
        state.items()
        if isinstance(state, dict)
        else enumerate(state)
        if isinstance(state, (list, tuple))
        else []
    )
    found = {}
    for key, value in items:
        found |= tensors(value, f"{prefix}/{key}")
    return found


def compare(ours: Path, theirs: Path) -> tuple[list[str], int]:
    """What differs between two run folders (empty: nothing), and how many tensors were read."""
    from cacl_cli.api import latest_checkpoint

    (_, a), (_, b) = latest_checkpoint(ours), latest_checkpoint(theirs)
    ta, tb = (
        tensors({k: a[k] for k in ("model", "optimizer")}),
        tensors({k: b[k] for k in ("model", "optimizer")}),
    )
    problems = [f"tensor {k} only in one" for k in sorted(set(ta) ^ set(tb))]
    problems += [
        f"tensor {k} differs"
        for k in sorted(set(ta) & set(tb))
        if ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k])
    ]
    records = [
        [
            {k: v for k, v in json.loads(line).items() if k not in NOT_COMPARED}
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in (ours, theirs)
    ]
    if records[0] != records[1]:
        problems.append("metrics.jsonl records differ")
    return problems, len(ta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the commit to compare with")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "tree"
        old.mkdir()
        commit_tree(ROOT, args.against, old)
        for name, recipe in RECIPES.items():
            runs = (
                Path(tmp) / f"{name}-this".replace(" ", "-"),
                Path(tmp) / f"{name}-old".replace(" ", "-"),
            )
            train(ROOT, recipe, runs[0], args.steps)
            train(old, recipe, runs[1], args.steps)
            problems, count = compare(*runs)
            verdict = "identical" if not problems else "DIFFERENT: " + "; ".join(problems[:5])
            print(
                f"{name}: {args.steps} steps, {count} model and optimiser tensors, "
                f"metrics records: {verdict}"
            )
            failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
