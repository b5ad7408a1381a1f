"""Pairs folders (extract-pairs' manifest) and image folders as training sources."""

import json

import cv2
import numpy as np
import pytest

from cacl_cli.data.pairs import ImageFolder, PairsFolder, open_source
from cacl_cli.errors import CaclError


def _frame(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def _manifest(folder, *records):
    lines = [{"cacl_pairs": 1, "settings": {"stride": 4}}, *records]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_a_pair_is_two_consecutive_frames_of_one_draw(tmp_path):
    for k, value in enumerate((10, 50, 90)):
        _frame(tmp_path / "clip" / f"{k}.png", value)
    _manifest(tmp_path, {"clip": "clip", "frames": [["clip/0.png", "clip/1.png", "clip/2.png"]]})
    source = open_source(tmp_path)
    assert isinstance(source, PairsFolder) and len(source) == 1
    assert source.settings == {"stride": 4}
    rng = np.random.default_rng(0)
    for _ in range(6):
        a, b = source.pair(rng, stride=4)
        assert int(b[0, 0, 0]) - int(a[0, 0, 0]) == 40  # 0 then 1, or 1 then 2


@pytest.mark.parametrize(
    "record,message",
    [
        ({"clip": "c", "frames": [["../outside.png", "c/1.png"]]}, "lies outside"),
        ({"clip": "c", "frames": [["c/0.png"]]}, "two or more frame file names"),
        ({"clip": "c"}, "two or more frame file names"),
    ],
)
def test_a_manifest_that_points_astray_is_refused_with_its_line(tmp_path, record, message):
    _manifest(tmp_path, record)
    with pytest.raises(CaclError, match=f"manifest.jsonl, line 2: .*{message}"):
        PairsFolder(tmp_path)


def test_a_listed_frame_that_is_gone_points_back_to_the_extraction(tmp_path):
    _frame(tmp_path / "c" / "0.png", 10)
    _manifest(tmp_path, {"clip": "c", "frames": [["c/0.png", "c/1.png"]]})
    source = PairsFolder(tmp_path)
    gone = (
        "1.png: no such file or directory; give a frame extract-pairs wrote; rerun cacl "
        "extract-pairs"
    )
    with pytest.raises(CaclError, match=gone):
        for seed in range(8):
            source.pair(np.random.default_rng(seed), stride=1)


def test_an_image_folder_pairs_each_image_with_itself_and_videos_get_a_hint(tmp_path):
    _frame(tmp_path / "images" / "deep" / "a.png", 30)
    source = open_source(tmp_path / "images")
    assert isinstance(source, ImageFolder)
    a, b = source.pair(np.random.default_rng(0), stride=8)
    assert np.array_equal(a, b)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v.mp4").write_bytes(b"")
    with pytest.raises(CaclError, match="run `cacl extract-pairs"):
        open_source(tmp_path / "videos")
    with pytest.raises(CaclError, match="is a file"):
        open_source(tmp_path / "videos" / "v.mp4")
