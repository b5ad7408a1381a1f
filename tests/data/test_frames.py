"""The one exact video decoder and frame folders: frames in order, refusals that name the file."""

from pathlib import Path

import numpy as np
import pytest

from cacl_cli.data.frames import decode, frame_files, read_frames
from cacl_cli.data.images import read_rgb
from cacl_cli.errors import CaclError


def test_frame_folders_sort_naturally_and_read_by_index(tmp_path, shared_data):
    for name in ("f10.jpg", "f2.jpg", "f1.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in frame_files(tmp_path)] == ["f1.JPG", "f2.jpg", "f10.jpg"]
    bedroom = shared_data / "frames" / "bedroom"
    first, third = read_frames(bedroom, [0, 2])
    files = frame_files(bedroom)
    assert np.array_equal(first, read_rgb(files[0])) and np.array_equal(third, read_rgb(files[2]))
    with pytest.raises(CaclError, match=f"has {len(files)} frames; frame 100000 was asked"):
        read_frames(bedroom, [100000])


def test_a_video_decodes_the_frames_asked_for_exactly(shared_data):
    video = shared_data / "videos" / "01_dog.mp4"
    count, fps, wanted, frames, backend = decode(video, lambda n: [0, 5, 9])
    assert count > 9 and fps > 0 and list(wanted) == [0, 5, 9] and len(frames) == 3
    again = read_frames(video, [5])[0]
    assert np.array_equal(again, frames[1])  # the same frame however it is reached
    assert frames[0].dtype == np.uint8 and frames[0].shape[2] == 3
    assert backend in ("decord", "opencv")
    assert not np.array_equal(frames[0], frames[2])


def test_what_is_not_a_video_is_named(tmp_path):
    image = tmp_path / "one.jpg"
    image.write_bytes(b"")
    with pytest.raises(CaclError, match="single image"):
        read_frames(image, [0])
    with pytest.raises(CaclError, match="does not exist"):
        read_frames(tmp_path / "gone.mp4", [0])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CaclError, match="not a video"):
        read_frames(tmp_path / "notes.txt", [0])


def test_a_video_whose_name_is_not_utf8_decodes_and_a_fifo_is_refused(tmp_path, shared_data):
    """decord and OpenCV crash on such a name (a segfault in visualize, a hung extract-pairs
    pool); the decoder is handed the open file instead."""
    import os

    source = shared_data / "videos" / "realshort.mp4"
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/clip-\xff.mp4"))
    odd.write_bytes(source.read_bytes())
    wanted = lambda count: [0, 5]  # noqa: E731
    plain, weird = decode(source, wanted)[3], decode(odd, wanted)[3]
    assert all(np.array_equal(a, b) for a, b in zip(plain, weird))
    os.mkfifo(tmp_path / "fifo.mp4")
    with pytest.raises(ValueError, match="not a regular file"):
        decode(tmp_path / "fifo.mp4", wanted)
