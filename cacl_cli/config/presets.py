"""Presets: YAML files over one key tree (``schema``), layered, overridden, validated.

A preset names only the keys it changes. It may build on others with ``base: NAME`` or
``base: [NAME, NAME]`` (merged left to right, then the preset's own keys); ``--set a.b=VALUE``
overrides one key, VALUE read as YAML. Every value is checked against the schema as it is read.
"""

from __future__ import annotations

import copy
import difflib
import os
import reprlib
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from cacl_cli.config.schema import ABOVE_ZERO, Config, choices, defaults_tree, span
from cacl_cli.errors import CaclError
from cacl_cli.files import present, read_text, write_text_atomic

DEFAULTS_NAME = "defaults"
META_KEYS = ("base", "description")


# ---------------------------------------------------------------- finding and reading presets


def preset_dir() -> Path:
    """The shipped presets: ``cacl_cli/presets`` in a wheel, ``presets/`` in a checkout."""
    return Path(str(resources.files("cacl_cli.presets")))


def preset_names() -> list[str]:
    names = sorted(p.stem for p in preset_dir().glob("*.yaml"))
    return [n for n in names if n != DEFAULTS_NAME]


def _names_a_file(name_or_path: str) -> bool:
    """A preset given as a file path (a YAML suffix or a folder in it), not as a name."""
    return Path(name_or_path).suffix in (".yaml", ".yml") or os.sep in name_or_path


def _layers(name_or_path: str, folder: Path = Path(".")) -> list[str] | None:
    """The presets a layered name ``a+b`` stacks, in order; None for a single preset, and for a
    file (read from ``folder``) whose own name holds a '+'. The one rule for both."""
    if "+" not in name_or_path or (folder / name_or_path).is_file():
        return None
    return name_or_path.split("+")


def _preset_path(name_or_path: str) -> Path:
    shipped = preset_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if _names_a_file(name_or_path):
        if present(path):
            return path  # read by the guarded reader, which names a FIFO or a dangling link
        raise CaclError(f"preset file {path} does not exist; give a path to a YAML file or a name")
    hint = _closest(name_or_path, preset_names())
    raise CaclError(f"unknown preset '{name_or_path}'{hint}; `cacl presets` lists them")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(read_text(path, "a YAML preset"))
    except RecursionError:  # thousands of nested levels; a preset has two
        raise CaclError(f"{path}: nested too deeply to be a preset (sections hold keys)") from None
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


MAX_PRESET_FILES = 64  # distinct files one preset may reach through its bases


def _load_chain(
    name_or_path: str, seen: tuple[str, ...] = (), loaded: dict | None = None
) -> tuple[dict, list[str]]:
    """The preset's own keys merged over its bases; returns (tree, names from base to self).
    ``a+b`` layers presets as ``base: [a, b]`` would, with no file of its own. ``loaded``: the
    files this resolution has read, each once (a diamond of bases costs its distinct files)."""
    loaded = {} if loaded is None else loaded
    layers = _layers(name_or_path)
    if layers:
        return _layered(layers, seen, loaded)
    path = _preset_path(name_or_path)
    key = str(path.resolve())
    if key in seen:
        raise CaclError(f"preset {path} inherits itself through 'base'")
    if key not in loaded:
        if len(loaded.keys() | set(seen)) >= MAX_PRESET_FILES:  # read, and being read
            raise CaclError(
                f"{path}: the bases reach more than {MAX_PRESET_FILES} preset files; "
                "a preset needs a few"
            )
        loaded[key] = _own_chain(path, seen + (key,), loaded)
    return loaded[key]


def _own_chain(path: Path, seen: tuple[str, ...], loaded: dict) -> tuple[dict, list[str]]:
    """One preset file's keys over those of its bases (read beside it where they are files)."""
    tree = _read_yaml(path)
    base = tree.pop("base", None)
    tree.pop("description", None)
    saved = tree.pop("preset", None)  # a run's resolved config.yaml remembers its preset chain
    if base is None:
        chain = saved.get("chain") if isinstance(saved, dict) else None
        return tree, list(chain) if chain else [path.stem]
    bases = [base] if isinstance(base, str) else base
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise CaclError(f"{path}: 'base' must name a preset, or list presets to layer in order")
    merged, chain = _layered([_beside(path, b) for b in bases], seen, loaded)
    return _merge(merged, tree), chain + [path.stem]


def _beside(preset: Path, base: str) -> str:
    """A base given as a relative file path is read beside the preset that names it, not in
    the working directory, in every form (``q.yaml``, ``q.yaml+moco-v2``); a name stays a
    name."""
    layers = _layers(base, preset.parent)
    if layers:
        return "+".join(_beside(preset, part) for part in layers)
    if _names_a_file(base) and not Path(base).is_absolute():
        return str(preset.parent / base)
    return base


def _layered(names: list[str], seen: tuple[str, ...], loaded: dict) -> tuple[dict, list[str]]:
    """Presets merged left to right (a later one's keys win), and their chains in that order."""
    merged: dict = {}
    chain: list[str] = []
    for name in names:
        if not name:
            raise CaclError("an empty preset name in a layered preset; write them as a+b")
        tree, names_in = _load_chain(name, seen, loaded)
        merged = _merge(merged, tree)
        chain += [n for n in names_in if n not in chain]
    return merged, chain


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
    words = choices(key)
    if value is False and "off" in words:
        value = "off"  # YAML 1.1 reads a bare `off` as false
    if default is None:  # optional paths: text, or null; YAML's `2024` is the folder 2024
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise CaclError(f"{source}: key '{key}' must be a path or null, got {_brief(value)}")
        return value
    if expected is bool:
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
            f"{source}: key '{key}' must be {expected.__name__} (like {default!r}), "
            f"got {_brief(value)}"
        )
    if words and value not in words:
        raise CaclError(
            f"{source}: key '{key}' must be one of {', '.join(words)}; got {_brief(value)}"
            f"{_closest(str(value), words)}"
        )
    if isinstance(value, (list, tuple)) and span(key) and not value:
        raise CaclError(f"{source}: key '{key}' needs at least one value, got []")
    if span(key):
        for item in value if isinstance(value, list) else [value]:
            _check_range(key, item, source)
    elif isinstance(value, (list, tuple)) and not all(isinstance(v, str) for v in value):
        raise CaclError(f"{source}: key '{key}' takes a list of words, got {_brief(value)}")
    if key == "augment.crop_scale" and (len(value) != 2 or value[0] > value[1]):
        raise CaclError(f"{source}: key '{key}' must be [low, high] with low <= high, got {value}")
    return value


def _check_range(key: str, value: Any, source: str) -> None:
    low, high = span(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaclError(f"{source}: key '{key}' takes numbers, got {_brief(value)}")
    if not low <= value <= high:  # NaN fails every comparison, so it lands here too
        limits = f"from {low:g} to {high:g}"
        if low == ABOVE_ZERO:
            limits = f"above 0 and at most {high:g}"
        raise CaclError(f"{source}: key '{key}' must be {limits}, got {_brief(value)}")


def _brief(value: Any) -> str:
    """A value as an error shows it: a few levels and items, so a YAML of nested anchors (a
    few hundred bytes that expand to gigabytes) is not written out in full."""
    brief = reprlib.Repr()
    brief.maxlevel, brief.maxdict, brief.maxlist, brief.maxstring = 2, 4, 4, 60
    text = brief.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _validate(tree: dict, schema: dict, source: str, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        dotted = f"{prefix}{k}"
        if k not in schema:
            hint = _closest(dotted, _leaf_keys(schema, prefix) + [f"{prefix}{s}" for s in schema])
            # A key with a hidden character would read just like the suggestion: show it escaped.
            seen = f"'{dotted}'" if dotted.isprintable() else ascii(dotted)
            raise CaclError(f"{source}: unknown key {seen}{hint}")
        if isinstance(schema[k], dict):
            if not isinstance(v, dict):
                raise CaclError(f"{source}: '{dotted}' is a section; give it keys, not {_brief(v)}")
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
    except (yaml.YAMLError, RecursionError):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise CaclError(f"--set '{shown}': the value is not a YAML scalar or list") from None
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
    layered = _layers(preset) is not None
    name = preset if layered else chain[-1]
    # A file (a user's preset, a run's config.yaml) is named as the file the bad key is in.
    is_file = not layered and _names_a_file(preset)
    tree = _validate(tree, defaults, preset if is_file else f"preset {name}")
    merged = _merge(defaults, tree)
    for text in overrides:
        key, value = parse_override(text)
        merged = _merge(merged, _validate(_nest(key, value), defaults, "--set"))
    for key, value in (values or {}).items():
        merged = _merge(merged, _validate(_nest(key, value), defaults, "option"))
    merged["preset"] = {"name": name, "chain": chain}
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
    return defaults_tree()


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.plain(), sort_keys=False)


def write_config(cfg: Config, path: Path) -> None:
    """Write the resolved config atomically (temp file, then rename)."""
    write_text_atomic(path, dump(cfg))
