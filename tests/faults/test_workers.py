"""Loader workers: a worker's error reaches the user as its own one line, and the process exits."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, TINY, run_cacl_process, sets


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_frame_in_a_worker_is_one_line_and_a_prompt_exit(tmp_path, workers):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.jpg")
    (images / "7.jpg").write_bytes(b"")  # zero bytes: every batch draws from 7 images
    args = []
    for item in TINY + ["schedule.steps=20", f"data.num_workers={workers}"]:
        args += ["--set", item]
    started = time.monotonic()
    done = run_cacl_process("pretrain", "--data", images, "--out", tmp_path / "r", *args)
    assert time.monotonic() - started < 60  # it used to hang until killed
    assert done.returncode == 1 and "Traceback" not in done.stderr  # met mid-run: the run failed
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "7.jpg" in lines[0] and "DataLoader" not in lines[0], done.stderr


def _children(pid):
    tasks = f"/proc/{pid}/task/{pid}/children"
    try:
        return [int(c) for c in open(tasks).read().split()]
    except OSError:
        return []


@pytest.mark.slow
def test_a_killed_worker_is_named_with_the_step_and_the_files_its_batch_reads(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"frame {i}.png")
    args = sets("schedule.steps=100000", "data.num_workers=1")
    command = [
        sys.executable,
        "-m",
        "cacl_cli",
        "pretrain",
        "--data",
        images,
        "--out",
        tmp_path / "run",
        *args,
    ]
    run = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "run" / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker is serving batches once a step is logged
    workers = _children(run.pid)
    assert workers, "no loader worker found"
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    _, stderr = run.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1, stderr
    assert "a data loader worker died" in lines[0] and "at micro-step" in lines[0]
    assert str(images / "frame ") in lines[0] and "--resume" in lines[0]
