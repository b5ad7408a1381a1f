"""Exporting the world: mp4 clips a decoder can read, and a VOC-style labelled set."""

import cv2
import numpy as np
from PIL import Image

from cacl_cli.data.world import World, WorldConfig
from cacl_cli.data.world_export import export_labelled, export_videos, labelled_frame
from tests.conftest import run_cacl


def test_videos_decode_to_the_rendered_frames(tmp_path):
    world = World(WorldConfig(size=48, frames=12))
    [path] = export_videos(world, tmp_path, 1)
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert len(decoded) == 12
    rendered = world.clip(0).frame(5)[0]
    assert np.abs(decoded[5].astype(int) - rendered.astype(int)).mean() < 12  # lossy codec


def test_labelled_set_has_voc_layout_and_palette_masks(tmp_path):
    world = World(WorldConfig(size=40, classes=4))
    voc = export_labelled(world, tmp_path, {"train": 3, "val": 2})
    train_ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    val_ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(train_ids) == 3 and len(val_ids) == 2 and not set(train_ids) & set(val_ids)
    mask = Image.open(voc / "SegmentationClass" / f"{val_ids[1]}.png")
    assert mask.mode == "P"
    expected = labelled_frame(world, "val", 1)[1]
    assert np.array_equal(np.array(mask), expected)
    assert mask.getpalette()[3:6] == [128, 0, 0]  # VOC's colour for class 1
    image = cv2.imread(str(voc / "JPEGImages" / f"{train_ids[0]}.jpg"))
    assert image.shape == (40, 40, 3)
    assert (voc / "classes.txt").read_text().split()[0] == "background"


def test_world_command(tmp_path):
    result = run_cacl(
        "world",
        tmp_path / "out",
        "--clips",
        "2",
        "--train-images",
        "2",
        "--val-images",
        "1",
        "--set",
        "world.size=32",
        "--set",
        "world.frames=10",
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out" / "videos").rglob("*.mp4"))) == 2
    assert len(list((tmp_path / "out" / "voc" / "VOC2012" / "JPEGImages").glob("*.jpg"))) == 3
