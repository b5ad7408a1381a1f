"""Presets: YAML files with one key tree shared by every command.

``presets/defaults.yaml`` holds every key with its default and a comment; it is also the schema:
a key that is not there is unknown, and a value must have the type of its default. A preset may
inherit another with ``base: NAME``; ``--set a.b=VALUE`` overrides one key, VALUE read as YAML.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from cacl_cli.errors import CaclError
from cacl_cli.files import read_text, write_text_atomic

DEFAULTS_NAME = "defaults"
META_KEYS = ("base", "description")

# Keys whose value must be one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.arch": ("resnet18", "resnet50"),
    "model.pixel_shuffle": ("off", "shared", "independent"),
    "model.dense_stage": ("layer3", "layer4"),
    "loss.pixel_positive": ("global", "position"),
    "loss.cycle_return": ("self", "reroll"),
    "loss.soft_target_head": ("global", "cycle"),
    "loss.pixel_negatives": ("queue", "queue_and_image"),
    "loss.queue_matmul": ("float32", "bfloat16", "auto"),
    "propagate.labels": ("auto", "indexed", "binary"),
    "propagate.layer": ("layer2", "layer3", "layer4"),
    "eval.layer": ("layer2", "layer3", "layer4"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.amp": ("auto", "off", "bf16", "fp16"),
    "eval.dataset": ("world", "voc", "cityscapes", "folder"),
    "eval.cache": ("memory", "disk", "off"),
}
INF = math.inf
SEED = (0, 2**32 - 1)  # numpy's seeds are 32-bit and non-negative
# The sensible values of every number in a preset: key -> (low, high), both included; a low of
# ABOVE_ZERO means "above zero". Lists (crop_scale, fractions) are checked element by element.
ABOVE_ZERO = 0.0 + 1e-300
RANGES: dict[str, tuple[float, float]] = {
    "run.seed": SEED, "run.checkpoint_every": (1, INF), "run.keep_checkpoints": (0, 10_000),
    "run.log_every": (1, INF), "run.truth_pairs": (0, 4096),
    "model.width": (1, 4096), "model.dim": (1, 65_536), "model.bn_groups": (1, 4096),
    "model.dense_neck": (0, 64),
    "loss.tau": (ABOVE_ZERO, 100), "loss.soft_target_tau": (ABOVE_ZERO, 100),
    "loss.cycle_target_sigma": (0, 100), "loss.cycle_tau": (0, 100), "loss.cycle_pool": (1, 64),
    "loss.global_weight": (0, 1e6), "loss.pixel_weight": (0, 1e6), "loss.cycle_weight": (0, 1e6),
    "loss.cycle_memory_mb": (0, 1e9),
    "moco.momentum": (0, 1), "moco.queue_size": (1, 10**8), "moco.cycle_queue_size": (1, 10**8),
    "moco.pixels_per_image": (1, 65_536), "moco.shuffle_bn_groups": (1, 4096),
    "data.batch_size": (1, 65_536), "data.num_workers": (0, 1024), "data.size": (8, 8192),
    "data.stride": (0, 100_000),
    "augment.crop_scale": (ABOVE_ZERO, 1), "augment.jitter": (0, 1), "augment.jitter_p": (0, 1),
    "augment.grayscale_p": (0, 1), "augment.blur_p": (0, 1), "augment.flip_p": (0, 1),
    "optim.lr": (0, 1e6), "optim.lr_batch": (1, 10**8), "optim.momentum": (0, 1),
    "optim.weight_decay": (0, 1), "optim.trust": (ABOVE_ZERO, 1e3), "optim.accum_steps": (1, 4096),
    "schedule.steps": (1, 10**9), "schedule.warmup_steps": (0, 10**9),
    "schedule.epochs": (1, 10**7),
    "eval.resize": (0, 8192), "eval.cache_gb": (0, 1e6), "eval.fractions": (ABOVE_ZERO, 100),
    "eval.subset_seed": SEED, "eval.world_train_images": (1, 10**7),
    "eval.world_val_images": (1, 10**7),
    "world.size": (16, 4096), "world.classes": (1, 6), "world.objects_min": (0, 64),
    "world.objects_max": (1, 64), "world.scale_min": (ABOVE_ZERO, 1),
    "world.scale_max": (ABOVE_ZERO, 1), "world.speed": (0, 1e3), "world.pan": (0, 1e3),
    "world.frames": (2, 100_000), "world.clips": (1, 10**9), "world.seed": SEED,
    "extract.stride": (1, 100_000), "extract.pairs_per_clip": (1, 100_000),
    "extract.frames_per_clip": (2, 10_000), "extract.short_side": (0, 8192),
    "extract.quality": (1, 100), "extract.workers": (0, 1024), "extract.seed": SEED,
    "extract.timeout": (1, 1e7),
    "propagate.size": (8, 8192), "propagate.context": (0, 1000), "propagate.topk": (1, 10**6),
    "propagate.radius": (0, 1e6), "propagate.temperature": (ABOVE_ZERO, 100),
    "propagate.frames": (0, 10**7),
}  # fmt: skip


# ---------------------------------------------------------------- typed views of the sections
# One frozen dataclass per section of ``presets/defaults.yaml``: engines take the sections they
# need, typed, and nothing can write into a resolved config. The defaults live in the YAML only
# (a test checks that these fields and its keys agree).


@dataclass(frozen=True)
class RunSection:
    seed: int
    device: str
    amp: str
    deterministic: bool
    compile: bool
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    truth_pairs: int


@dataclass(frozen=True)
class ModelSection:
    arch: str
    width: int
    dim: int
    pixel_shuffle: str
    dense_stage: str
    dense_neck: int
    init: Optional[str]
    sync_bn: bool
    bn_groups: int


@dataclass(frozen=True)
class HeadsSection:
    global_: bool
    pixel: bool
    cycle: bool

    def __getitem__(self, head: str) -> bool:
        """``heads["global"]``: ``global`` is a Python keyword, so not an attribute name."""
        return getattr(self, _field(head))

    def on(self) -> tuple[str, ...]:
        """The heads that are trained, in the paper's order."""
        return tuple(h for h in ("global", "pixel", "cycle") if self[h])


@dataclass(frozen=True)
class LossSection:
    tau: float
    global_weight: float
    pixel_weight: float
    cycle_weight: float
    soft_cycle: bool
    soft_target_tau: float
    soft_target_head: str
    cycle_target_sigma: float
    pixel_positive: str
    symmetric: bool
    cycle_memory_mb: float
    cycle_return: str
    pixel_negatives: str
    queue_matmul: str
    cycle_tau: float
    cycle_pool: int

    def weight(self, head: str) -> float:
        return getattr(self, f"{head}_weight")


@dataclass(frozen=True)
class MocoSection:
    momentum: float
    queue_size: int
    cycle_queue_size: int
    pixels_per_image: int
    shuffle_bn_groups: int
    batch_shuffle: bool


@dataclass(frozen=True)
class DataSection:
    path: Optional[str]
    batch_size: int
    num_workers: int
    size: int
    stride: int


@dataclass(frozen=True)
class AugmentSection:
    shared_crop: bool
    crop_scale: tuple
    jitter: float
    jitter_p: float
    grayscale_p: float
    blur_p: float
    flip_p: float


@dataclass(frozen=True)
class OptimSection:
    lr: float
    lr_batch: int
    momentum: float
    weight_decay: float
    trust: float
    accum_steps: int


@dataclass(frozen=True)
class ScheduleSection:
    steps: int
    warmup_steps: int
    epochs: int


@dataclass(frozen=True)
class EvalSection:
    dataset: str
    train_split: str
    val_split: str
    resize: int
    flip: bool
    layer: str
    cache: str
    cache_gb: float
    fractions: tuple
    subset_seed: int
    world_train_images: int
    world_val_images: int


@dataclass(frozen=True)
class WorldSection:
    size: int
    classes: int
    objects_min: int
    objects_max: int
    scale_min: float
    scale_max: float
    speed: float
    pan: float
    frames: int
    clips: int
    seed: int


@dataclass(frozen=True)
class ExtractSection:
    stride: int
    pairs_per_clip: int
    frames_per_clip: int
    short_side: int
    quality: int
    workers: int
    seed: int
    timeout: float
    extensions: tuple
    seek: bool


@dataclass(frozen=True)
class PropagateSection:
    size: int
    context: int
    topk: int
    radius: float
    temperature: float
    labels: str
    frames: int
    layer: str


@dataclass(frozen=True)
class PresetInfo:
    name: str
    chain: tuple


@dataclass(frozen=True)
class Config:
    """A resolved config: defaults, then a preset chain, then ``--set``; read-only."""

    run: RunSection
    model: ModelSection
    heads: HeadsSection
    loss: LossSection
    moco: MocoSection
    data: DataSection
    augment: AugmentSection
    optim: OptimSection
    schedule: ScheduleSection
    eval: EvalSection
    world: WorldSection
    extract: ExtractSection
    propagate: PropagateSection
    preset: PresetInfo

    @classmethod
    def from_tree(cls, tree: dict) -> "Config":
        """Typed views over a validated nested dict that has every key."""
        views = {
            name: view(**{_field(k): _frozen(v) for k, v in tree[name].items()})
            for name, view in SECTIONS.items()
        }
        return cls(**views)

    def plain(self) -> dict:
        """The nested dict that ``config.yaml`` and checkpoints store."""
        return {f.name: _plain_section(getattr(self, f.name)) for f in fields(self)}


SECTIONS: dict[str, type] = {
    "run": RunSection,
    "model": ModelSection,
    "heads": HeadsSection,
    "loss": LossSection,
    "moco": MocoSection,
    "data": DataSection,
    "augment": AugmentSection,
    "optim": OptimSection,
    "schedule": ScheduleSection,
    "eval": EvalSection,
    "world": WorldSection,
    "extract": ExtractSection,
    "propagate": PropagateSection,
    "preset": PresetInfo,
}


def _field(key: str) -> str:
    return "global_" if key == "global" else key  # `global` is a Python keyword


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _plain_section(section: Any) -> dict:
    return {
        ("global" if f.name == "global_" else f.name): (
            list(v) if isinstance(v := getattr(section, f.name), tuple) else v
        )
        for f in fields(section)
    }


# ---------------------------------------------------------------- finding and reading presets


def preset_dir() -> Path:
    """The shipped presets: ``cacl_cli/presets`` in a wheel, ``presets/`` in a checkout."""
    return Path(str(resources.files("cacl_cli.presets")))


def preset_names() -> list[str]:
    names = sorted(p.stem for p in preset_dir().glob("*.yaml"))
    return [n for n in names if n != DEFAULTS_NAME]


def _preset_path(name_or_path: str) -> Path:
    shipped = preset_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if path.is_file():
            return path
        raise CaclError(f"preset file {path} does not exist; give a path to a YAML file or a name")
    hint = _closest(name_or_path, preset_names())
    raise CaclError(f"unknown preset '{name_or_path}'{hint}; `cacl presets` lists them")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(read_text(path, "a YAML preset"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise CaclError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CaclError(
            f"{path}: a preset must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def _load_chain(name_or_path: str, seen: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """The preset's own keys merged over its bases; returns (tree, names from base to self)."""
    path = _preset_path(name_or_path)
    key = str(path.resolve())
    if key in seen:
        raise CaclError(f"preset {path} inherits itself through 'base'")
    tree = _read_yaml(path)
    base = tree.pop("base", None)
    tree.pop("description", None)
    saved = tree.pop("preset", None)  # a run's resolved config.yaml remembers its preset chain
    if base is None:
        chain = saved.get("chain") if isinstance(saved, dict) else None
        return tree, list(chain) if chain else [path.stem]
    if not isinstance(base, str):
        raise CaclError(f"{path}: 'base' must name a preset")
    base_tree, chain = _load_chain(base, seen + (key,))
    return _merge(base_tree, tree), chain + [path.stem]


def preset_description(name: str) -> str:
    return str(_read_yaml(_preset_path(name)).get("description", ""))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ---------------------------------------------------------------- validation


def _closest(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        dotted = f"{prefix}{k}"
        keys.extend(_leaf_keys(v, dotted + ".") if isinstance(v, dict) else [dotted])
    return keys


def _check_value(key: str, value: Any, default: Any, source: str) -> Any:
    """Return ``value`` coerced to the type of ``default``, or raise naming the key."""
    expected = type(default)
    if key in CHOICES and value is False and "off" in CHOICES[key]:
        value = "off"  # YAML 1.1 reads a bare `off` as false
    if default is None:  # optional keys (paths and the like) take any scalar
        ok = not isinstance(value, (dict, list))
    elif expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise CaclError(
            f"{source}: key '{key}' must be {expected.__name__} (like {default!r}), got {value!r}"
        )
    if key in CHOICES and value not in CHOICES[key]:
        raise CaclError(
            f"{source}: key '{key}' must be one of {', '.join(CHOICES[key])}; got {value!r}"
            f"{_closest(str(value), CHOICES[key])}"
        )
    if key in RANGES:
        for item in value if isinstance(value, list) else [value]:
            _check_range(key, item, source)
    if key == "augment.crop_scale" and (len(value) != 2 or value[0] > value[1]):
        raise CaclError(f"{source}: key '{key}' must be [low, high] with low <= high, got {value}")
    return value


def _check_range(key: str, value: Any, source: str) -> None:
    low, high = RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaclError(f"{source}: key '{key}' takes numbers, got {value!r}")
    if not low <= value <= high:  # NaN fails every comparison, so it lands here too
        span = f"above 0 and at most {high:g}" if low == ABOVE_ZERO else f"from {low:g} to {high:g}"
        raise CaclError(f"{source}: key '{key}' must be {span}, got {value!r}")


def _validate(tree: dict, schema: dict, source: str, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        dotted = f"{prefix}{k}"
        if k not in schema:
            hint = _closest(dotted, _leaf_keys(schema, prefix) + [f"{prefix}{s}" for s in schema])
            raise CaclError(f"{source}: unknown key '{dotted}'{hint}")
        if isinstance(schema[k], dict):
            if not isinstance(v, dict):
                raise CaclError(f"{source}: '{dotted}' is a section; give it keys, not {v!r}")
            out[k] = _validate(v, schema[k], source, dotted + ".")
        else:
            out[k] = _check_value(dotted, v, schema[k], source)
    return out


# ---------------------------------------------------------------- resolving


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CaclError(f"--set '{text}': write it as KEY=VALUE, for example --set optim.lr=0.5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise CaclError(f"--set '{text}': the value is not a YAML scalar or list") from None
    return key.strip(), value


def _nest(key: str, value: Any) -> dict:
    tree: Any = value
    for part in reversed(key.split(".")):
        tree = {part: tree}
    return tree


def resolve(
    preset: str, overrides: Iterable[str] = (), values: dict[str, Any] | None = None
) -> Config:
    """Defaults, then the preset chain, then each ``--set``, then ``values``; validated, frozen.

    ``values`` maps dotted keys to values taken as they are, not read as YAML: a path such as
    ``--data 2024`` stays the string it was typed as.
    """
    defaults = _defaults()
    tree, chain = _load_chain(preset)
    tree = _validate(tree, defaults, f"preset {chain[-1]}")
    merged = _merge(defaults, tree)
    for text in overrides:
        key, value = parse_override(text)
        merged = _merge(merged, _validate(_nest(key, value), defaults, "--set"))
    for key, value in (values or {}).items():
        merged = _merge(merged, _validate(_nest(key, value), defaults, "option"))
    merged["preset"] = {"name": chain[-1], "chain": chain}
    return Config.from_tree(merged)


def section(name: str, **overrides: Any) -> Any:
    """One section of the defaults with ``overrides`` (its keys), checked as a preset's keys
    are: what a test or script that needs only the world, say, builds."""
    values = {f"{name}.{key}": value for key, value in overrides.items()}
    return getattr(resolve(DEFAULTS_NAME, values=values), name)


def from_saved(tree: dict, source: str) -> Config:
    """The config a checkpoint stored; keys added since it was written take their defaults."""
    tree = dict(tree)
    saved = tree.pop("preset", None) or {}
    defaults = _defaults()
    merged = _merge(defaults, _validate(tree, defaults, source))
    merged["preset"] = {"name": saved.get("name", "saved"), "chain": saved.get("chain", [])}
    return Config.from_tree(merged)


def _defaults() -> dict:
    return _read_yaml(preset_dir() / f"{DEFAULTS_NAME}.yaml")


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.plain(), sort_keys=False)


def write_config(cfg: Config, path: Path) -> None:
    """Write the resolved config atomically (temp file, then rename)."""
    write_text_atomic(path, dump(cfg))


# ---------------------------------------------------------------- rules between keys

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


def check_run(cfg: Config, command: str, ranks: int = 1, data: Path | None = None) -> None:
    """Every rule that ties keys together, checked before any engine starts.

    ``ranks`` is the number of torchrun processes (each adds its keys to the queues); ``data`` is
    the ``--data`` folder of an evaluation command.
    """
    world = cfg.world
    if world.objects_min > world.objects_max or world.scale_min > world.scale_max:
        raise CaclError(
            "keys 'world.objects_min'/'world.scale_min' must not exceed 'world.objects_max'/"
            "'world.scale_max'"
        )
    if command == "pretrain":
        _check_heads(cfg)
        _check_queue_sizes(cfg, ranks)
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


# Keys a resumed run may change: how long it runs and how it logs, not what it learns.
SAFE_ON_RESUME = ("schedule.steps", "run.checkpoint_every", "run.log_every", "data.num_workers")


def resumed_config(saved: Config, asked: Config, source: Path) -> Config:
    """The saved run's config with the safe keys of ``asked`` applied; any other key whose
    asked value differs from the saved one is refused, naming both values."""
    old, new = saved.plain(), asked.plain()
    merged = copy.deepcopy(old)
    for key in _leaf_keys({k: v for k, v in new.items() if k != "preset"}):
        section, name = key.split(".", 1)
        before, after = old[section].get(name), new[section][name]
        if before == after:
            continue
        if key not in SAFE_ON_RESUME:
            raise CaclError(
                f"key '{key}' is {after!r} here but {before!r} in the run being resumed "
                f"({source}); give the run's own value, or start a new run in another --out"
            )
        merged[section][name] = after
    return from_saved(merged, str(source))


def _check_heads(cfg: Config) -> None:
    heads = cfg.heads.on()
    if not heads:
        raise CaclError("keys 'heads.*' are all false; turn on at least one head")
    if "global" in heads:
        return
    if "pixel" in heads and cfg.loss.pixel_positive == "global":
        raise CaclError(
            "key 'loss.pixel_positive' is 'global' but 'heads.global' is off; "
            "set loss.pixel_positive=position or heads.global=true"
        )
    if "cycle" in heads and cfg.loss.soft_cycle and cfg.loss.soft_target_head == "global":
        raise CaclError(
            "key 'loss.soft_cycle' needs the global head's affinities but "
            "'heads.global' is off; set loss.soft_cycle=false, loss.soft_target_head=cycle "
            "or heads.global=true"
        )


def _check_queue_sizes(cfg: Config, ranks: int) -> None:
    """Each queue's size must be a multiple (or a divisor) of the keys it receives at once, so
    every key stays the same number of steps and the pointer never splits a batch."""
    batch = cfg.data.batch_size * ranks
    pixels = batch * cfg.moco.pixels_per_image
    queues = {
        "global": ("moco.queue_size", cfg.moco.queue_size, batch),
        "pixel": ("moco.queue_size", cfg.moco.queue_size, pixels),
        "cycle": ("moco.cycle_queue_size", cfg.moco.cycle_queue_size, pixels),
    }
    for head in cfg.heads.on():
        key, size, n = queues[head]
        if size % n and n % size:
            per = f"data.batch_size {cfg.data.batch_size} x {ranks} process(es)"
            if head != "global":
                per += f" x moco.pixels_per_image {cfg.moco.pixels_per_image}"
            raise CaclError(
                f"key '{key}' is {size} but the {head} queue receives {n} keys at once "
                f"({per}); use a multiple of {n}"
            )
