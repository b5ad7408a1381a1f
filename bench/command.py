"""The ``cacl`` command as the benchmarks run it: a fresh process, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cacl(*args: object, threads: int | None = None) -> float:
    """Run ``cacl ARGS`` from this tree; returns its wall seconds (process start included).
    A failure ends the benchmark with the command's own last lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "cacl_cli", *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"cacl {args[0]} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return seconds
