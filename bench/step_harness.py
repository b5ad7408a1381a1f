"""Time the floor and the CACL step of one source tree: the CACL package found at ``--root``.

``bench/step_speed.py --against COMMIT`` runs this once per repeat for this tree and for a
checkout of COMMIT in turn, so an old and a new step are measured side by side on one machine.
It only needs what every version of the package has: ``config.resolve`` and a model builder.
Prints one JSON line: seconds per step of each repeat's steps, and the FLOPs of one step.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


def commit_tree(repo: Path, commit: str, into: Path) -> Path:
    """COMMIT's tracked files extracted into ``into`` (``git archive``); exits on a bad commit."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], capture_output=True)
    if archive.returncode:
        sys.exit(f"--against {commit}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def load_package(root: Path):
    """Import ``root``'s cacl_cli, with ``root/presets`` as its shipped presets."""
    sys.path.insert(0, str(root))
    import cacl_cli  # noqa: F401 - the package itself, before its presets

    spec = importlib.util.spec_from_file_location(
        "cacl_cli.presets",
        root / "presets" / "__init__.py",
        submodule_search_locations=[str(root / "presets")],
    )
    presets = importlib.util.module_from_spec(spec)
    sys.modules["cacl_cli.presets"] = presets
    spec.loader.exec_module(presets)
    from cacl_cli.config import resolve

    try:  # what the cacl command does at start, where this tree does it
        from cacl_cli.memory import reuse_freed_memory

        reuse_freed_memory()
    except ImportError:
        pass
    try:
        from cacl_cli.model.build import model_from_config as build
    except ImportError:  # older trees built the model in model/cacl.py
        from cacl_cli.model.cacl import build_model as build
    return resolve, build


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--preset", default="tiny-world")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    resolve, build = load_package(args.root.resolve())
    cfg = resolve(args.preset, args.set)
    torch.manual_seed(0)
    model = build(cfg).train()
    shape = (cfg.data.batch_size, 3, cfg.data.size, cfg.data.size)
    v, v_plus = torch.randn(shape), torch.randn(shape)

    def floor() -> None:
        loss = model.online.backbone(v).mean()
        with torch.no_grad():
            model.momentum_encoder.backbone(v_plus)
        loss.backward()

    # Older trees update the momentum encoder inside forward; later ones leave it to the loop.
    updates_inside = "update_momentum" in inspect.signature(model.forward).parameters

    def cacl() -> None:
        if not updates_inside:
            model.momentum_update()
        model(v, v_plus, diagnose=False).loss.backward()

    out = {}
    for name, run in (("floor", floor), ("CACL", cacl)):
        with FlopCounterMode(display=False) as counter:
            run()
        run()  # warm-up
        tick = time.perf_counter()
        for _ in range(args.steps):
            run()
        out[name] = {
            "s_per_step": (time.perf_counter() - tick) / args.steps,
            "flops": counter.get_total_flops(),
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
