"""The rules between keys, each command's default preset, and what a resumed run may change.

The heads' own rules (queue sizes, which head another needs) live with the heads:
``cacl_cli.model.build.check_heads``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from cacl_cli.config.presets import _leaf_keys, from_saved
from cacl_cli.config.schema import Config
from cacl_cli.errors import CaclError

# Each command's preset when --preset is not given.
DEFAULT_PRESETS = {
    "extract-pairs": "extract-kinetics",
    "pretrain": "tiny-world",
    "probe": "probe-world",
    "finetune": "finetune-world",
    "propagate": "propagate-dino",
    "visualize": "tiny-world",
    "export": "r18-kinetics",
    "world": "tiny-world",
}


def check_run(cfg: Config, command: str, data: Path | None = None) -> None:
    """The rules that tie keys together, checked before any engine starts (the heads' own rules:
    ``model.build.check_heads``). ``data`` is the ``--data`` folder of an evaluation command."""
    world = cfg.world
    if world.objects_min > world.objects_max or world.scale_min > world.scale_max:
        raise CaclError(
            "keys 'world.objects_min'/'world.scale_min' must not exceed 'world.objects_max'/"
            "'world.scale_max'"
        )
    if command == "pretrain":
        if not cfg.data.path and not 0 <= cfg.data.stride < world.frames:
            raise CaclError(
                f"key 'data.stride' is {cfg.data.stride} but clips have {world.frames} frames "
                "(world.frames); use a smaller stride"
            )
        if cfg.model.init and not Path(cfg.model.init).is_file():
            raise CaclError(
                f"key 'model.init': {cfg.model.init} is not a file; give the MoCo-v2 or "
                "torchvision weights with --init PATH"
            )
    if command in ("probe", "finetune") and cfg.eval.dataset != "world" and data is None:
        raise CaclError(f"key 'eval.dataset' is {cfg.eval.dataset}: give its folder with --data")
    if command in ("probe", "finetune") and cfg.eval.dataset == "world" and data is not None:
        raise CaclError(
            f"preset {cfg.preset.name} uses the built-in world (eval.dataset: world), so --data "
            f"{data} would be ignored; leave out --preset to let the folder's layout decide, "
            "or --set eval.dataset=voc|cityscapes|folder"
        )


# Keys a resumed run may change: how long it runs and how it logs, not what it learns; and its
# precision when another is asked for (`auto` keeps the one it started with).
SAFE_ON_RESUME = (
    "schedule.steps",
    "run.checkpoint_every",
    "run.log_every",
    "data.num_workers",
    "run.amp",
)


def resumed_config(saved: Config, asked: Config, source: Path) -> Config:
    """The saved run's config with the safe keys of ``asked`` applied; any other key whose
    asked value differs from the saved one is refused, naming both values."""
    old, new = saved.plain(), asked.plain()
    merged, refused = copy.deepcopy(old), []
    for key in _leaf_keys({k: v for k, v in new.items() if k != "preset"}):
        section, name = key.split(".", 1)
        before, after = old[section].get(name), new[section][name]
        if before == after or (key == "run.amp" and after == "auto"):
            continue  # a run keeps the precision it resolved at start unless told another
        if key not in SAFE_ON_RESUME:
            refused.append(f"'{key}' is {after!r} here but {before!r} in the run")
        merged[section][name] = after
    if refused:
        raise CaclError(
            f"{len(refused)} key(s) differ from the run being resumed ({source}): "
            f"{'; '.join(refused)}; give the run's own values, or start a new run in another --out"
        )
    return from_saved(merged, str(source))
