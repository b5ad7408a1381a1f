"""Shared helpers: a tiny config that trains in seconds, and runners for the console script.

``run_cacl`` runs the app in this process (Typer's test runner): exit code, stdout and stderr are
what a user sees, without paying for a fresh interpreter and torch import per call.
``run_cacl_process`` starts ``python -m cacl_cli`` for what needs a real process: signals, kills,
torchrun, import-time behaviour.
"""

import contextlib
import hashlib
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cacl_cli.cli import app
from cacl_cli.data.worker_pool import usable_cores

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def _share_the_cores_between_test_workers():
    """Under pytest-xdist (``make test`` runs one worker per core), each worker and the processes
    it starts get their share of the cores: oversubscribed OpenMP threads spin and slow every
    worker several times over. A caller's OMP_NUM_THREADS wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, usable_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        import torch

        torch.set_num_threads(share)


_share_the_cores_between_test_workers()

# A model and world small enough for a few seconds of CPU per run.
TINY = [
    "model.width=8",
    "data.size=32",
    "world.size=40",
    "data.batch_size=16",
    "data.num_workers=0",
    "moco.queue_size=128",
    "moco.cycle_queue_size=64",
    "moco.pixels_per_image=2",
    "schedule.warmup_steps=5",
    "run.log_every=1",
]


def sets(*overrides):
    """--set arguments for TINY plus ``overrides``."""
    args = []
    for item in TINY + list(overrides):
        args += ["--set", item]
    return args


def run_cacl(*args, cwd=None, env=None):
    """Run ``cacl ARGS`` in this process; returns a CompletedProcess (returncode, stdout, stderr).

    An exception that escapes the app is shown in stderr as its traceback, as a real process
    would print it, so tests that demand "no traceback" see one when there is one.
    """
    args = [str(a) for a in args]
    full_env = {"COLUMNS": "250", "CACL_DEBUG": None, **(env or {})}
    with _working_dir(cwd):
        result = CliRunner().invoke(app, args, env=full_env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


@contextlib.contextmanager
def _working_dir(path):
    before = os.getcwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_cacl_process(*args, cwd=None, env=None):
    """Run ``python -m cacl_cli ARGS`` as a user would; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k != "CACL_DEBUG"}
    full_env["COLUMNS"] = "250"  # rich wraps at 80 columns without a terminal
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cacl_cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def pretrained(run_dir, *overrides):
    """A TINY ``cacl pretrain`` into ``run_dir`` (plus ``overrides``) that must succeed."""
    done = run_cacl("pretrain", "--out", run_dir, *sets(*overrides))
    assert done.returncode == 0, done.stderr
    return run_dir


def tree_digest(folder):
    """Every path below ``folder`` with its kind and, for a file, its bytes' SHA-256: equal
    digests mean nothing in the tree was added, removed or changed."""
    digest = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_symlink():
            digest[path] = ("link", os.readlink(path))
        elif path.is_file():
            digest[path] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            digest[path] = ("other", path.stat().st_mode)
    return digest


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 32 MiB filesystem of its own (tmpfs), so a test can fill it; skipped where this
    process may not mount one (needs root or CAP_SYS_ADMIN)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder, leave=64 * 1024):
    """Write a filler file into ``folder`` until only ``leave`` bytes are free."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    with open(Path(folder) / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def huge_png(path, colour_type=2):
    """A PNG of a few bytes whose header claims 100000 x 100000 pixels (2: RGB, 0: grey)."""
    import zlib

    def chunk(kind, body):
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    header = (100_000).to_bytes(4, "big") * 2 + bytes([8, colour_type, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path
