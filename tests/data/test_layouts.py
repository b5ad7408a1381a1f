"""What dataset a folder holds, read from its layout."""

import pytest

from cacl_cli.data.layouts import holds_videos, segmentation_layout, voc_base
from cacl_cli.errors import CaclError


def test_each_layout_is_recognised(tmp_path):
    city = tmp_path / "city"
    (city / "leftImg8bit").mkdir(parents=True)
    (city / "gtFine").mkdir()
    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    voc = tmp_path / "voc"
    (voc / "VOCdevkit" / "VOC2012" / "JPEGImages").mkdir(parents=True)
    (voc / "VOCdevkit" / "VOC2012" / "SegmentationClass").mkdir()
    assert segmentation_layout(city) == "cityscapes"
    assert segmentation_layout(folder) == "folder"
    assert segmentation_layout(voc) == "voc"
    assert voc_base(voc) == voc / "VOCdevkit" / "VOC2012"


def test_what_is_not_a_labelled_set_says_what_it_is(tmp_path):
    davis = tmp_path / "davis"
    (davis / "Annotations").mkdir(parents=True)
    (davis / "JPEGImages").mkdir()
    with pytest.raises(CaclError, match="DAVIS-style video set.*cacl propagate"):
        segmentation_layout(davis)
    videos = tmp_path / "videos"
    (videos / "deep").mkdir(parents=True)
    (videos / "deep" / "clip.MP4").write_bytes(b"")
    assert holds_videos(videos)
    with pytest.raises(CaclError, match="holds videos, not labelled images"):
        segmentation_layout(videos)
    with pytest.raises(CaclError, match="no such folder"):
        segmentation_layout(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CaclError, match="no VOC .* --set eval.dataset"):
        segmentation_layout(tmp_path / "plain")
