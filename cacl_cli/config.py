"""Presets: YAML files with one key tree shared by every command.

``presets/defaults.yaml`` holds every key with its default and a comment; it is also the schema:
a key that is not there is unknown, and a value must have the type of its default. A preset may
inherit another with ``base: NAME``; ``--set a.b=VALUE`` overrides one key, VALUE read as YAML.
"""

from __future__ import annotations

import copy
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from cacl_cli.errors import CaclError
from cacl_cli.files import write_text_atomic

DEFAULTS_NAME = "defaults"
META_KEYS = ("base", "description")

# Keys whose value must be one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.arch": ("resnet18", "resnet50"),
    "model.pixel_shuffle": ("off", "shared", "independent"),
    "loss.pixel_positive": ("global", "position"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.amp": ("auto", "off", "bf16", "fp16"),
    "eval.dataset": ("world", "voc", "cityscapes", "folder"),
    "eval.cache": ("memory", "disk", "off"),
}
# Keys whose value must be above zero.
POSITIVE = (
    "data.batch_size",
    "data.size",
    "schedule.steps",
    "model.width",
    "model.dim",
    "moco.queue_size",
    "moco.cycle_queue_size",
    "moco.pixels_per_image",
    "moco.shuffle_bn_groups",
    "model.bn_groups",
    "optim.accum_steps",
    "loss.tau",
    "loss.soft_target_tau",
    "run.checkpoint_every",
    "run.log_every",
    "world.size",
    "world.classes",
    "world.frames",
    "world.clips",
    "schedule.epochs",
    "eval.world_train_images",
    "eval.world_val_images",
)


class Config(dict):
    """A nested dict whose sections read as attributes: ``cfg.optim.lr``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def wrap(cls, tree: dict) -> "Config":
        return cls({k: cls.wrap(v) if isinstance(v, dict) else v for k, v in tree.items()})

    def plain(self) -> dict:
        return {k: v.plain() if isinstance(v, Config) else v for k, v in self.items()}

    def get_dotted(self, key: str) -> Any:
        node: Any = self
        for part in key.split("."):
            node = node[part]
        return node


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
        data = yaml.safe_load(path.read_text())
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
    if key in POSITIVE and not value > 0:
        raise CaclError(f"{source}: key '{key}' must be above zero, got {value!r}")
    return value


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


def resolve(preset: str, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the preset chain, then each ``--set``; validated and frozen into a Config."""
    defaults = _read_yaml(preset_dir() / f"{DEFAULTS_NAME}.yaml")
    tree, chain = _load_chain(preset)
    tree = _validate(tree, defaults, f"preset {chain[-1]}")
    merged = _merge(defaults, tree)
    for text in overrides:
        key, value = parse_override(text)
        merged = _merge(merged, _validate(_nest(key, value), defaults, "--set"))
    merged["preset"] = {"name": chain[-1], "chain": chain}
    return Config.wrap(merged)


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.plain(), sort_keys=False)


def write_config(cfg: Config, path: Path) -> None:
    """Write the resolved config atomically (temp file, then rename)."""
    write_text_atomic(path, dump(cfg))
