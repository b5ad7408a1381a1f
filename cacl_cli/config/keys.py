"""How a preset key is declared: its default (its type is the default's), a line of help, and
either the words it may be or the numbers it may take. The schema's sections and each head's
own keys (``model/heads/*``: ``KEYS``) declare theirs with ``key``."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

INF = math.inf
SEED = (0, 2**32 - 1)  # numpy's seeds are 32-bit and non-negative
ABOVE_ZERO = 0.0 + 1e-300  # a range's low end that means "above zero"


def key(default: Any, help: str, *, choices: tuple[str, ...] = (), span: tuple | None = None):
    """One key: its default (its type is the default's), a line of help, and either the words
    it may be (``choices``) or the numbers, both ends included (``span``; lists element-wise)."""
    return field(default=default, metadata={"help": help, "choices": choices, "span": span})
