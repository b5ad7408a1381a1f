"""Options shared by every command, spelled the same everywhere."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from cacl_cli.config import DEFAULT_PRESETS, Config, check_run, preset_names, resolve
from cacl_cli.config.schema import field_name
from cacl_cli.data.layouts import segmentation_layout
from cacl_cli.distributed import launch_place
from cacl_cli.errors import CaclError
from cacl_cli.outputs import default_folder


def preset_option(command: str):
    """``--preset``, naming the command's own default."""
    return typer.Option(
        None,
        "--preset",
        help="Preset name (see `cacl presets`) or a YAML file; layer several as "
        f"a+b [default: {DEFAULT_PRESETS[command]}].",
    )


@functools.lru_cache(maxsize=None)
def _default_config(command: str) -> Config:
    """The command's default preset, resolved once for all its help texts (at start-up)."""
    return resolve(DEFAULT_PRESETS[command])


def key_option(command: str, key: str, *flags: str, help: str, **limits):
    """An option that sets preset key ``key``; its help ends with the value the command's default
    preset gives it, so the default a run gets is on the help page."""
    section, name = key.split(".")
    default = getattr(getattr(_default_config(command), section), field_name(name))
    shown = "off" if default is None else default
    return typer.Option(
        None,
        *flags,
        help=f"{help} (sets {key}) [default: {shown}, preset {DEFAULT_PRESETS[command]}].",
        **limits,
    )


# A key each command reads, for its --set example.
SET_EXAMPLES = {
    "extract-pairs": "extract.stride=4",
    "pretrain": "optim.lr=0.5",
    "probe": "schedule.epochs=100",
    "finetune": "eval.fractions=[1,5]",
    "visualize": "model.width=16",
    "propagate": "propagate.topk=5",
    "export": "model.arch=resnet50",
    "world": "world.size=128",
    "presets": "model.width=16",
}


def set_option(command: str):
    """``--set KEY=VALUE``, with an example of a key this command reads."""
    return typer.Option(
        None,
        "--set",
        help=f"Override one preset key, e.g. --set {SET_EXAMPLES[command]} "
        "(repeatable; every key: presets/defaults.yaml).",
    )


Out = typer.Option(
    None, "--out", help="Folder to write into [default: a new runs/COMMAND-PRESET-DATE-TIME]."
)
Overwrite = typer.Option(
    False, "--overwrite", help="Write into an --out that holds results (never into a pretrain run)."
)
Device = typer.Option(
    None, "--device", help="auto, cpu, cuda, cuda:N or mps [default: the preset's run.device]."
)
Data = typer.Option(None, "--data", help="Dataset folder (default: the built-in world).")
Checkpoint = typer.Option(
    None,
    "--checkpoint",
    help="A pretrain run folder or checkpoint file, or a torchvision / MoCo-v2 state dict.",
)
RandomInit = typer.Option(
    False, "--random-init", help="Use a randomly initialised backbone (the floor to beat)."
)
Size = typer.Option(
    None, "--size", min=8, help="Short side, in pixels, of the frames fed to the backbone."
)


def settings(
    command: str,
    preset: str | None,
    overrides: list[str] | None,
    values: dict | None = None,
    data: Path | None = None,
    check: bool = True,
) -> Config:
    """The command's config: its preset (or the default one), ``--set``, then the option values,
    checked key by key and, with ``check``, between keys (``config.check_run``: the one place a
    command runs it). Imports no torch, so a typo is refused at once."""
    values = {k: v for k, v in (values or {}).items() if v is not None}
    overrides = overrides or []
    if command in ("probe", "finetune") and data is not None and preset is None:
        if not any(o.partition("=")[0].strip() == "eval.dataset" for o in overrides):
            preset, values = _layout_decides(command, data, values)
    cfg = resolve(preset or DEFAULT_PRESETS[command], overrides, values)
    if check:
        checked(cfg, command, data)
    return cfg


def checked(cfg: Config, command: str, data: Path | None = None) -> Config:
    """``cfg`` after ``config.check_run`` for this command, and for pretrain its heads' own rules
    (``model.build.check_heads``), with the ranks torchrun started."""
    ranks = launch_place().world_size
    check_run(cfg, command, data=data)
    if command == "pretrain":
        from cacl_cli.model.build import check_heads  # torch: only once every key is known good

        check_heads(cfg, ranks)
    return cfg


def _layout_decides(command: str, data: Path, values: dict) -> tuple[str, dict]:
    """The preset (``probe-voc`` ...) or ``eval.dataset`` value that ``--data``'s layout implies."""
    kind = segmentation_layout(data)
    preset = f"{command}-{kind}"
    if preset not in preset_names():
        preset, values = DEFAULT_PRESETS[command], values | {"eval.dataset": kind}
    typer.echo(f"--data {data}: a {kind} layout; using preset {preset}")
    return preset, values


def one_weights_source(required: bool = True, **given) -> str | None:
    """The name of the one weights option given (``checkpoint=PATH, random_init=False, ...``),
    refusing several, and none where ``required``: the one place this rule is checked."""
    named = [name for name, value in given.items() if value]
    flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
    if len(named) > 1:
        raise CaclError(f"give one of {flags}, not several")
    if required and not named:
        raise CaclError(f"give one of {flags} (--random-init: the floor to beat)")
    return named[0] if named else None


def weights(cfg: Config, checkpoint: Path | None, baseline: str | None = None):
    """The ``Weights`` an evaluation runs on, resolved once: a checkpoint (read now, so a bad
    file is refused before any folder is made), a random init of the config's model.arch /
    model.width seeded by run.seed, or a baseline."""
    from cacl_cli.pretrained import Weights

    if baseline:
        return Weights.of_baseline(baseline)
    return Weights.of(checkpoint, cfg.model.arch, cfg.model.width, cfg.run.seed)


def device(name: str | None, cfg: Config):
    """The device a command runs on: ``--device``, else the config's run.device."""
    from cacl_cli.device import resolve_device

    return resolve_device(name or cfg.run.device)


def either(positional, option, flag: str, what: str):
    """A value given as a positional argument (the older spelling) or as ``flag``, not both."""
    if positional is not None and option is not None:
        raise CaclError(f"give {what} once: as {flag} or as the argument, not both")
    if positional is None and option is None:
        raise CaclError(f"give {what} with {flag}")
    return option if option is not None else positional


def shape_options(command: str) -> tuple:
    """``--arch``, ``--width`` and ``--seed``: the random-init backbone's shape and seed, spelled
    the same on every command that evaluates one (a checkpoint brings its own shape)."""
    return (
        key_option(command, "model.arch", "--arch", help="Backbone of --random-init"),
        key_option(
            command, "model.width", "--width", min=1, help="First-stage channels of --random-init"
        ),
        key_option(command, "run.seed", "--seed", help="Seeds a --random-init backbone"),
    )


def shape_values(arch: str | None, width: int | None, seed: int | None) -> dict:
    return {"model.arch": arch, "model.width": width, "run.seed": seed}


def out_folder(out: Path | None, command: str, cfg: Config, subject: str | None = None) -> Path:
    """``--out`` if given, else a new folder of this run's own (``outputs.default_folder``)."""
    return out or default_folder(command, cfg.preset.name, subject)
