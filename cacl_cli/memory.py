"""How the process holds memory: large freed blocks are kept for reuse (glibc's malloc)."""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters of glibc
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 2**30


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep large freed blocks for reuse instead of giving them back.

    A training step allocates and frees the same large tensors every step; the pixel head's
    logits are 32 MiB at ``tiny-world``. glibc serves blocks of 32 MiB and more with mmap and
    unmaps them on free, so each step pays the page faults of fresh memory again: 130 ms
    against 100 ms for a CPU CACL step (docs/results.md, section 3). With blocks up to 1 GiB kept
    in the heap the process holds on to its peak memory instead (peak RSS of a tiny-world run:
    1.16 GB against 1.02 GB). Linux with glibc only; the environment variable
    ``CACL_SYSTEM_MALLOC=1`` keeps the system's behaviour. Returns whether it applied.
    """
    if os.environ.get("CACL_SYSTEM_MALLOC") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)
        )
    except (OSError, AttributeError):  # not glibc (e.g. musl): keep the system's behaviour
        return False
