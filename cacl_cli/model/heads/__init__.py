"""The heads of CACL, one module each. A new head is a module of its own (a ``Head`` subclass,
and ``KEYS``: its preset keys beside its code) and one line in ``HEADS``. The config, which
checks every key without importing torch, reads the keys from ``cacl_cli/config/head_keys.py``,
rendered from the heads (``python -m cacl_cli.model.heads > cacl_cli/config/head_keys.py``;
tests/model/heads/test_registry.py fails when the two differ)."""

import sys

from cacl_cli.model.heads.base import DenseHead, Head, Maps, ProjectionHead, normalize_pixels
from cacl_cli.model.heads.cycle_head import CycleHead
from cacl_cli.model.heads.global_head import GlobalHead, global_vector
from cacl_cli.model.heads.pixel_head import PixelHead

# In the paper's order; a config's heads.* keys turn them on.
HEADS: dict[str, type[Head]] = {"global": GlobalHead, "pixel": PixelHead, "cycle": CycleHead}

__all__ = [
    "HEADS",
    "CycleHead",
    "DenseHead",
    "GlobalHead",
    "Head",
    "Maps",
    "PixelHead",
    "ProjectionHead",
    "global_vector",
    "head_keys",
    "normalize_pixels",
    "render_head_keys",
]


def head_keys(heads: dict[str, type[Head]] = HEADS) -> dict[str, dict]:
    """Each head's own keys, as its module declares them, in the heads' order."""
    return {name: sys.modules[head.__module__].KEYS for name, head in heads.items()}


def render_head_keys(heads: dict[str, type[Head]] = HEADS) -> str:
    """``cacl_cli/config/head_keys.py``: every head's keys as Python the config reads."""
    lines = [RENDERED_HEADER, "HEAD_KEYS = {"]
    for name, keys in head_keys(heads).items():
        lines.append(f"    {name!r}: {{")
        for dotted, spec in keys.items():
            lines += [f"        {dotted!r}: key(", f"            {spec.default!r},"]
            lines += [f"            {piece!r}" for piece in _pieces(spec.metadata["help"])]
            lines[-1] += ","
            for option in ("choices", "span"):
                if spec.metadata[option]:
                    lines.append(f"            {option}={spec.metadata[option]!r},")
            lines.append("        ),")
        lines.append("    },")
    return "\n".join([*lines, "}"]) + "\n"


def _pieces(text: str, width: int = 76) -> list[str]:
    """``text`` cut at spaces into pieces of at most ``width`` characters that join back to it."""
    pieces = [""]
    for word in text.split(" "):
        if pieces[-1] and len(pieces[-1]) + len(word) + 1 > width:
            pieces[-1] += " "
            pieces.append(word)
        else:
            pieces[-1] += (" " if pieces[-1] else "") + word
    return pieces


RENDERED_HEADER = '''"""Every head's own preset keys, as the head's module declares them
(``KEYS`` in ``cacl_cli/model/heads/*``), in the order of ``HEADS``. Rendered from the heads
(python -m cacl_cli.model.heads > cacl_cli/config/head_keys.py) so that the config, which checks
every key, never imports torch; tests/model/heads/test_registry.py fails when this file and the
heads differ."""

# fmt: off
from cacl_cli.config.keys import key
'''
