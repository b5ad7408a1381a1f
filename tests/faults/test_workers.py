"""Loader workers: a worker's error reaches the user as its own one line, and the process exits."""

import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY, run_cacl_process


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
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "7.jpg" in lines[0] and "DataLoader" not in lines[0], done.stderr
