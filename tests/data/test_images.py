"""The one image reader and the one way a frame becomes network input."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cacl_cli.data.images import (
    IMAGENET_MEAN,
    normalise,
    read_rgb,
    resize_short_side,
    stride_size,
    to_input,
)
from cacl_cli.errors import CaclError


def test_read_rgb_gives_rgb_order_and_refuses_what_is_not_an_image(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 200  # red, as OpenCV stores it
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_rgb(tmp_path / "red.png")
    assert rgb.shape == (4, 6, 3) and rgb[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(CaclError, match="text.png is not a readable image"):
        read_rgb(tmp_path / "text.png")


def test_resize_short_side_keeps_the_aspect_and_zero_keeps_the_frame():
    frame = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    assert resize_short_side(frame, 30).shape == (30, 45, 3)
    assert resize_short_side(frame, 0) is frame and resize_short_side(frame, 60) is frame
    labels = np.array([[0, 1], [2, 3]], np.uint8).repeat(10, 0).repeat(10, 1)
    halved = resize_short_side(labels, 10, cv2.INTER_NEAREST)
    assert set(np.unique(halved)) == {0, 1, 2, 3}  # nearest: no label is blended into another


def test_network_input_sides_are_multiples_of_the_stride_and_normalised():
    assert stride_size(320, 240, 240) == (320, 240)
    assert stride_size(100, 75, 64) == (88, 64)  # 85.3 snaps to 88
    frame = np.full((75, 100, 3), 124, np.uint8)  # about ImageNet's mean red
    x = to_input(frame, 64)
    assert x.shape == (1, 3, 64, 88)
    assert float(x[0, 0].mean()) == pytest.approx((124 / 255 - IMAGENET_MEAN[0]) / 0.229, abs=1e-4)
    torch.testing.assert_close(normalise(frame)[:, :64, :88], x[0], atol=1e-4, rtol=0)


def test_any_file_name_reads_and_what_is_not_a_regular_file_is_refused(tmp_path):
    """A name that is not UTF-8 (OpenCV's own reader crashes on it) reads like any other; a FIFO
    named like a frame is refused at once instead of blocking the reader forever."""
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0] = 200
    ok, data = cv2.imencode(".png", frame)
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/\xff\xfe-frame.png")
    with open(odd, "wb") as fh:
        fh.write(data.tobytes())
    assert read_rgb(Path(odd))[0, 0].tolist() == [0, 0, 200]
    os.mkfifo(tmp_path / "fifo.jpg")
    with pytest.raises(CaclError, match="fifo.jpg is not a regular file"):
        read_rgb(tmp_path / "fifo.jpg")


def test_a_header_past_the_pixel_limit_is_a_one_line_error(tmp_path):
    """A 100000 x 100000 PNG header (a few bytes) is refused before any pixel is decoded."""
    from tests.conftest import huge_png

    with pytest.raises(CaclError, match="huge.png is not a readable image"):
        read_rgb(huge_png(tmp_path / "huge.png"))
